"""Per-second series (bench/series.py) and the SLA report written from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import series, sla_report

S = 1_000_000_000


def test_calls_fall_in_the_second_of_their_reference_time() -> None:
    buckets = series.SecondBuckets(measure_ns=10 * S)
    buckets.record(10 * S, 1_000)  # first instant of the window
    buckets.record(11 * S - 1, 3_000)  # last instant of second 0
    buckets.record(12 * S + 5, 9_000)  # second 2; second 1 stays empty
    buckets.error(11 * S)

    merged = series.merge([buckets.encode()])

    assert merged["ok"] == [2, 0, 1]
    assert merged["errors"] == [0, 1, 0]
    assert merged["p50"][1] is None
    assert merged["p99"][0] == pytest.approx(3.0, rel=0.01)
    assert merged["p50"][2] == pytest.approx(9.0, rel=0.01)


def test_workers_merge_second_by_second_whatever_their_lengths() -> None:
    a, b = series.SecondBuckets(0), series.SecondBuckets(0)
    for i in range(100):
        a.record(0, 1_000 + i)  # 1.0 to 1.1 ms in second 0
    b.record(0, 50_000)
    b.record(3 * S, 2_000)
    b.error(3 * S)

    merged = series.merge([a.encode(), b.encode(), {}])

    assert merged["ok"] == [101, 0, 0, 1]
    assert merged["errors"] == [0, 0, 0, 1]
    assert merged["p50"][0] == pytest.approx(1.05, rel=0.03)
    assert merged["p99"][0] == pytest.approx(1.1, rel=0.03)
    assert merged["p95"][3] == pytest.approx(2.0, rel=0.01)


def _entry(name: str, ok: list[int], p95: list[float | None], passed: bool) -> dict[str, object]:
    return {
        "name": name,
        "status": "ok",
        "load": {"mode": "closed", "processes": 2, "concurrency": 8},
        "calls": {"ok": sum(ok), "errors": {} if passed else {"UNAVAILABLE": 3}},
        "latency_ms": {"p50": 4.25, "p95": 48.5, "p99": 90.0},
        "throughput": sum(ok) / len(ok),
        "ratio_of_ceiling": 0.25,
        "sla": {
            "source": "issue 11",
            "target": "p95≤50ms",
            "passed": passed,
            "checks": [{"name": "p95_ms", "target": 50, "actual": 48.5, "passed": passed}],
        },
        "series": {
            "interval_s": 1,
            "ok": ok,
            "errors": [0] * len(ok) if passed else [3] + [0] * (len(ok) - 1),
            "p50": [4.0] * len(ok),
            "p95": p95,
            "p99": [x if x is None else x * 2 for x in p95],
        },
    }


def test_the_report_tables_every_scenario_and_plots_each_against_its_sla(tmp_path: Path) -> None:
    run = {
        "schema": 2, "run_id": "r1", "started_at": "a", "finished_at": "b",
        "host": {"cpus": 2, "loadavg_before": [0.1, 0.2, 0.3]}, "passed": False,
        "ceiling": {"scenario": "health", "throughput": 2000.0},
        "scenarios": [
            _entry("search", [400, 420, 410], [40.0, None, 48.0], True),
            _entry("enroll", [300, 280], [60.0, 70.0], False),
            {"name": "broken", "status": "failed", "error": "no catalog", "load": {}},
        ],
    }  # fmt: skip
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))

    assert sla_report.main([str(path)]) == 0

    text = (tmp_path / "run.md").read_text()
    assert "**FAIL**" in text and "ceiling 2,000 calls/s (health)" in text
    assert "| search | 4.25 | 48.50 | 90.00 | 410.0 | 0.25 | 0 | p95≤50ms | PASS |" in text
    assert "| enroll |" in text and "UNAVAILABLE:3" in text and "FAIL p95_ms" in text
    assert "| broken |" in text and "ERROR: no catalog" in text
    assert "![search](run/search.png)" in text
    for name in ("search", "enroll"):
        png = (tmp_path / "run" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    assert not (tmp_path / "run" / "broken.png").exists()


def test_a_schema_1_run_has_no_series_to_plot(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": 1, "scenarios": []}))

    with pytest.raises(SystemExit):
        sla_report.main([str(path)])
