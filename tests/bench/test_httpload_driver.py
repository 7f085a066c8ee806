"""`--driver httpload`: its results become the same report as the Python driver's, a short
progress_json run (and an exam_rush run over gRPC) through the test stack's Envoy lands every
call at the rate asked, and a stalled server shows as latency counted from each call's due
time (open loop)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench import cli, httpload, stack_cpu
from bench.http1 import HttpTarget
from devstack.stack import Endpoints
from elearn.quiz.v1 import quiz_service_pb2 as quiz_pb

S = 1_000_000_000
STALL_S = 0.2


class _SlowHandler(BaseHTTPRequestHandler):
    """A server that takes STALL_S over every call: the load must not wait for it."""

    protocol_version = "HTTP/1.1"
    peers: set[int] = set()

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _SlowHandler.peers.add(self.client_address[1])
        time.sleep(STALL_S)  # the server under test is slow; nothing waits on this
        self.send_response(200 if self.path == "/ok" else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _attack(
    tmp_path: Path, url: str, rate: int, seconds: float, *, poisson: bool = False, seed: int = 0
) -> list[list[str]]:
    targets, out = tmp_path / "targets.json", tmp_path / "results.csv"
    target = HttpTarget("PUT", url, {"Content-Type": "application/json"}, b'{"a":1}')
    targets.write_text("\n".join(httpload.target_lines([target])) + "\n")
    argv = httpload.attack_argv(
        httpload.binary(), targets, out, rate, seconds, timeout_s=5, poisson=poisson, seed=seed
    )
    subprocess.run(argv, check=True, timeout=60, env={**os.environ, **httpload.GO_ENV})
    with out.open(newline="") as f:
        return list(csv.reader(f))


def test_the_load_is_an_open_loop_and_latency_counts_from_each_due_time(
    slow_server: str, tmp_path: Path
) -> None:
    _SlowHandler.peers.clear()

    rows = _attack(tmp_path, f"http://{slow_server}/ok", rate=50, seconds=1)

    # One call every 20 ms whatever the server does: a closed loop on one connection would
    # have made 5 calls in that second, not 50.
    assert len(rows) == 50
    due = [int(r[0]) for r in rows]
    assert all(abs((b - a) - S // 50) < 1_000 for a, b in pairwise(due))
    assert {r[1] for r in rows} == {"200"}
    assert all(int(r[2]) >= STALL_S * S for r in rows)
    assert all(r[3] == "7" and r[4] == "2" and r[5] == "" for r in rows)
    # The calls overlapped: the tool opened more connections as the busy ones waited.
    assert len(_SlowHandler.peers) >= 5


def test_poisson_arrivals_have_the_rate_on_average_and_follow_the_seed(
    slow_server: str, tmp_path: Path
) -> None:
    url = f"http://{slow_server}/ok"

    def offsets(seed: int) -> list[int]:
        due = [int(r[0]) for r in _attack(tmp_path, url, 100, 2, poisson=True, seed=seed)]
        return [d - due[0] for d in due]

    first, again, other = offsets(7), offsets(7), offsets(8)

    # 200 expected in 2 s; a Poisson count's standard deviation is about 14.
    assert 150 <= len(first) <= 250
    assert first == again and first != other
    gaps = [b - a for a, b in pairwise(first)]
    # Exponential gaps: many far below the 10 ms mean and some far above it, unlike fixed ones.
    assert sum(g < S // 400 for g in gaps) > len(gaps) // 10
    assert sum(g > S // 40 for g in gaps) > len(gaps) // 50


def test_statuses_and_connection_errors_are_recorded_per_call(
    slow_server: str, tmp_path: Path
) -> None:
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    closed_port = refused.getsockname()[1]
    refused.close()

    unavailable = _attack(tmp_path, f"http://{slow_server}/busy", rate=20, seconds=0.5)
    nobody = _attack(tmp_path, f"http://127.0.0.1:{closed_port}/ok", rate=20, seconds=0.5)

    assert [r[1] for r in unavailable] == ["503"] * 10
    assert len(nobody) == 10
    assert all(r[1] == "0" and "connection refused" in r[5] for r in nobody)
    merged = httpload.merge_csv([",".join(r) for r in unavailable], warmup_s=0, duration_s=0.5)
    assert merged.errors == {"HTTP_503": 10}


def test_results_before_the_window_are_warmup_and_errors_are_named_by_status() -> None:
    began = 1_000 * S
    measure = began + S // 2
    lines = [
        # start ns, status, latency ns, bytes out, bytes in, error (in any order)
        f"{measure + S // 2},200,6000000,10,20,",
        f"{began},200,3000000,10,20,",
        f"{measure},200,4000000,10,20,",
        f"{measure + S + 1},403,1000000,10,20,",
        f"{measure + S + 2},0,10000000000,0,0,timeout",
    ]

    merged = httpload.merge_csv(lines, warmup_s=0.5, duration_s=2.0)

    assert merged.warmup_calls == 1
    assert merged.ok == 2
    assert merged.errors == {"HTTP_403": 1, "NO_RESPONSE": 1}
    assert merged.hist.get_total_count() == 2
    assert 5.9 <= merged.hist.get_value_at_percentile(100) / 1000 <= 6.1
    assert merged.series["ok"] == [2, 0]
    assert merged.series["errors"] == [0, 2]
    assert merged.throughput == 1.0


def test_targets_are_json_lines_with_the_body_in_base64() -> None:
    target = HttpTarget("PUT", "http://edge/api/x", {"Authorization": "Bearer t"}, b'{"a":1}')

    (line,) = httpload.target_lines([target])

    assert json.loads(line) == {
        "method": "PUT",
        "url": "http://edge/api/x",
        "header": {"Authorization": ["Bearer t"]},
        "body": "eyJhIjoxfQ==",
    }


def _bench_with_httpload(
    stack: Endpoints, tmp_path: Path, scenario: str, *, rate: int, seconds: float, callers: int
) -> dict[str, Any]:
    """One short bench run through the test stack's edge, fixed arrivals, 0.5 s warm-up."""
    out = tmp_path / "report.json"
    cli.main(
        [
            "--endpoints",
            str(Path(stack.data_dir) / "endpoints.json"),
            "--scenario",
            scenario,
            "--driver",
            "httpload",
            "--arrival",
            "fixed",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--warmup",
            "0.5",
            "--users",
            "4",
            "--processes",
            "1",
            "--concurrency",
            str(callers),
            "--json",
            str(out),
        ]
    )
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_progress_json_through_envoy_with_httpload(stack: Endpoints, tmp_path: Path) -> None:
    report = _bench_with_httpload(stack, tmp_path, "progress_json", rate=40, seconds=3, callers=4)

    (entry,) = report["scenarios"]
    assert entry["status"] == "ok", entry.get("error")
    assert entry["load"]["driver"] == "httpload"
    # 40/s for 3 s at a constant rate: 120 planned starts, give or take one at each edge.
    assert 118 <= entry["calls"]["ok"] <= 122
    assert entry["calls"]["errors"] == {}
    assert entry["latency_ms"]["p50"] is not None
    assert sum(entry["series"]["ok"]) == entry["calls"]["ok"]
    cpu = entry["stack_cpu"]
    assert cpu is not None
    # The driver has its row. Its reading may be 0: 120 calls cost httpload ~5 ms of CPU, under
    # the 10 ms clock tick /proc counts in (CI at 8f4924c read 0.0 on a fast box).
    assert cpu["processes"]["bench driver"]["cpu_s"] >= 0
    assert cpu["processes"]["envoy"]["cpu_s"] > 0
    assert {"course-0", "valkey-state", "postgres"} <= set(cpu["processes"])
    assert stack_cpu.table(cpu).splitlines()[0].split() == ["process", "cores", "µs/call"]


def test_exam_rush_through_envoy_with_httpload_makes_a_submission_per_call(
    stack: Endpoints, sql: psycopg.Connection, tmp_path: Path
) -> None:
    # 40 student-quiz pairs: a pair comes round every 2 s, long after its last answer.
    report = _bench_with_httpload(stack, tmp_path, "exam_rush", rate=20, seconds=2, callers=40)
    (entry,) = report["scenarios"]
    assert entry["status"] == "ok", entry.get("error")
    assert entry["load"]["driver"] == "httpload"
    assert 38 <= entry["calls"]["ok"] <= 42
    assert entry["calls"]["errors"] == {}
    # Every call of the 2.5 s, warm-up included, was a new graded submission: the tool gave
    # each its own idempotency key (the run's id, then the call's index).
    graded = sql.execute(
        "SELECT count(*), count(DISTINCT idempotency_key) FROM quizzes.submissions"
        " WHERE idempotency_key LIKE %s AND grading_status = %s",
        (report["run_id"] + "-%", quiz_pb.GRADING_STATUS_GRADED),
    ).fetchone()
    assert graded == (50, 50)
