"""`--driver vegeta`: a compiled open-loop HTTP load tool in place of the Python workers.

At thousands of JSON calls a second the Python driver spends a share of the box's two cores
that the stack under test should have. vegeta (`make tools-vegeta`, pinned by
tools/vegeta/go.mod) sends the same pre-built requests at a constant rate from a JSON-lines
target stream, adding workers whenever all are busy, so a slow server cannot slow the
arrivals down. Its per-request results (CSV: start time, status, latency, error) are turned
into the same `Merged` the Python driver yields (histogram, per-second series, errors by
status), so the report, the SLA verdict and the stack-CPU table stay uniform.

A call counts by its start: before warm-up's end it is a warm-up call, as in bench.worker.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil

from bench import histogram, series
from bench.driver import Merged
from bench.http1 import HttpTarget
from bench.stack_cpu import Sampler

ROOT = Path(__file__).resolve().parent.parent
LOCAL_BINARY = ROOT / ".tools" / "bin" / "vegeta"
# Beyond the attack itself: start-up, the last calls' deadline, writing the results.
SLACK_S = 30.0
# Workers vegeta starts with; it adds more (up to MAX_WORKERS) when every one is waiting.
WORKERS = 32
MAX_WORKERS = 10_000


# One OS thread for Go code and a lazier collector: on a 2-core box shared with the stack,
# vegeta's scheduler and GC spinning on both cores cost more than they buy.
GO_ENV = {"GOMAXPROCS": "1", "GOGC": "400"}


class VegetaMissing(RuntimeError):
    pass


class VegetaFailed(RuntimeError):
    pass


def binary() -> Path:
    if LOCAL_BINARY.exists():
        return LOCAL_BINARY
    found = shutil.which("vegeta")
    if found is None:
        raise VegetaMissing("vegeta is not installed: run `make tools-vegeta` (needs Go)")
    return Path(found)


def target_lines(targets: Iterable[HttpTarget]) -> Iterator[str]:
    """vegeta's JSON target format: one object per line, headers as lists, body in base64;
    vegeta cycles over the targets in order."""
    for t in targets:
        yield json.dumps(
            {
                "method": t.method,
                "url": t.url,
                "header": {k: [v] for k, v in t.headers.items()},
                "body": base64.b64encode(t.body).decode(),
            },
            separators=(",", ":"),
        )


def attack_argv(
    vegeta: Path, targets: Path, out: Path, rate: float, seconds: float, timeout_s: float
) -> list[str]:
    return [
        str(vegeta),
        "attack",
        "-format=json",
        f"-targets={targets}",
        f"-rate={max(1, round(rate))}/1s",
        f"-duration={seconds:g}s",
        f"-timeout={timeout_s:g}s",
        f"-workers={WORKERS}",
        f"-max-workers={MAX_WORKERS}",
        # The report needs statuses and latencies, not bodies.
        "-max-body=0",
        "-redirects=-1",
        f"-output={out}",
    ]


def run(
    targets: Iterable[HttpTarget],
    *,
    rate: float,
    warmup_s: float,
    duration_s: float,
    timeout_s: float,
    sampler: Sampler | None = None,
) -> Merged:
    """Attack at `rate` for warm-up + duration and merge the measured part."""
    vegeta = binary()
    with tempfile.TemporaryDirectory(prefix="bench-vegeta-") as tmp:
        target_file, out = Path(tmp) / "targets.json", Path(tmp) / "results.bin"
        with target_file.open("w") as f:
            for line in target_lines(targets):
                f.write(line + "\n")
        before = _children_cpu()
        started = time.monotonic()
        window_start_ns = time.perf_counter_ns() + round(warmup_s * 1e9)
        argv = attack_argv(vegeta, target_file, out, rate, warmup_s + duration_s, timeout_s)
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **GO_ENV}
        )
        at_warmup = _cpu_at(proc.pid, warmup_s)
        if sampler is not None:
            sampler.extra["bench driver"] = _reader(proc.pid)
        try:
            _, err = proc.communicate(timeout=warmup_s + duration_s + timeout_s + SLACK_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise VegetaFailed("vegeta did not finish in time") from None
        if proc.returncode != 0:
            raise VegetaFailed(f"vegeta attack exited {proc.returncode}: {err.decode()[-500:]}")
        total_cpu = _children_cpu() - before
        merged = merge_csv(_encode_csv(vegeta, out), warmup_s, duration_s)
    merged.worker_cpu_s = max(0.0, total_cpu - (at_warmup[0] if at_warmup else 0.0))
    merged.children_cpu_s = total_cpu
    merged.wall_s = time.monotonic() - started
    merged.window_start_ns = window_start_ns
    return merged


def _encode_csv(vegeta: Path, results: Path) -> list[str]:
    done = subprocess.run(
        [str(vegeta), "encode", "--to", "csv", str(results)],
        capture_output=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise VegetaFailed(f"vegeta encode exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return done.stdout.decode().splitlines()


def merge_csv(lines: Iterable[str], warmup_s: float, duration_s: float) -> Merged:
    """vegeta's CSV results (start ns since the epoch, status, latency ns, bytes out, bytes in,
    error, …) as a Merged. The attack began with its first call (vegeta's own start-up is not
    ours to time); calls starting in the first `warmup_s` after it are warm-up."""
    rows = [(int(r[0]), int(r[1]), int(r[2]), r[5]) for r in csv.reader(lines) if len(r) >= 6]
    out = Merged()
    began = min((r[0] for r in rows), default=0)
    measure_ns = began + round(warmup_s * 1e9)
    seconds = series.SecondBuckets(measure_ns)
    for start_ns, code, latency_ns, error in rows:
        ok = 200 <= code < 300 and not error
        if start_ns < measure_ns:
            out.warmup_calls += 1
            out.warmup_errors += not ok
            continue
        if ok:
            latency_us = histogram.clamp_us(latency_ns // 1000)
            out.hist.record_value(latency_us)
            seconds.record(start_ns, latency_us)
            out.ok += 1
        else:
            seconds.error(start_ns)
            name = f"HTTP_{code}" if code else "NO_RESPONSE"
            out.errors[name] = out.errors.get(name, 0) + 1
    out.elapsed_s = duration_s
    out.series = series.merge([seconds.encode()])
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reader(pid: int) -> Callable[[], float]:
    proc = psutil.Process(pid)
    last = [0.0]

    def read() -> float:
        # After the attack ends the process is gone; its last reading stands.
        try:
            t = proc.cpu_times()
            last[0] = t.user + t.system
        except psutil.Error:
            pass
        return last[0]

    return read


def _cpu_at(pid: int, delay_s: float) -> list[float]:
    """vegeta's CPU seconds when warm-up ends (filled in by a timer thread)."""
    reading: list[float] = []
    read = _reader(pid)

    def take() -> None:
        reading.append(read())

    timer = threading.Timer(delay_s, take)
    timer.daemon = True
    timer.start()
    return reading
