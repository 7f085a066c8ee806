"""The command line of `python -m bench` (bench/cli.py runs what it parses)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.endpoints import DEFAULT_PATH
from bench.sla import DEFAULT_PATH as SLA_PATH
from bench.sla import DRIVERS

DESCRIPTION = (
    "`python -m bench`: run load scenarios against the running stack and judge them by their SLA."
)
# Callers per process when neither --concurrency nor the scenario's SLA names a load.
DEFAULT_CONCURRENCY = 32


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside [{low:g}, {high:g}]")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    p.add_argument("--scenario", help="comma-separated names (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list scenarios and their SLA, then exit")
    p.add_argument(
        "--ghz-prepare",
        action="store_true",
        help="register --users accounts and write the files bench/ghz/*.json read, then exit",
    )
    p.add_argument(
        "--target",
        choices=("edge", "direct"),
        default="edge",
        help="edge: through Envoy; direct: the service's replicas",
    )
    p.add_argument(
        "--service",
        help="service whose replicas --target direct hits (default: the scenario's own)",
    )
    p.add_argument("--address", help="HOST:PORT[,HOST:PORT…] to hit instead of endpoints.json")
    p.add_argument("--endpoints", type=Path, default=DEFAULT_PATH)
    p.add_argument("--sla", type=Path, default=SLA_PATH)
    p.add_argument(
        "--duration",
        type=_bounded(float, 0.1, 3600),
        default=15.0,
        help="measured seconds per scenario (with --count: the time cap)",
    )
    p.add_argument(
        "--count",
        type=_bounded(int, 1, 100_000_000),
        help="stop after this many measured calls per scenario",
    )
    p.add_argument("--warmup", type=_bounded(float, 0, 600), default=3.0)
    p.add_argument("--processes", type=_bounded(int, 1, 64), default=2)
    p.add_argument(
        "--concurrency",
        type=_bounded(int, 1, 10_000),
        help=f"callers per process (default: the SLA's load, else {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--channels",
        type=_bounded(int, 1, 256),
        default=4,
        help="gRPC channels (HTTP/2 connections) per process",
    )
    p.add_argument(
        "--rate",
        type=_bounded(float, 0, 1_000_000),
        help="open loop: calls/s over all processes (0: closed loop; "
        "default: the SLA's load, else closed)",
    )
    p.add_argument("--arrival", choices=("poisson", "fixed"), default="poisson")
    p.add_argument(
        "--timeout",
        type=_bounded(float, 0.01, 600),
        default=10.0,
        help="per-call deadline, seconds",
    )
    p.add_argument(
        "--users",
        type=_bounded(int, 1, 10_000),
        default=64,
        help="bench accounts to register (sessions are spread over them)",
    )
    p.add_argument(
        "--setup-concurrency",
        type=_bounded(int, 1, 256),
        default=8,
        help="concurrent Register/Login calls while setting up",
    )
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument(
        "--driver",
        choices=sorted(DRIVERS),
        default=None,
        help="who sends the load (default: the SLA's, else python); httpload: JSON scenarios "
        "(progress_json) from the compiled open-loop tool (`make tools-httpload`), which leaves "
        "the stack more of the box; needs a rate",
    )
    p.add_argument(
        "--no-ceiling",
        action="store_true",
        help="do not add the health ceiling when a ratio target needs it",
    )
    p.add_argument("--seed", type=int, default=0, help="open-loop arrival seed")
    p.add_argument(
        "--participants",
        type=_bounded(int, 1, 100_000),
        default=1000,
        help="live: streams in the session",
    )
    p.add_argument(
        "--replicas",
        type=_bounded(int, 0, 16),
        default=0,
        help="live --target direct: spread the streams over the first N replicas (0: all)",
    )
    p.add_argument(
        "--receiver",
        choices=("python", "go"),
        default="python",
        help="live: who holds the streams; go (`make tools-livercv`) leaves the service the "
        "CPU the Python receivers take (falls back to python when not built)",
    )
    p.add_argument("--json", type=Path, help="report path (default bench/results/<time>.json)")
    return p.parse_args(argv)
