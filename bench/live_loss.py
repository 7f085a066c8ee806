"""Abrupt loss of a live replica (issue 12): `kill -9` one of three replicas mid-run and check
that its participants resume on the others (Subscribe with `resume_after_sequence`), caught up
within 10 s and with no gap and no duplicate.

Streams are spread over all replicas; the instructor sends through the first, and the last is
killed `--kill-after` seconds into the broadcast. A resumed stream is caught up when it holds
every event up to the session's last sequence at the moment it was welcomed back; since every
stream checks that sequences follow one another, the replay gave it everything it missed, and
the live feed continues after it. The report
gives the time from the kill to each stream's catch-up (p50, max) and the gap count.

    python -m bench.live_loss --endpoints /tmp/me-stack/endpoints.json   # a stack with live=3
    python -m bench.live_loss --private-stack      # starts its own (free ports), then stops it

A killed replica of an `--endpoints` stack stays down: restart the stack after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.live_run import FanoutPlan, live_processes, measure
from devstack.runstate import Endpoints

CATCH_UP_LIMIT_S = 10.0


def run_loss(endpoints: Endpoints, args: argparse.Namespace) -> dict[str, Any]:
    replicas = endpoints.services["live"]
    if len(replicas) < 2:
        raise SystemExit("the loss run needs at least two live replicas (three: live=3)")
    victim = replicas[-1]
    (process,) = live_processes(endpoints, [victim])

    def kill(start: float) -> dict[str, Any]:
        time.sleep(max(0.0, start + args.kill_after - time.monotonic()))
        killed_ns = time.time_ns()
        os.kill(process.pid, signal.SIGKILL)
        return {"killed": victim, "pid": process.pid, "killed_ns": killed_ns}

    plan = FanoutPlan(
        participants=args.participants,
        rate=args.rate,
        duration=args.duration,
        processes=args.processes,
        channels=args.channels,
        targets=replicas,
        resume=True,
    )
    run = measure(endpoints, plan, during=kill)
    killed_ns = run["during"]["killed_ns"]
    waits = sorted((n - killed_ns) / 1e9 for n in run.pop("caught_up_ns"))
    resumed = run["resumed_streams"]
    run["loss"] = {
        "killed": victim,
        "streams_cut": resumed,
        "caught_up": len(waits),
        "not_caught_up": resumed - len(waits),
        "catch_up_p50_s": round(waits[len(waits) // 2], 3) if waits else None,
        "catch_up_max_s": round(waits[-1], 3) if waits else None,
        "gaps": run["gaps"],
        "duplicates": run["duplicates"],
    }
    run["pass"] = bool(
        resumed
        and len(waits) == resumed
        and waits[-1] <= CATCH_UP_LIMIT_S
        and run["gaps"] == 0
        and run["duplicates"] == 0
    )
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--kill-after", type=float, default=6.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=9)
    parser.add_argument("--endpoints", type=Path, default=Path(".stack/endpoints.json"))
    parser.add_argument("--private-stack", action="store_true", help="start live=3 on free ports")
    args = parser.parse_args()
    if args.private_stack:
        from devstack.stack import Stack, StackConfig

        replicas = {"user": 1, "course": 1, "live": 3, "quiz": 0, "analytics": 0}
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(StackConfig.for_tests(Path(tmp), replicas=replicas))
            try:
                result = run_loss(stack.start(timeout=180), args)
            finally:
                stack.stop()
    else:
        result = run_loss(Endpoints.load(args.endpoints), args)
    print(json.dumps(result, indent=2))
    raise SystemExit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()
