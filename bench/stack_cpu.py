"""Where the CPU goes: each stack process's CPU seconds over a scenario's measured window.

On a box shared with other work, saturated throughput swings widely while CPU per call at a
fixed (open-loop) rate barely moves, so A/B claims rest on this. A sampler thread reads the
CPU times of every process in the stack's `pids.json` (Postgres with its backends, which are
the postmaster's children) once every INTERVAL_S, stamped with `time.perf_counter_ns()`, the
same monotonic clock the workers' windows are measured in; the window's share is the change
between the first sample inside it and the last.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

INTERVAL_S = 0.5


@dataclass(frozen=True)
class Sample:
    t_ns: int
    cpu_s: dict[str, float]


def stack_processes(data_dir: Path) -> dict[str, psutil.Process]:
    """The stack's processes by role (`course-0` …, `envoy`, `postgres`), from pids.json; a
    pid whose start time differs is another process that reused it, and is left out."""
    try:
        listed = json.loads((data_dir / "pids.json").read_text())["processes"]
    except (OSError, ValueError, KeyError):
        return {}
    found: dict[str, psutil.Process] = {}
    for entry in listed:
        try:
            proc = psutil.Process(entry["pid"])
            if abs(proc.create_time() - entry["create_time"]) > 1.0:
                continue
        except psutil.Error:
            continue
        found[_role(entry["key"])] = proc
    return found


def _role(key: str) -> str:
    # Single-instance infrastructure drops its "-0"; replicas keep their index.
    name, _, index = key.rpartition("-")
    return name if index == "0" and not name.startswith(("user", "course", "quiz", "live")) else key


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system time of the process and its live children (Postgres backends)."""
    total = 0.0
    for p in [proc, *_children(proc)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


@dataclass
class Sampler:
    """Samples named processes' CPU until stopped; `extra` adds processes found later (the
    driver's own workers, an external load tool)."""

    processes: dict[str, psutil.Process]
    extra: dict[str, Callable[[], float]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def take(self) -> Sample:
        cpu = {name: cpu_seconds(p) for name, p in self.processes.items()}
        for name, read in list(self.extra.items()):
            cpu[name] = read()
        return Sample(time.perf_counter_ns(), cpu)

    def start(self) -> Sampler:
        self.samples.append(self.take())
        self._thread = threading.Thread(target=self._loop, name="stack-cpu", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self.samples.append(self.take())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.samples.append(self.take())


def window_share(
    samples: list[Sample], start_ns: int, end_ns: int, calls_per_s: float
) -> dict[str, Any] | None:
    """CPU per process between the first and last sample inside [start, end]: seconds, cores,
    and µs per call at the run's rate; None when fewer than two samples fall inside."""
    inside = [s for s in samples if start_ns <= s.t_ns <= end_ns]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    span_s = (last.t_ns - first.t_ns) / 1e9
    calls = calls_per_s * span_s
    processes: dict[str, dict[str, float]] = {}
    for name in sorted(last.cpu_s):
        if name not in first.cpu_s:
            continue
        used = max(0.0, last.cpu_s[name] - first.cpu_s[name])
        processes[name] = {
            "cpu_s": round(used, 3),
            "cores": round(used / span_s, 3),
            "us_per_call": round(used * 1e6 / calls, 1) if calls else 0.0,
        }
    total = sum(p["cpu_s"] for p in processes.values())
    return {
        "span_s": round(span_s, 3),
        "processes": processes,
        "total_cores": round(total / span_s, 3),
        "total_us_per_call": round(total * 1e6 / calls, 1) if calls else 0.0,
    }


def table(share: dict[str, Any]) -> str:
    """Heaviest first: process, cores, µs per call."""
    rows = sorted(share["processes"].items(), key=lambda kv: -kv[1]["cpu_s"])
    width = max([len(n) for n, _ in rows] + [5])
    lines = [f"  {'process'.ljust(width)}  cores  µs/call"]
    for name, p in rows:
        lines.append(f"  {name.ljust(width)}  {p['cores']:5.2f}  {p['us_per_call']:7.1f}")
    lines.append(
        f"  {'total'.ljust(width)}  {share['total_cores']:5.2f}  {share['total_us_per_call']:7.1f}"
    )
    return "\n".join(lines)
