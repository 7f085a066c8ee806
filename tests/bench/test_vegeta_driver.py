"""`--driver vegeta`: its results become the same report as the Python driver's, and a short
progress_json run through the test stack's Envoy lands every call."""

from __future__ import annotations

import json
from pathlib import Path

from bench import cli, stack_cpu, vegeta
from bench.http1 import HttpTarget
from devstack.stack import Endpoints

S = 1_000_000_000


def test_results_before_the_window_are_warmup_and_errors_are_named_by_status() -> None:
    began = 1_000 * S
    measure = began + S // 2
    lines = [
        # start ns, status, latency ns, bytes out, bytes in, error, body, attack, seq, …
        # (in completion order, not start order)
        f"{measure + S // 2},200,6000000,10,20,,,,2,PUT,http://edge/x,",
        f"{began},200,3000000,10,20,,,,0,PUT,http://edge/x,",
        f"{measure},200,4000000,10,20,,,,1,PUT,http://edge/x,",
        f"{measure + S + 1},403,1000000,10,20,403 Forbidden,,,3,PUT,http://edge/x,",
        f"{measure + S + 2},0,10000000000,0,0,context deadline exceeded,,,4,PUT,http://edge/x,",
    ]

    merged = vegeta.merge_csv(lines, warmup_s=0.5, duration_s=2.0)

    assert merged.warmup_calls == 1
    assert merged.ok == 2
    assert merged.errors == {"HTTP_403": 1, "NO_RESPONSE": 1}
    assert merged.hist.get_total_count() == 2
    assert 5.9 <= merged.hist.get_value_at_percentile(100) / 1000 <= 6.1
    assert merged.series["ok"] == [2, 0]
    assert merged.series["errors"] == [0, 2]
    assert merged.throughput == 1.0


def test_targets_are_vegeta_json_lines_with_the_body_in_base64() -> None:
    target = HttpTarget("PUT", "http://edge/api/x", {"Authorization": "Bearer t"}, b'{"a":1}')

    (line,) = vegeta.target_lines([target])

    assert json.loads(line) == {
        "method": "PUT",
        "url": "http://edge/api/x",
        "header": {"Authorization": ["Bearer t"]},
        "body": "eyJhIjoxfQ==",
    }


def test_progress_json_through_envoy_with_vegeta(stack: Endpoints, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    cli.main(
        [
            "--endpoints",
            str(Path(stack.data_dir) / "endpoints.json"),
            "--scenario",
            "progress_json",
            "--driver",
            "vegeta",
            "--rate",
            "40",
            "--duration",
            "3",
            "--warmup",
            "0.5",
            "--users",
            "4",
            "--processes",
            "1",
            "--concurrency",
            "4",
            "--json",
            str(out),
        ]
    )

    (entry,) = json.loads(out.read_text())["scenarios"]
    assert entry["status"] == "ok", entry.get("error")
    assert entry["load"]["driver"] == "vegeta"
    # 40/s for 3 s at a constant rate: 120 planned starts, give or take one at each edge.
    assert 118 <= entry["calls"]["ok"] <= 122
    assert entry["calls"]["errors"] == {}
    assert entry["latency_ms"]["p50"] is not None
    assert sum(entry["series"]["ok"]) == entry["calls"]["ok"]
    cpu = entry["stack_cpu"]
    assert cpu is not None
    assert cpu["processes"]["bench driver"]["cpu_s"] > 0
    assert cpu["processes"]["envoy"]["cpu_s"] > 0
    assert {"course-0", "valkey-state", "postgres"} <= set(cpu["processes"])
    assert stack_cpu.table(cpu).splitlines()[0].split() == ["process", "cores", "µs/call"]
