"""bench/sla.yaml covers every scenario, and a run passes or fails its targets as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import choose_driver
from bench.scenarios import CEILING, SCENARIOS
from bench.sla import Observed, Target, evaluate, load_sla, split_errors

LOGIN_LIKE = Target(
    scenario="login",
    source="test",
    p95_ms=250,
    p99_ms=500,
    min_throughput=25,
    shed=frozenset({"RESOURCE_EXHAUSTED"}),
)


def seen(**changes: object) -> Observed:
    base: dict[str, object] = {
        "ok": 1000,
        "errors": {},
        "p95_ms": 100.0,
        "p99_ms": 200.0,
        "throughput": 40.0,
        "ratio_of_ceiling": None,
    }
    base.update(changes)
    return Observed(**base)  # type: ignore[arg-type]


def test_every_scenario_has_a_sourced_target_and_health_is_the_ceiling() -> None:
    slas = load_sla()

    assert set(SCENARIOS) <= set(slas)
    assert all(t.source for t in slas.values())
    assert slas[CEILING].role == "ceiling"
    assert slas[CEILING].min_ratio_of_ceiling is None


def test_meeting_every_target_passes() -> None:
    verdict = evaluate(LOGIN_LIKE, seen())

    assert verdict.passed is True
    assert verdict.failed == []


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"p95_ms": 251.0}, "p95_ms"),
        ({"p99_ms": 501.0}, "p99_ms"),
        ({"throughput": 24.9}, "throughput"),
        ({"errors": {"UNAVAILABLE": 1}}, "error_ratio"),
        ({"ok": 0, "p95_ms": None, "p99_ms": None, "throughput": 0.0}, "successful calls"),
    ],
)
def test_missing_one_target_fails_on_that_check(changes: dict[str, object], failing: str) -> None:
    verdict = evaluate(LOGIN_LIKE, seen(**changes))

    assert verdict.passed is False
    assert failing in [c.name for c in verdict.failed]


def test_shed_calls_are_counted_apart_from_errors() -> None:
    errors = {"RESOURCE_EXHAUSTED": 300, "DEADLINE_EXCEEDED": 2}

    assert split_errors(LOGIN_LIKE, errors) == (300, 2)
    assert evaluate(LOGIN_LIKE, seen(errors={"RESOURCE_EXHAUSTED": 300})).passed is True
    assert evaluate(LOGIN_LIKE, seen(errors=errors)).passed is False


def test_a_shed_ratio_limit_is_judged_when_set() -> None:
    strict = Target(
        scenario="login", source="t", shed=frozenset({"RESOURCE_EXHAUSTED"}), max_shed_ratio=0.1
    )

    assert evaluate(strict, seen(ok=950, errors={"RESOURCE_EXHAUSTED": 50})).passed is True
    assert evaluate(strict, seen(ok=800, errors={"RESOURCE_EXHAUSTED": 200})).passed is False


def test_ratio_of_ceiling_is_judged_only_when_the_ceiling_was_measured() -> None:
    target = Target(scenario="whoami", source="t", min_ratio_of_ceiling=0.5)

    unjudged = evaluate(target, seen(ratio_of_ceiling=None))
    assert unjudged.passed is True
    assert [c.passed for c in unjudged.checks if c.name == "ratio_of_ceiling"] == [None]
    assert evaluate(target, seen(ratio_of_ceiling=0.6)).passed is True
    assert evaluate(target, seen(ratio_of_ceiling=0.4)).passed is False


def test_no_target_means_not_judged() -> None:
    verdict = evaluate(None, seen(ok=0))

    assert verdict.passed is None
    assert verdict.checks == ()


def test_load_profile_and_shed_codes_are_read(tmp_path: Path) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(
        "scenarios:\n"
        "  login:\n"
        "    source: C1\n"
        "    load: {concurrency: 4, rate: 30}\n"
        "    p95_ms: 250\n"
        "    shed: [RESOURCE_EXHAUSTED]\n"
    )

    target = load_sla(path)["login"]

    assert (target.concurrency, target.rate, target.p95_ms) == (4, 30.0, 250.0)
    assert target.shed == frozenset({"RESOURCE_EXHAUSTED"})
    assert target.describe() == "p95≤250ms"


@pytest.mark.parametrize(
    "body",
    ["    source: C1\n    p95: 250\n", "    p95_ms: 250\n"],
    ids=["unknown key", "no source"],
)
def test_a_malformed_target_is_refused(tmp_path: Path, body: str) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text("scenarios:\n  login:\n" + body)

    with pytest.raises(ValueError):
        load_sla(path)


def test_an_open_loop_run_is_judged_on_keeping_its_rate_not_on_capacity() -> None:
    target = Target(
        scenario="whoami", source="t", p95_ms=250, min_throughput=1332, min_ratio_of_ceiling=0.5
    )

    kept = evaluate(target, seen(throughput=990.0, ratio_of_ceiling=0.2, planned_rate=1000.0))
    fell_behind = evaluate(target, seen(throughput=900.0, planned_rate=1000.0))

    assert kept.passed is True
    assert {c.name for c in kept.checks} >= {"kept_rate", "p95_ms"}
    assert not {c.name for c in kept.checks} & {"throughput", "ratio_of_ceiling"}
    assert [c.name for c in fell_behind.failed] == ["kept_rate"]


def test_a_target_can_name_its_driver_and_the_flag_overrides_it(tmp_path: Path) -> None:
    progress = load_sla()["progress_json"]

    # The progress target is measured with the compiled open-loop tool; the rest with ours.
    assert progress.driver == "httpload"
    assert choose_driver(None, progress) == "httpload"
    assert choose_driver("python", progress) == "python"
    assert choose_driver(None, load_sla()["whoami"]) == "python"
    assert choose_driver(None, None) == "python"
    bad = tmp_path / "sla.yaml"
    bad.write_text("scenarios:\n  x:\n    source: s\n    load: {driver: wrk}\n")
    with pytest.raises(ValueError, match=r"load\.driver must be one of"):
        load_sla(bad)
