"""Worker results merge into one report entry of the documented JSON shape and one table row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import histogram, report
from bench.driver import merge_results
from bench.sla import Target


def worker_result(index: int, latencies_us: list[int], **changes: Any) -> dict[str, Any]:
    h = histogram.new_histogram()
    for v in latencies_us:
        h.record_value(v)
    result: dict[str, Any] = {
        "index": index,
        "histogram": histogram.encode(h),
        "ok": len(latencies_us),
        "errors": {},
        "warmup_calls": 10,
        "warmup_errors": 0,
        "prepare_errors": 0,
        "elapsed_s": 2.0,
        "cpu_s": 0.5,
        "late_starts": 0,
        "max_lag_us": 0,
        "counters": {},
    }
    result.update(changes)
    return result


LOAD = {"mode": "closed", "processes": 2, "concurrency": 4, "channels": 4, "rate": None}
TARGET = Target(
    scenario="login",
    source="C1",
    p95_ms=250,
    min_throughput=25,
    shed=frozenset({"RESOURCE_EXHAUSTED"}),
)


def test_merge_adds_counts_and_takes_the_longest_elapsed() -> None:
    merged = merge_results(
        [
            worker_result(
                0, [1000] * 60, errors={"RESOURCE_EXHAUSTED": 3}, counters={"relogins": 1}
            ),
            worker_result(
                1,
                [3000] * 40,
                errors={"RESOURCE_EXHAUSTED": 2, "UNAVAILABLE": 1},
                elapsed_s=2.5,
                counters={"relogins": 2},
            ),
        ]
    )

    assert merged.ok == 100
    assert merged.errors == {"RESOURCE_EXHAUSTED": 5, "UNAVAILABLE": 1}
    assert merged.counters == {"relogins": 3}
    assert merged.elapsed_s == 2.5
    assert merged.throughput == 40.0
    assert merged.worker_cpu_s == 1.0
    assert merged.hist.get_total_count() == 100


def test_entry_has_the_documented_shape_and_is_json() -> None:
    merged = merge_results(
        [
            worker_result(0, [2000] * 50, errors={"RESOURCE_EXHAUSTED": 4}),
            worker_result(1, [4000] * 50),
        ]
    )

    entry = report.scenario_entry("login", "user", LOAD, merged, TARGET, ceiling=1000.0)

    assert json.loads(json.dumps(entry)) == entry
    assert set(entry) >= {
        "name",
        "status",
        "error",
        "service",
        "load",
        "calls",
        "latency_ms",
        "throughput",
        "ratio_of_ceiling",
        "elapsed_s",
        "open_loop",
        "counters",
        "driver",
        "sla",
        "histogram",
    }
    assert entry["calls"]["ok"] == 100
    assert (entry["calls"]["shed"], entry["calls"]["failed"]) == (4, 0)
    assert set(entry["latency_ms"]) == {"p50", "p90", "p95", "p99", "p999", "max", "mean"}
    assert entry["throughput"] == 50.0
    assert entry["ratio_of_ceiling"] == 0.05
    assert entry["driver"]["cores"] == 0.5
    assert entry["sla"]["passed"] is True
    assert histogram.decode(entry["histogram"]).get_total_count() == 100


def test_table_shows_each_scenario_with_its_verdict() -> None:
    good = merge_results([worker_result(0, [2000] * 100)])
    slow = merge_results([worker_result(0, [400_000] * 100)])
    entries = [
        report.scenario_entry("login", "user", LOAD, good, TARGET, ceiling=None),
        report.scenario_entry("login2", "user", LOAD, slow, TARGET, ceiling=None),
        report.failed_entry("refresh", "user", LOAD, "setup: UNAVAILABLE: no server"),
    ]

    text = report.table(entries)

    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "PASS" in rows["login"]
    assert "FAIL p95_ms" in rows["login2"]
    assert "ERROR" in rows["refresh"]
    assert "setup: UNAVAILABLE: no server" in text
    assert report.passed(entries[:1]) is True
    assert report.passed(entries) is False


def test_write_json_writes_the_report_where_asked(tmp_path: Path) -> None:
    body = {"started_at": "2026-02-11T10:00:00Z", "scenarios": []}

    explicit = report.write_json(body, tmp_path / "out" / "run.json")

    assert json.loads(explicit.read_text()) == body
