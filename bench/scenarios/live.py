"""live fan-out (issue 12): one session, N participants on Subscribe streams spread over
several channels and two or more client processes, the instructor broadcasting at a fixed
rate; reports send-to-receipt p50/p95/p99, deliveries per second, gaps and drops, the
service's CPU per delivery and memory per stream, and beside it, in the same run, the bare
grpc.aio handler (bench.live_ceiling) at the same count.

It is not a call loop (what is timed is a delivery to many streams), so `python -m bench
--scenario live` hands it the whole run (`Scenario.standalone`); its target is `live` in
bench/sla.yaml. Direct to the replicas, one replica or several (`--replicas N` uses the first
N; a multi-replica run also reports latency per replica: the one that took the send against
the others, which is the NATS hop):

    python -m bench --scenario live --target direct --duration 20 --endpoints S/endpoints.json
    python -m bench.scenarios.live --private-stack live=3 --replicas 3 --duration 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import grpc

from bench.live_ceiling import measure_ceiling
from bench.live_run import FanoutPlan, measure
from bench.scenarios.base import Scenario
from bench.sla import Check, Observed, Target, Verdict, evaluate, load_sla
from devstack.runstate import Endpoints

# The review's bar, reported beside our own target (sla.yaml's p95_ms).
REVIEW_P95_MS = 200.0


class Live(Scenario):
    name = "live"
    summary = "one session, 1,000 Subscribe streams, 10 broadcasts/s; bare handler beside it"
    service = "live"
    standalone = True

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        raise NotImplementedError("live runs whole (run_standalone), not as a call loop")

    async def call(self, stub: Any, state: Any) -> None:
        raise NotImplementedError("live runs whole (run_standalone), not as a call loop")

    def run_standalone(
        self, args: argparse.Namespace, endpoints_path: Path, target: Target | None
    ) -> dict[str, Any]:
        endpoints = Endpoints.load(endpoints_path)
        return run_live(endpoints, args, target)


def _targets(endpoints: Endpoints, args: argparse.Namespace) -> list[str]:
    if getattr(args, "target", "direct") == "edge" and endpoints.edge:
        return [endpoints.edge]
    replicas = endpoints.services["live"]
    count = getattr(args, "replicas", 0) or len(replicas)
    return replicas[:count]


def _send_target(endpoints: Endpoints, args: argparse.Namespace) -> str | None:
    """`--send-replica N`: the instructor sends through replica N (which may hold no streams):
    the A/B of the send landing on a fan-out pod or on another one."""
    index = getattr(args, "send_replica", None)
    return None if index is None else endpoints.services["live"][index]


def run_live(
    endpoints: Endpoints, args: argparse.Namespace, target: Target | None
) -> dict[str, Any]:
    rate = args.rate if args.rate else (target.rate if target and target.rate else 10.0)
    plan = FanoutPlan(
        participants=args.participants,
        rate=rate,
        duration=args.duration,
        processes=max(2, args.processes),
        channels=max(8, args.channels),
        targets=_targets(endpoints, args),
        send_target=_send_target(endpoints, args),
        send_connections=max(1, getattr(args, "send_connections", 1) or 1),
        send_via=getattr(args, "send_via", "send") or "send",
        receiver=getattr(args, "receiver", "python"),
    )
    service = measure(endpoints, plan)
    bare = None
    if not getattr(args, "no_ceiling", False):
        bare = measure_ceiling(
            plan.participants, rate, plan.duration,
            processes=plan.processes, channels=plan.channels, receiver=plan.receiver,
            servers=len(plan.targets or []) or 1,
        )  # fmt: skip
    return entry(service, bare, plan, target)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def entry(
    run: dict[str, Any], bare: dict[str, Any] | None, plan: FanoutPlan, target: Target | None
) -> dict[str, Any]:
    """The run in the report's scenario shape (bench.report), plus a `live` section."""
    planned = plan.rate * plan.participants * plan.sessions
    throughput = run["deliveries_per_s"]
    verdict = evaluate(
        target,
        Observed(
            ok=run["deliveries"],
            errors=run["errors"],
            p95_ms=run["p95_ms"],
            p99_ms=run["p99_ms"],
            throughput=throughput,
            ratio_of_ceiling=None,
            planned_rate=planned,
        ),
    )
    if target is not None:
        extra = (
            Check("gaps", 0, run["gaps"], run["gaps"] == 0),
            Check("review_p95_ms", REVIEW_P95_MS, run["p95_ms"], run["p95_ms"] <= REVIEW_P95_MS),
        )
        checks = verdict.checks + extra
        judged = [c.passed for c in checks if c.passed is not None]
        verdict = Verdict(all(judged), checks)
    live: dict[str, Any] = {"service": run, "bare": bare}
    if bare:
        live["vs_bare"] = {
            "p50": _ratio(run["p50_ms"], bare["p50_ms"]),
            "p95": _ratio(run["p95_ms"], bare["p95_ms"]),
            "p99": _ratio(run["p99_ms"], bare["p99_ms"]),
            "cpu_per_delivery": _ratio(
                run["service_cpu_us_per_delivery"], bare["server_cpu_us_per_delivery"]
            ),
        }
    counters = {
        "gaps": run["gaps"],
        "duplicates": run["duplicates"],
        "dropped": run["dropped"],
        "replicas": run["replicas"],
        "service_cpu_us_per_delivery": run["service_cpu_us_per_delivery"],
        "kib_per_stream": run["service_kib_per_stream"],
    }
    if "send_to_publish_ms" in run:
        # How much of the latency is the send path (before the fan-out starts).
        counters["send_to_publish_p95_ms"] = run["send_to_publish_ms"]["p95"]
    if run.get("send_rpc_ms"):
        counters["send_rpc_p95_ms"] = run["send_rpc_ms"]["p95"]
    if bare:
        counters.update(
            bare_p95_ms=bare["p95_ms"],
            bare_cpu_us_per_delivery=bare["server_cpu_us_per_delivery"],
            p95_x_bare=live["vs_bare"]["p95"],
        )
    if len(run["by_target"]) > 1:
        for index, pod in run["by_target"].items():
            counters[f"pod{index}_p95_ms"] = pod["p95_ms"]
            if "cpu_us_per_delivery" in pod:
                counters[f"pod{index}_cpu_us_per_delivery"] = pod["cpu_us_per_delivery"]
    # Imported here: bench.report imports the driver, which imports this registry.
    from bench import report

    return {
        "name": "live",
        "status": "ok",
        "error": None,
        "service": "live",
        "load": {
            "mode": "open",
            "processes": plan.processes,
            "concurrency": plan.participants * plan.sessions // plan.processes,
            "channels": plan.channels,
            "rate": planned,
            "arrival": "fixed",
            "addresses": plan.targets,
        },
        "calls": {
            "ok": run["deliveries"],
            "errors": dict(sorted(run["errors"].items())),
            "shed": 0,
            "failed": sum(run["errors"].values()),
            "warmup": 0,
            "warmup_errors": 0,
            "prepare_errors": 0,
        },
        "latency_ms": {
            "p50": run["p50_ms"],
            "p95": run["p95_ms"],
            "p99": run["p99_ms"],
            "max": run["max_ms"],
        },
        "throughput": throughput,
        "ratio_of_ceiling": _ratio(throughput, bare["deliveries_per_s"]) if bare else None,
        "elapsed_s": plan.duration,
        "open_loop": None,
        "counters": counters,
        "driver": {
            "window_cpu_s": run["receiver_cpu_seconds"],
            "cores": round(run["receiver_cpu_seconds"] / plan.duration, 2),
            "cpu_us_per_call": round(
                run["receiver_cpu_seconds"] * 1e6 / max(1, run["deliveries"]), 1
            ),
            "children_cpu_s": run["receiver_cpu_seconds"],
            "wall_s": plan.duration,
        },
        "sla": report.sla_entry(target, verdict),
        "live": live,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=0, help="use the first N (0: all)")
    parser.add_argument("--send-replica", type=int, help="send through this replica index")
    parser.add_argument(
        "--send-connections", type=int, default=1, help="TCP connections for the Sends"
    )
    parser.add_argument(
        "--send-via", choices=("send", "join"), default="send",
        help="the instructor broadcasts with unary Sends or on its Join stream",
    )  # fmt: skip
    parser.add_argument("--target", choices=("direct", "edge"), default="direct")
    parser.add_argument("--receiver", choices=("python", "go"), default="python")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare handler")
    parser.add_argument("--endpoints", type=Path, default=Path(".stack/endpoints.json"))
    parser.add_argument("--private-stack", default="", help="e.g. live=2: start a stack")
    args = parser.parse_args()
    target = load_sla()["live"]
    if args.private_stack:
        from devstack.config import parse_replicas
        from devstack.stack import Stack, StackConfig

        replicas = {"user": 1, "course": 1, "quiz": 0, "analytics": 0}
        replicas.update(parse_replicas(args.private_stack))
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(StackConfig.for_tests(Path(tmp), replicas=replicas))
            try:
                result = run_live(stack.start(timeout=180), args, target)
            finally:
                stack.stop()
    else:
        result = run_live(Endpoints.load(args.endpoints), args, target)
    result.pop("histogram", None)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
