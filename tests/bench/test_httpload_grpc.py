"""httpload's gRPC mode (grpc://host:port/package.Service/Method targets): the pre-built body
goes out as the request with the headers as metadata, a per-call unique field makes every
call a new request, gRPC codes are recorded and named as the Python driver names them, and a
slow server still gets the calls at the rate asked (open loop over multiplexed streams)."""

from __future__ import annotations

import csv
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from itertools import pairwise
from pathlib import Path

import grpc
import pytest
from google.protobuf.internal import decoder

from bench import httpload
from bench.http1 import HttpTarget, UniqueField

S = 1_000_000_000
STALL_S = 0.2
BODY = b"\x0a\x03abc"  # field 1 = "abc"


class _Recorder(grpc.GenericRpcHandler):
    """Method OK answers b"ok"; Busy refuses with RESOURCE_EXHAUSTED; Slow takes STALL_S."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[bytes, str]] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            auth = dict(context.invocation_metadata()).get("authorization", "")
            with self.lock:
                self.requests.append((request, auth))
            if details.method.endswith("/Busy"):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "backlog")
            if details.method.endswith("/Slow"):
                time.sleep(STALL_S)  # the server under test is slow; nothing waits on this
            return b"ok"

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
def server() -> Iterator[tuple[str, _Recorder]]:
    recorder = _Recorder()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    srv.add_generic_rpc_handlers((recorder,))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        yield f"127.0.0.1:{port}", recorder
    finally:
        srv.stop(None)


def _attack(
    tmp_path: Path, url: str, rate: int, seconds: float, unique: UniqueField | None = None
) -> list[list[str]]:
    targets, out = tmp_path / "targets.json", tmp_path / "results.csv"
    target = HttpTarget("POST", url, {"authorization": "Bearer t"}, BODY)
    targets.write_text("\n".join(httpload.target_lines([target])) + "\n")
    argv = httpload.attack_argv(
        httpload.binary(), targets, out, rate, seconds, timeout_s=5, unique=unique
    )
    subprocess.run(argv, check=True, timeout=60, env={**os.environ, **httpload.GO_ENV})
    with out.open(newline="") as f:
        return list(csv.reader(f))


def _fields(message: bytes) -> list[tuple[int, bytes]]:
    """(field number, value) of a message made of length-delimited fields only."""
    out, pos = [], 0
    while pos < len(message):
        tag, pos = decoder._DecodeVarint(message, pos)
        size, pos = decoder._DecodeVarint(message, pos)
        out.append((tag >> 3, message[pos : pos + size]))
        pos += size
    return out


def test_each_call_sends_the_body_and_metadata_with_a_unique_field(
    server: tuple[str, _Recorder], tmp_path: Path
) -> None:
    address, recorder = server

    rows = _attack(tmp_path, f"grpc://{address}/t.S/Ok", 20, 0.5, UniqueField(4, "run-"))

    assert len(rows) == 10
    assert {r[1] for r in rows} == {"0"} and {r[5] for r in rows} == {""}
    assert {r[4] for r in rows} == {"2"}  # the response's size; never decoded
    assert len(recorder.requests) == 10
    assert {auth for _, auth in recorder.requests} == {"Bearer t"}
    keys = set()
    for request, _ in recorder.requests:
        assert request.startswith(BODY)
        (first, (number, key)) = _fields(request)
        assert first == (1, b"abc") and number == 4
        keys.add(key)
    assert keys == {f"run-{i}".encode() for i in range(10)}


def test_grpc_codes_are_recorded_and_named_like_the_python_driver(
    server: tuple[str, _Recorder], tmp_path: Path
) -> None:
    address, _ = server

    rows = _attack(tmp_path, f"grpc://{address}/t.S/Busy", 20, 0.5)

    assert [r[1] for r in rows] == [str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])] * 10
    assert all(r[5] == "backlog" for r in rows)
    merged = httpload.merge_csv(
        [",".join(r) for r in rows], warmup_s=0, duration_s=0.5, grpc_codes=True
    )
    assert merged.errors == {"RESOURCE_EXHAUSTED": 10}
    assert merged.ok == 0


def test_a_slow_grpc_server_gets_the_calls_on_time(
    server: tuple[str, _Recorder], tmp_path: Path
) -> None:
    address, _ = server

    rows = _attack(tmp_path, f"grpc://{address}/t.S/Slow", 50, 1)

    # One call every 20 ms although each takes 200 ms: the calls overlap on the connections.
    assert len(rows) == 50
    due = [int(r[0]) for r in rows]
    assert all(abs((b - a) - S // 50) < 1_000 for a, b in pairwise(due))
    assert {r[1] for r in rows} == {"0"}
    assert all(STALL_S * S <= int(r[2]) < 4 * STALL_S * S for r in rows)


def test_the_unique_field_is_refused_for_http_targets(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        _attack(tmp_path, "http://127.0.0.1:9/x", 10, 0.1, UniqueField(4, "k-"))
