"""`--driver httpload`: a compiled open-loop load generator in place of the Python workers.

At thousands of calls a second the Python driver spends a share of the box's two cores that
the stack under test should have. httpload (tools/httpload, Go on fasthttp and grpc-go, built
by `make tools-httpload`) sends the same pre-built requests from a JSON-lines target file
(vegeta's target format) at the rate asked, with Poisson or fixed arrivals as --arrival says,
starting one more worker whenever all are busy, so a slow server cannot slow the arrivals
down; each call's latency counts from when it was due.
A scenario's targets are JSON calls through the edge (http://…) or unary gRPC calls
(grpc://host:port/package.Service/Method, the body being the serialized request; the tool can
append a per-call unique field, an idempotency key, to it). Its per-call results (CSV in
vegeta's columns: start time, status or gRPC code, latency, bytes, error) are
turned into the same `Merged` the Python driver yields (histogram, per-second series, errors
by status), so the report, the SLA verdict and the stack-CPU table stay uniform.

Why not vegeta, which does the same: on this box it spent 110-125 µs of CPU per call against
httpload's 57-61 µs at 1,280 calls/s (71-87 against 39 µs at 2,500/s), in runs side by side
on one stack, with the same latencies; at 2,500/s that difference is a tenth of a core.

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

import grpc
import psutil

from bench import histogram, series
from bench.driver import Merged
from bench.http1 import HttpTarget, UniqueField
from bench.stack_cpu import Sampler

ROOT = Path(__file__).resolve().parent.parent
LOCAL_BINARY = ROOT / ".tools" / "bin" / "httpload"
# Beyond the attack itself: start-up, the last calls' deadline, writing the results.
SLACK_S = 30.0


# One OS thread for Go code and a lazier collector: on a 2-core box shared with the stack,
# the tool's scheduler and GC spinning on both cores cost more than they buy.
GO_ENV = {"GOMAXPROCS": "1", "GOGC": "400"}


class HttpLoadMissing(RuntimeError):
    pass


class HttpLoadFailed(RuntimeError):
    pass


def binary() -> Path:
    if LOCAL_BINARY.exists():
        return LOCAL_BINARY
    found = shutil.which("httpload")
    if found is None:
        raise HttpLoadMissing("httpload is not built: run `make tools-httpload` (needs Go)")
    return Path(found)


def target_lines(targets: Iterable[HttpTarget]) -> Iterator[str]:
    """vegeta's JSON target format: one object per line, headers as lists, body in base64;
    the tool cycles over the targets in order."""
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
    tool: Path,
    targets: Path,
    out: Path,
    rate: float,
    seconds: float,
    timeout_s: float,
    unique: UniqueField | None = None,
    *,
    poisson: bool = False,
    seed: int = 0,
) -> list[str]:
    argv = [
        str(tool),
        f"-targets={targets}",
        f"-rate={rate:g}",
        f"-duration={seconds:g}s",
        f"-timeout={timeout_s:g}s",
        f"-output={out}",
        f"-arrival={'poisson' if poisson else 'fixed'}",
        f"-seed={seed}",
    ]
    if unique is not None:
        argv += [f"-unique-field={unique.number}", f"-unique-prefix={unique.prefix}"]
    return argv


def is_grpc(targets: list[HttpTarget]) -> bool:
    return bool(targets) and targets[0].url.startswith("grpc://")


def run(
    targets: Iterable[HttpTarget],
    *,
    rate: float,
    warmup_s: float,
    duration_s: float,
    timeout_s: float,
    sampler: Sampler | None = None,
    unique: UniqueField | None = None,
    poisson: bool = False,
    seed: int = 0,
) -> Merged:
    """Attack at `rate` for warm-up + duration and merge the measured part."""
    tool = binary()
    targets = list(targets)
    grpc_codes = is_grpc(targets)
    with tempfile.TemporaryDirectory(prefix="bench-httpload-") as tmp:
        target_file, out = Path(tmp) / "targets.json", Path(tmp) / "results.csv"
        with target_file.open("w") as f:
            for line in target_lines(targets):
                f.write(line + "\n")
        before = _children_cpu()
        started = time.monotonic()
        window_start_ns = time.perf_counter_ns() + round(warmup_s * 1e9)
        argv = attack_argv(tool, target_file, out, rate, warmup_s + duration_s, timeout_s, unique)
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
            raise HttpLoadFailed("httpload did not finish in time") from None
        if proc.returncode != 0:
            raise HttpLoadFailed(f"httpload exited {proc.returncode}: {err.decode()[-500:]}")
        total_cpu = _children_cpu() - before
        with out.open(newline="") as results:
            merged = merge_csv(results, warmup_s, duration_s, grpc_codes=grpc_codes)
    merged.worker_cpu_s = max(0.0, total_cpu - (at_warmup[0] if at_warmup else 0.0))
    merged.children_cpu_s = total_cpu
    merged.wall_s = time.monotonic() - started
    merged.window_start_ns = window_start_ns
    return merged


def merge_csv(
    lines: Iterable[str], warmup_s: float, duration_s: float, *, grpc_codes: bool = False
) -> Merged:
    """The CSV results (start ns since the epoch, status, latency ns, bytes out, bytes in,
    error, …: vegeta's columns) as a Merged. The attack began with its first call (the tool's
    own start-up is not ours to time); calls starting in the first `warmup_s` after it are
    warm-up. With `grpc_codes` the status is a gRPC code (0 is OK) and an error is named as
    the Python driver names it (UNAVAILABLE …)."""
    rows = [(int(r[0]), int(r[1]), int(r[2]), r[5]) for r in csv.reader(lines) if len(r) >= 6]
    out = Merged()
    began = min((r[0] for r in rows), default=0)
    measure_ns = began + round(warmup_s * 1e9)
    seconds = series.SecondBuckets(measure_ns)
    for start_ns, code, latency_ns, error in rows:
        ok = (code == 0 if grpc_codes else 200 <= code < 300) and not error
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
            name = _grpc_name(code) if grpc_codes else f"HTTP_{code}" if code else "NO_RESPONSE"
            out.errors[name] = out.errors.get(name, 0) + 1
    out.elapsed_s = duration_s
    out.series = series.merge([seconds.encode()])
    return out


_GRPC_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


def _grpc_name(code: int) -> str:
    return _GRPC_NAMES.get(code, f"GRPC_{code}")


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
    """The tool's CPU seconds when warm-up ends (filled in by a timer thread)."""
    reading: list[float] = []
    read = _reader(pid)

    def take() -> None:
        reading.append(read())

    timer = threading.Timer(delay_s, take)
    timer.daemon = True
    timer.start()
    return reading
