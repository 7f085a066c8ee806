"""Prometheus started with `--observe` scrapes every process the stack started (each replica's
metrics port, the workers, Envoy's admin stats) and loads the alert rules of deploy/prometheus."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devstack import prometheus
from devstack.stack import Endpoints
from mesh.metric_catalogue import CATALOGUE
from tests.mesh.polling import eventually

pytestmark = pytest.mark.e2e

# The scrape interval is 5 s; a loaded shared box may delay the first scrape of a target.
SCRAPE_WAIT_SECONDS = 60.0


async def _get(url: str) -> Any:
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(url)
    reply.raise_for_status()
    return reply.json()["data"]


async def test_every_process_is_a_target_and_up(observed: Endpoints) -> None:
    assert observed.prometheus.startswith("http://127.0.0.1:")
    wanted = {
        (name, address) for name, addresses in observed.metrics.items() for address in addresses
    }
    assert observed.envoy_admin is not None
    wanted.add(("envoy", observed.envoy_admin))
    health: dict[tuple[str, str], str] = {}

    async def all_up() -> bool:
        nonlocal health
        targets = (await _get(f"{observed.prometheus}/api/v1/targets"))["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        return set(health) == wanted and all(h == "up" for h in health.values())

    try:
        await eventually(all_up, within=SCRAPE_WAIT_SECONDS, every=0.5)
    except AssertionError:
        raise AssertionError(f"wanted {sorted(wanted)} up; Prometheus has {health}") from None
    # Workers are targets too, not only the gRPC services.
    assert {"quiz-worker", "envoy", "course"} <= {job for job, _ in health}


async def test_the_alert_rules_are_loaded(observed: Endpoints) -> None:
    groups = (await _get(f"{observed.prometheus}/api/v1/rules"))["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"HighErrorRatio", "DeadLettersPresent", "SlaP95UpdateVideoProgress"} <= loaded
    assert {group["file"] for group in groups} == {str(p) for p in prometheus.rule_files()}


async def test_envoy_and_service_series_are_queryable(observed: Endpoints) -> None:
    async def present() -> bool:
        query = "count by (job) (up == 1)"
        result = await _get(f"{observed.prometheus}/api/v1/query?query={query}")
        jobs = {r["metric"]["job"] for r in result["result"]}
        envoy = await _get(f"{observed.prometheus}/api/v1/query?query=envoy_server_live")
        return {"envoy", "user"} <= jobs and bool(envoy["result"])

    await eventually(present, within=SCRAPE_WAIT_SECONDS, every=0.5)


async def test_every_dashboard_query_is_valid_promql(observed: Endpoints) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for metric in CATALOGUE:
            reply = await http.get(
                f"{observed.prometheus}/api/v1/query", params={"query": metric.query}
            )
            assert reply.status_code == 200, f"{metric.name}: {reply.text}"
