"""CPU per call of every process of a private stack, under a fixed open-loop rate.

On a shared box saturated throughput swings by ±15 %, but the CPU each process spends per
call at a fixed rate barely moves, so it is the figure to compare two builds by. This runs
one bench scenario as a child process, takes a CPU snapshot of the stack's processes (from
`<data-dir>/pids.json`, each with its children: Postgres backends, for one) and of the bench
driver once the warm-up is over, another at the end of the measured window, and prints the
CPU microseconds per call of each.

    python -m bench.stack_cpu --data-dir /tmp/x-stack --rate 150 --duration 15 \\
        --scenario exam_rush [-- extra bench arguments]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

Snapshot = dict[str, float]


def _tree_cpu(root: psutil.Process) -> float:
    """CPU seconds of a process and its live children (exited ones are lost; the stack's
    children are long-lived: Postgres backends of pooled connections)."""
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def _snapshot(stack: dict[str, psutil.Process], driver: psutil.Process) -> Snapshot:
    out = {key: _tree_cpu(p) for key, p in stack.items()}
    out["bench driver"] = _tree_cpu(driver)
    return out


def _stack_processes(data_dir: Path) -> dict[str, psutil.Process]:
    listing = json.loads((data_dir / "pids.json").read_text())
    out = {}
    for entry in listing["processes"]:
        try:
            out[entry["key"]] = psutil.Process(entry["pid"])
        except psutil.NoSuchProcess:
            continue
    return out


_HANDLED = re.compile(r"^grpc_server_handled_total\{(?P<labels>[^}]*)\} (?P<n>\S+)$", re.M)


def _calls(metrics: list[str], method: str) -> dict[str, float]:
    """Completed calls of `method` per replica (its Prometheus counter), so calls are counted,
    not assumed from the rate: a loaded box may not keep the rate up."""
    out = {}
    for i, address in enumerate(metrics):
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        out[str(i)] = sum(
            float(m["n"])
            for m in _HANDLED.finditer(text)
            if f'grpc_method="{method}"' in m["labels"]
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m bench.stack_cpu")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--scenario", default="exam_rush")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--service", default="quiz", help="whose replicas count the calls")
    parser.add_argument("--method", default="SubmitQuiz")
    args = parser.parse_args(args_in)
    stack = _stack_processes(args.data_dir)
    endpoints = json.loads((args.data_dir / "endpoints.json").read_text())
    metrics = endpoints["metrics"][args.service]
    cmd = [
        sys.executable, "-m", "bench", "--scenario", args.scenario,
        "--endpoints", str(args.data_dir / "endpoints.json"), "--rate", str(args.rate),
        "--duration", str(args.duration), "--warmup", str(args.warmup), *extra,
    ]  # fmt: skip
    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert child.stdout is not None
    driver = psutil.Process(child.pid)
    before: Snapshot | None = None
    window = 0.0
    for line in child.stdout:
        sys.stdout.write(line)
        if before is None and "warm-up, then" in line:
            # Skip the warm-up and the first and last second of the window: the driver's
            # ramp and drain are not the steady state.
            time.sleep(args.warmup + 1.0)
            calls_before = _calls(metrics, args.method)
            before, start = _snapshot(stack, driver), time.monotonic()
            time.sleep(max(1.0, args.duration - 2.0))
            after, window = _snapshot(stack, driver), time.monotonic() - start
            calls_after = _calls(metrics, args.method)
    child.wait()
    if before is None:
        print("the bench never reached its measured window", file=sys.stderr)
        return 1
    per_replica = {k: calls_after[k] - calls_before[k] for k in calls_after}
    calls = sum(per_replica.values())
    print(
        f"\nCPU per call at {args.rate:g}/s asked, {calls / window:.1f}/s done over"
        f" {window:.1f} s ({calls:.0f} calls; per {args.service} replica"
        f" {', '.join(f'{n:.0f}' for n in per_replica.values())}):"
    )
    total = 0.0
    for key in sorted(after, key=lambda k: before.get(k, 0.0) - after[k]):
        spent = after[key] - before.get(key, 0.0)
        total += spent
        own = ""
        index = key.removeprefix(f"{args.service}-")
        if index != key and index in per_replica and per_replica[index] and len(per_replica) > 1:
            own = f"; {spent / per_replica[index] * 1e6:.0f} µs per call it served"
        print(f"  {key:<18} {spent / calls * 1e6:8.0f} µs  ({spent / window:5.2f} cores{own})")
    print(f"  {'total':<18} {total / calls * 1e6:8.0f} µs  ({total / window:5.2f} cores)")
    return child.returncode


if __name__ == "__main__":
    raise SystemExit(main())
