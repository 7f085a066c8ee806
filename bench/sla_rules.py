"""Prometheus alert rules for the workflow SLAs, generated from `bench/sla.yaml` so that the
benchmark's targets and production's alerts cannot drift apart (issue 16 item 5).

Each workflow scenario names the latency histogram series it exercises: an RPC method of
`grpc_server_handling_seconds`, or the live fan-out's own delivery histogram. Scenarios that
share a series (progress over gRPC and over JSON; queued and inline grading) give one rule
holding the tightest p95. A scenario missing from SERIES fails generation, so a new scenario
comes with its alert.

    python -m bench.sla_rules          # rewrite deploy/prometheus/sla_rules.yml and its tests
    python -m bench.sla_rules --check  # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.sla import Target, load_sla

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
OUTPUT = DEPLOY / "sla_rules.yml"
TESTS_OUTPUT = DEPLOY / "tests" / "sla_rules_test.yml"
WINDOW = "5m"
FOR = "5m"


@dataclass(frozen=True)
class Series:
    """A latency histogram's bucket selector and the rule name's stem."""

    alert: str
    histogram: str
    selector: str

    def p95(self) -> str:
        return (
            f"histogram_quantile(0.95, sum by (le) "
            f"(rate({self.histogram}_bucket{{{self.selector}}}[{WINDOW}])))"
        )


def _rpc(service: str, method: str) -> Series:
    return Series(
        alert=f"SlaP95{method}",
        histogram="grpc_server_handling_seconds",
        selector=f'grpc_service="elearn.{service}",grpc_method="{method}"',
    )


# scenario -> the series it measures; None: a reference, not a workflow (no alert).
SERIES: dict[str, Series | None] = {
    "health": None,
    "login": _rpc("user.v1.UserService", "Login"),
    "refresh": _rpc("user.v1.UserService", "Refresh"),
    "whoami": _rpc("user.v1.UserService", "GetMe"),
    "search": _rpc("course.v1.CourseService", "SearchCourses"),
    "enroll": _rpc("course.v1.CourseService", "Enroll"),
    "check_enrollment": _rpc("course.v1.CourseService", "CheckEnrollment"),
    "progress": _rpc("course.v1.CourseService", "UpdateVideoProgress"),
    "progress_json": _rpc("course.v1.CourseService", "UpdateVideoProgress"),
    "exam_rush": _rpc("quiz.v1.QuizService", "SubmitQuiz"),
    "queued_grading": _rpc("quiz.v1.QuizService", "SubmitQuiz"),
    "analytics_warm": _rpc("analytics.v1.AnalyticsService", "ListInstructorCourseStats"),
    "analytics_cold": _rpc("analytics.v1.AnalyticsService", "ListInstructorCourseStats"),
    "live": Series("SlaP95LiveDelivery", "live_delivery_seconds", ""),
}


def rules(targets: dict[str, Target]) -> list[dict[str, Any]]:
    unmapped = sorted(set(targets) - set(SERIES))
    if unmapped:
        raise ValueError(f"bench/sla.yaml scenarios without a series in SERIES: {unmapped}")
    tightest: dict[Series, list[Target]] = {}
    for name, target in targets.items():
        series = SERIES[name]
        if series is None or target.role != "workflow" or target.p95_ms is None:
            continue
        tightest.setdefault(series, []).append(target)
    out = []
    for series, group in sorted(tightest.items(), key=lambda item: item[0].alert):
        p95_ms = min(t.p95_ms for t in group if t.p95_ms is not None)
        scenarios = ", ".join(sorted(t.scenario for t in group))
        out.append(
            {
                "alert": series.alert,
                "expr": f"{series.p95()} > {p95_ms / 1000:g}",
                "for": FOR,
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": f"p95 over the {p95_ms:g} ms SLA ({scenarios})",
                    "description": f"bench/sla.yaml holds {scenarios} to {p95_ms:g} ms.",
                },
            }
        )
    return out


def _bucket_series(series: Series, threshold: float, *, slow: bool) -> list[dict[str, str]]:
    """Calls at 10 a minute, all in (0, T/2] (p95 ~0.48 T) or all in (T/2, 2T] (p95 ~1.9 T):
    test buckets of their own, so the cases hold whatever the real bucket layout."""
    labels = series.selector + ("," if series.selector else "")
    name = f"{series.histogram}_bucket"
    fast_bucket = "0x20" if slow else "0+10x20"
    return [
        {"series": f'{name}{{{labels}le="{threshold / 2:g}"}}', "values": fast_bucket},
        {"series": f'{name}{{{labels}le="{threshold * 2:g}"}}', "values": "0+10x20"},
        {"series": f'{name}{{{labels}le="+Inf"}}', "values": "0+10x20"},
    ]


def render_tests(targets: dict[str, Target] | None = None) -> str:
    """`promtool test rules` cases for every generated rule: slow calls fire it, fast do not."""
    tests = []
    for rule in rules(targets or load_sla()):
        series = next(s for s in SERIES.values() if s is not None and s.alert == rule["alert"])
        threshold = float(rule["expr"].rsplit(">", 1)[1])
        for slow in (True, False):
            expected = [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}]
            tests.append(
                {
                    "interval": "1m",
                    "input_series": _bucket_series(series, threshold, slow=slow),
                    "alert_rule_test": [
                        {
                            "eval_time": "15m",
                            "alertname": rule["alert"],
                            "exp_alerts": expected if slow else [],
                        }
                    ],
                }
            )
    body = {"rule_files": ["../sla_rules.yml"], "evaluation_interval": "1m", "tests": tests}
    header = "# Generated by `python -m bench.sla_rules` with sla_rules.yml: do not edit.\n"
    return header + yaml.safe_dump(body, sort_keys=False, width=200)


def render(targets: dict[str, Target] | None = None) -> str:
    body = {"groups": [{"name": "sla", "rules": rules(targets or load_sla())}]}
    header = "# Generated by `python -m bench.sla_rules` from bench/sla.yaml: do not edit.\n"
    return header + yaml.safe_dump(body, sort_keys=False, width=200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    files = {OUTPUT: render(), TESTS_OUTPUT: render_tests()}
    if args.check:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"{path} is stale: run `python -m bench.sla_rules`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
