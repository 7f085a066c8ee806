"""The live fan-out run's report entry: judged by its SLA plus zero gaps, compared with the
bare handler of the same run, and printable by the report's table like any scenario."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.live_run import FanoutPlan
from bench.scenarios import SCENARIOS
from bench.scenarios.live import entry
from bench.sla import load_sla


def _run(p95: float, gaps: int = 0) -> dict[str, Any]:
    return {
        "deliveries": 100_000, "deliveries_per_s": 10_000.0, "errors": {}, "gaps": gaps,
        "duplicates": 0, "dropped": 0, "replicas": 2, "p50_ms": p95 / 2, "p95_ms": p95,
        "p99_ms": p95 * 1.5, "max_ms": p95 * 2, "service_cpu_us_per_delivery": 45.0,
        "service_kib_per_stream": 38.0, "receiver_cpu_seconds": 5.0,
        "by_target": {0: {"p95_ms": p95}, 1: {"p95_ms": p95 + 1}},
    }  # fmt: skip


BARE = {"p50_ms": 5.0, "p95_ms": 10.0, "p99_ms": 15.0, "deliveries_per_s": 10_000.0,
        "server_cpu_us_per_delivery": 30.0}  # fmt: skip
PLAN = FanoutPlan(participants=1000, rate=10.0, duration=10.0, targets=["a", "b"])


def test_live_is_a_registered_standalone_scenario_with_a_target() -> None:
    assert SCENARIOS["live"].standalone
    assert load_sla()["live"].p95_ms == 30


def test_a_fast_gapless_run_passes_and_is_compared_with_the_bare_handler() -> None:
    got = entry(_run(20.0), BARE, PLAN, load_sla()["live"])
    assert got["sla"]["passed"] is True
    assert got["live"]["vs_bare"] == {"p50": 2.0, "p95": 2.0, "p99": 2.0, "cpu_per_delivery": 1.5}
    assert got["counters"]["pod1_p95_ms"] == 21.0
    assert "live" in report.table([got])


def test_a_gap_fails_the_run_even_when_fast() -> None:
    got = entry(_run(20.0, gaps=3), BARE, PLAN, load_sla()["live"])
    failed = [c["name"] for c in got["sla"]["checks"] if c["passed"] is False]
    assert failed == ["gaps"]


def test_slow_runs_fail_our_target_and_past_200_ms_the_reviews() -> None:
    ours = entry(_run(60.0), BARE, PLAN, load_sla()["live"])
    assert [c["name"] for c in ours["sla"]["checks"] if c["passed"] is False] == ["p95_ms"]
    both = entry(_run(250.0), BARE, PLAN, load_sla()["live"])
    failed = {c["name"] for c in both["sla"]["checks"] if c["passed"] is False}
    assert {"p95_ms", "review_p95_ms"} <= failed


def test_each_replicas_cpu_per_delivery_is_reported_beside_its_latency() -> None:
    run = _run(20.0)
    run["by_target"][0]["cpu_us_per_delivery"] = 52.0
    run["by_target"][1]["cpu_us_per_delivery"] = 41.5
    counters = entry(run, BARE, PLAN, load_sla()["live"])["counters"]
    assert counters["pod0_cpu_us_per_delivery"] == 52.0
    assert counters["pod1_cpu_us_per_delivery"] == 41.5
