"""Every process of the running stack exports the metric families the catalogue says it does
(issue 16 item 3), and the new back-end gauges carry live values: the pool's capacity, Valkey
round trips per role, the outbox depth, the consumers' lag per durable, the live stream limit."""

from __future__ import annotations

import re

import httpx

from devstack.stack import Endpoints
from mesh.metric_catalogue import ALL, CATALOGUE
from tests.mesh.polling import eventually

# Consumers sample their lag every 5 s and start with a sample; a loaded box may be slow.
SAMPLE_WAIT_SECONDS = 30.0


async def scrape(address: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(f"http://{address}/metrics")
    reply.raise_for_status()
    return reply.text


def value(text: str, name: str, **labels: str) -> float | None:
    """The first sample of `name` whose labels include `labels`."""
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match is None:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if labels.items() <= have.items():
            return float(match.group(2))
    return None


async def test_every_process_exports_its_catalogued_families(stack: Endpoints) -> None:
    scraped = {name: await scrape(addresses[0]) for name, addresses in stack.metrics.items()}
    missing = []
    for metric in CATALOGUE:
        jobs = list(scraped) if metric.jobs == (ALL,) else metric.jobs
        for job in jobs:
            if job in scraped and f"# TYPE {metric.name} {metric.kind}" not in scraped[job]:
                missing.append(f"{job}: {metric.name}")
    assert missing == [], "\n".join(missing)


async def test_back_end_gauges_carry_values(stack: Endpoints) -> None:
    course = await scrape(stack.metrics["course"][0])
    capacity = value(course, "db_pool_capacity")
    assert capacity is not None and capacity > 0
    assert value(course, "db_pool_waiting") == 0
    # Start-up pings both Valkeys through the timed client.
    for role in ("cache", "state"):
        count = value(course, "valkey_command_seconds_count", role=role)
        assert count is not None and count >= 1, role
    live = await scrape(stack.metrics["live"][0])
    assert value(live, "live_streams_limit") == 5000


async def test_consumer_lag_and_outbox_depth_are_sampled(stack: Endpoints) -> None:
    wanted = [
        ("analytics", "jetstream_consumer_pending", {"stream": "ELEARN", "durable": "analytics"}),
        ("quiz-worker", "jetstream_consumer_pending", {"durable": "graders"}),
        ("transcoder", "jetstream_consumer_pending", {"durable": "transcoders"}),
        ("course", "outbox_oldest_age_seconds", {}),
        ("quiz", "outbox_dead_letters", {}),
    ]

    async def sampled() -> bool:
        for job, name, labels in wanted:
            text = await scrape(stack.metrics[job][0])
            if value(text, name, **labels) is None:
                return False
        return True

    await eventually(sampled, within=SAMPLE_WAIT_SECONDS, every=0.5)
