"""The metric catalogue (mesh.metric_catalogue) against the code and the generated dashboard:
every family the code registers is listed, with its kind; every dashboard panel queries only
listed families; deploy/grafana/elearn.json is what the catalogue generates."""

from __future__ import annotations

import json
import re
from types import ModuleType

from prometheus_client.metrics import MetricWrapperBase

import mesh.metrics
import svc_course.progress_flusher
import svc_live.live_metrics
from mesh import dashboard
from mesh.metric_catalogue import BY_NAME, CATALOGUE

MODULES: tuple[ModuleType, ...] = (mesh.metrics, svc_live.live_metrics, svc_course.progress_flusher)
# PromQL words that are not metric names in our queries.
PROMQL = {"sum", "max", "by", "rate", "increase", "histogram_quantile", "le", "without"}
SUFFIXES = ("_bucket", "_sum", "_count")


def registered() -> dict[str, str]:
    """Scraped family name -> kind, for every metric object the modules define."""
    found = {}
    for module in MODULES:
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                kind = value._type
                name = value._name
                found[f"{name}_total" if kind == "counter" else name] = kind
    return found


def test_the_catalogue_lists_every_registered_family_with_its_kind() -> None:
    ours = {m.name: m.kind for m in CATALOGUE if m.jobs != ("envoy",)}
    assert ours == registered()


def test_names_are_unique() -> None:
    assert len(BY_NAME) == len(CATALOGUE)


def metric_names(expr: str) -> set[str]:
    """Identifiers outside label matchers and grouping clauses, i.e. the series queried."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    words = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr)) - PROMQL
    return {next((w[: -len(s)] for s in SUFFIXES if w.endswith(s)), w) for w in words}


def test_every_panel_queries_catalogued_families() -> None:
    board = json.loads(dashboard.OUTPUT.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) == len(CATALOGUE)
    for panel in panels:
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, target["expr"]
            assert names <= set(BY_NAME), f"{panel['title']}: {names - set(BY_NAME)}"


def test_the_parser_would_catch_an_unknown_family() -> None:
    assert metric_names('sum by (job) (rate(made_up_total{a="b"}[1m]))') == {"made_up_total"}


def test_the_committed_dashboard_is_current() -> None:
    assert dashboard.main(["--check"]) == 0, "run `python -m mesh.dashboard` and commit"
