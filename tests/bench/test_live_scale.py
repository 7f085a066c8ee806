"""The scale series' verdict per step (bench.live_scale._held, _verdict)."""

from __future__ import annotations

from typing import Any

from bench.live_scale import _held, _verdict


def step(**changes: Any) -> dict[str, Any]:
    base = {
        "participants": 2000,
        "opened": 2000,
        "broadcasts": 300,
        "expected_deliveries": 300_000,
        "deliveries": 300_000,
        "p95_ms": 80.0,
        "gaps": 0,
    }
    return base | changes


def test_a_step_on_schedule_under_the_p95_limit_with_every_delivery_holds() -> None:
    assert _held(step(), planned_broadcasts=300)


def test_a_step_whose_sends_were_all_refused_does_not_hold() -> None:
    # Every Send refused: nothing expected, nothing delivered, yet nothing held up.
    refused = step(broadcasts=0, expected_deliveries=0, deliveries=0, p95_ms=0.0)
    assert not _held(refused, planned_broadcasts=300)


def test_a_slow_gapped_or_short_step_does_not_hold() -> None:
    assert not _held(step(p95_ms=250.0), planned_broadcasts=300)
    assert not _held(step(gaps=1), planned_broadcasts=300)
    assert not _held(step(deliveries=250_000), planned_broadcasts=300)
    assert not _held(step(opened=1500), planned_broadcasts=300)


def test_a_step_of_three_samples_holds_when_two_held_and_reports_the_median_run() -> None:
    runs = [{"p95_ms": 230.0, "held": False}, {"p95_ms": 150.0, "held": True}]
    runs.append({"p95_ms": 180.0, "held": True, "p50_ms": 90.0})
    verdict = _verdict(runs)
    assert verdict["held"]
    assert verdict["p95_ms"] == 180.0 and verdict["p50_ms"] == 90.0
    assert verdict["samples_p95_ms"] == [230.0, 150.0, 180.0]


def test_one_fast_sample_does_not_carry_a_step_that_mostly_failed() -> None:
    runs = [
        {"p95_ms": 120.0, "held": True},
        {"p95_ms": 210.0, "held": False},
        {"p95_ms": 260.0, "held": False},
    ]
    verdict = _verdict(runs)
    assert not verdict["held"]
    assert verdict["p95_ms"] == 210.0


def test_a_single_sample_is_its_own_verdict() -> None:
    verdict = _verdict([{"p95_ms": 190.0, "held": True}])
    assert verdict == {"p95_ms": 190.0, "held": True}
