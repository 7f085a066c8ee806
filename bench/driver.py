"""Runs one scenario's worker processes and merges what they report.

Called from a thread of the parent's event loop (it blocks on the result queue), after the
scenario's setup has run in the parent.
"""

from __future__ import annotations

import multiprocessing
import queue
import resource
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

from bench import histogram, series
from bench.stack_cpu import Sampler, cpu_seconds
from bench.worker import BARRIER_TIMEOUT_S, WorkerPlan, worker_main

# Time allowed beyond warm-up + window + one deadline for spawning, importing and draining.
SLACK_S = 30.0
POLL_S = 0.5


class WorkerFailed(RuntimeError):
    pass


@dataclass
class Merged:
    """Every worker's outcome added up; latencies in one histogram."""

    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    hist: HdrHistogram = field(default_factory=histogram.new_histogram)
    elapsed_s: float = 0.0
    warmup_calls: int = 0
    warmup_errors: int = 0
    prepare_errors: int = 0
    late_starts: int = 0
    max_lag_us: int = 0
    worker_cpu_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    children_cpu_s: float = 0.0
    wall_s: float = 0.0
    series: dict[str, Any] = field(default_factory=dict)
    window_start_ns: int = 0

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0


def merge_results(results: Iterable[Mapping[str, Any]]) -> Merged:
    """Sum counts, merge histograms; the elapsed time is the longest worker's (they start
    together at a barrier, so the longest one spans the run)."""
    out = Merged()
    encoded = []
    results_list = list(results)
    for r in results_list:
        out.ok += r["ok"]
        _add(out.errors, r["errors"])
        _add(out.counters, r["counters"])
        out.elapsed_s = max(out.elapsed_s, r["elapsed_s"])
        start = r.get("window_start_ns", 0)
        if start and (not out.window_start_ns or start < out.window_start_ns):
            out.window_start_ns = start
        out.warmup_calls += r["warmup_calls"]
        out.warmup_errors += r["warmup_errors"]
        out.prepare_errors += r["prepare_errors"]
        out.late_starts += r["late_starts"]
        out.max_lag_us = max(out.max_lag_us, r["max_lag_us"])
        out.worker_cpu_s += r["cpu_s"]
        encoded.append(r["histogram"])
    out.hist = histogram.merge(encoded)
    out.series = series.merge(r.get("series", {}) for r in results_list)
    return out


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as integers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def plans(base: WorkerPlan, processes: int) -> list[WorkerPlan]:
    """One plan per process: the call count and the rate are shared out between them."""
    counts = split(base.count, processes) if base.count is not None else [None] * processes
    return [
        replace(
            base,
            index=i,
            count=counts[i],
            rate=base.rate / processes if base.rate else None,
            phase=i / processes,
            seed=base.seed * 1000 + i,
        )
        for i in range(processes)
    ]


def run_workers(base: WorkerPlan, processes: int, sampler: Sampler | None = None) -> Merged:
    """Run the plan over `processes` workers; a `sampler` also samples their CPU, as the
    process "bench driver"."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker_main,
            args=(plan, barrier, results),
            name=f"bench-{base.scenario}-{plan.index}",
            daemon=True,
        )
        for plan in plans(base, processes)
    ]
    before = _children_cpu()
    started = time.monotonic()
    budget = base.ready_timeout_s + BARRIER_TIMEOUT_S + base.warmup_s + base.duration_s
    deadline = started + budget + base.timeout_s + SLACK_S
    try:
        for p in procs:
            p.start()
        if sampler is not None:
            sampler.extra["bench driver"] = _cpu_of([psutil.Process(p.pid) for p in procs])
        reports = _collect(results, procs, deadline)
    finally:
        _reap(procs)
    merged = merge_results(reports)
    merged.children_cpu_s = _children_cpu() - before
    merged.wall_s = time.monotonic() - started
    return merged


def _collect(results: Any, procs: list[Any], deadline: float) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    failures: list[str] = []
    while len(reports) + len(failures) < len(procs):
        if time.monotonic() > deadline:
            raise WorkerFailed("workers did not finish in time")
        try:
            kind, index, body = results.get(timeout=POLL_S)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead and len(reports) + len(failures) < len(procs):
                codes = ", ".join(f"{p.name} exit {p.exitcode}" for p in dead)
                raise WorkerFailed(f"worker died without a report ({codes})") from None
            continue
        if kind == "ok":
            reports.append(body)
        else:
            failures.append(f"worker {index}:\n{body}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        raise WorkerFailed(_last_line(failures[0]))
    return reports


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "worker failed"


def _reap(procs: list[Any]) -> None:
    for p in procs:
        p.join(timeout=5)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()


def _cpu_of(procs: list[psutil.Process]) -> Callable[[], float]:
    def read() -> float:
        return sum(cpu_seconds(p) for p in procs)

    return read


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
