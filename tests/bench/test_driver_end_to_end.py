"""The driver against a real grpc.aio health server on a free port: processes, merge, report."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from bench import histogram, report, sla_report
from bench.driver import WorkerFailed, run_workers
from bench.sla import Target
from bench.worker import WorkerPlan


@pytest_asyncio.fixture(loop_scope="session")
async def health_address() -> AsyncIterator[str]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def plan(address: str, **changes: object) -> WorkerPlan:
    base: dict[str, object] = {
        "scenario": "health",
        "index": 0,
        "addresses": (address,),
        "channels": 2,
        "concurrency": 4,
        "warmup_s": 0.2,
        "duration_s": 1.0,
        "count": None,
        "rate": None,
        "poisson": True,
        "timeout_s": 5.0,
        "seed": 1,
        "data": None,
    }
    base.update(changes)
    return WorkerPlan(**base)  # type: ignore[arg-type]


async def test_closed_loop_count_run_records_exactly_the_count(health_address: str) -> None:
    merged = await asyncio.to_thread(run_workers, plan(health_address, count=300), 2)

    assert merged.ok == 300
    assert merged.errors == {}
    assert merged.hist.get_total_count() == 300
    assert merged.warmup_calls > 0
    assert merged.children_cpu_s > 0
    entry = report.scenario_entry(
        "health",
        "user",
        {"mode": "closed", "processes": 2, "concurrency": 4, "channels": 2, "rate": None},
        merged,
        None,
        None,
    )
    assert entry["latency_ms"]["p50"] is not None
    assert histogram.decode(entry["histogram"]).get_total_count() == 300


async def test_open_loop_runs_near_the_planned_rate(health_address: str) -> None:
    merged = await asyncio.to_thread(
        run_workers, plan(health_address, rate=200.0, poisson=False, duration_s=1.0), 2
    )

    # 200 calls/s for 1 s over two processes, fixed spacing: 200 planned, give or take one each.
    assert 198 <= merged.ok <= 202
    assert merged.errors == {}
    assert 150 <= merged.throughput <= 210


async def test_an_unreachable_target_fails_the_run_instead_of_hanging(
    unused_tcp_port: int,
) -> None:
    unreachable = plan(f"127.0.0.1:{unused_tcp_port}", ready_timeout_s=0.5)

    with pytest.raises(WorkerFailed, match=r"no connection within 0\.5 s"):
        await asyncio.to_thread(run_workers, unreachable, 2)


async def test_a_timed_run_reports_each_second_and_its_sla_report_plots_them(
    health_address: str, tmp_path: Path
) -> None:
    merged = await asyncio.to_thread(
        run_workers, plan(health_address, rate=200.0, poisson=False, duration_s=2.0), 2
    )
    load = {"mode": "open", "processes": 2, "concurrency": 4, "channels": 2, "rate": 200.0}
    target = Target(scenario="health", source="test", p95_ms=100.0, p99_ms=200.0)
    entry = report.scenario_entry("health", "user", load, merged, target, merged.throughput)

    per_second = entry["series"]["ok"]
    assert len(per_second) == 2
    assert sum(per_second) == merged.ok
    # 200 calls/s with fixed spacing: each second holds its 200, give or take one per process.
    assert all(198 <= n <= 202 for n in per_second)
    assert all(v is not None and v > 0 for v in entry["series"]["p95"])

    run = {
        "schema": report.SCHEMA, "run_id": "t", "started_at": "s", "finished_at": "f",
        "host": {"cpus": 2}, "passed": report.passed([entry]), "scenarios": [entry],
        "ceiling": {"scenario": "health", "throughput": entry["throughput"]},
    }  # fmt: skip
    markdown = sla_report.write(run, report.write_json(run, tmp_path / "run.json"))

    assert f"| health | {entry['latency_ms']['p50']:.2f} |" in markdown.read_text()
    png = (tmp_path / "run" / "health.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
