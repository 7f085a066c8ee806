"""The alert rules Prometheus loads with `--observe` (deploy/prometheus): valid, unit-tested by
promtool (each rule fires on one input and not on another), and the SLA rules current with
bench/sla.yaml. promtool comes with `make tools` (tools-prometheus)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from bench import sla_rules
from bench.sla import Target, load_sla
from devstack import prometheus

RULES = sorted(prometheus.RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((prometheus.RULES_DIR / "tests").glob("*_test.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert prometheus.PROMTOOL.exists(), f"{prometheus.PROMTOOL} is missing: run `make tools`"
    return subprocess.run(
        [str(prometheus.PROMTOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=prometheus.RULES_DIR,
    )


def test_rule_files_are_valid() -> None:
    assert {p.name for p in RULES} == {"rules.yml", "sla_rules.yml"}
    result = promtool("check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_promtool_cases() -> None:
    assert {p.name for p in RULE_TESTS} == {"rules_test.yml", "sla_rules_test.yml"}
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.name)
def test_each_alert_is_exercised_by_a_test(rules: Path) -> None:
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    tested = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {t["alertname"] for t in case["alert_rule_test"]}
    assert alerts - tested == set()


def test_sla_rules_are_current_with_sla_yaml() -> None:
    assert sla_rules.main(["--check"]) == 0, "run `python -m bench.sla_rules` and commit"


def test_every_workflow_with_a_p95_gets_an_alert() -> None:
    alerts = {r["alert"]: r for r in sla_rules.rules(load_sla())}
    for name, target in load_sla().items():
        series = sla_rules.SERIES[name]
        if target.role != "workflow":
            assert series is None
            continue
        assert series is not None and series.alert in alerts, name
        threshold = float(alerts[series.alert]["expr"].rsplit(">", 1)[1])
        assert target.p95_ms is not None and threshold <= target.p95_ms / 1000


def test_a_scenario_without_a_series_is_refused() -> None:
    targets = {"brand_new": Target(scenario="brand_new", source="x", p95_ms=10)}
    with pytest.raises(ValueError, match="brand_new"):
        sla_rules.rules(targets)
