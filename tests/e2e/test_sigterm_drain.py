"""SIGTERM drains a real service under load: health turns NOT_SERVING while the process still
runs, every call the service had started (its access log names each by request id) finishes
OK, none fails as INTERNAL, and calls after the shutdown get UNAVAILABLE.

Known gap, reported and left to mesh/server.py: calls the client had sent but the server had not
yet taken off grpc-core's queue when `server.stop()` runs never reach a handler and come back
CANCELLED (grpc-core's answer for queued calls at shutdown), where UNAVAILABLE would tell the
client to retry. The test lets those through only when the service provably never saw them.

A stack of its own (user only, no Envoy): the session stack's user service must stay up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.processes import ManagedProcess
from devstack.stack import Endpoints, Stack, StackConfig
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc

USER_SERVICE = "elearn.user.v1.UserService"
WORKERS = 16
# Bounds: each worker stops at its first error or after this many calls; the signal goes out
# once the burst is well under way. The service keeps serving for its shutdown delay (3 s)
# after the signal, so the bound must outlast that on a fast box: 400 did not (16 workers
# finished 6,400 calls inside it, 2026-12-05), 4,000 is 64,000 calls, 20 s at 3,200/s.
CALLS_PER_WORKER = 4_000
SIGNAL_AFTER_CALLS = 200
DEADLINE_S = 30.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Outcome:
    request_id: str
    started: float
    ended: float
    code: grpc.StatusCode
    details: str = ""


@dataclass
class Burst:
    outcomes: list[Outcome] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if len(self.outcomes) >= SIGNAL_AFTER_CALLS:
            self.enough.set()


@pytest.fixture
def user_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, Endpoints]]:
    # Every call in the service's access log, so the test knows which calls it started.
    monkeypatch.setenv("ELEARN_ACCESS_LOG", "all")
    replicas = {"user": 1, "course": 0, "quiz": 0, "live": 0, "analytics": 0}
    stack = Stack(StackConfig.for_tests(tmp_path, replicas=replicas, with_envoy=False))
    try:
        yield stack, stack.start(timeout=float(os.environ.get("ELEARN_TEST_STACK_TIMEOUT", "180")))
    finally:
        stack.stop()


async def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(
    user_only: tuple[Stack, Endpoints],
) -> None:
    stack, endpoints = user_only
    process = stack.process("user")
    assert process.pid is not None
    target = endpoints.services["user"][0]
    async with grpc.aio.insecure_channel(target) as channel:
        users = user_service_pb2_grpc.UserServiceStub(channel)
        email = f"drain-{uuid.uuid4().hex[:10]}@test.local"
        await users.Register(
            pb.RegisterRequest(
                email=email, password="correct horse", display_name="D",
                idempotency_key=uuid.uuid4().hex,
            ),
            timeout=10,
        )  # fmt: skip
        login = await users.Login(pb.LoginRequest(email=email, password="correct horse"))
        auth = (("authorization", f"Bearer {login.tokens.access_token}"),)

        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=USER_SERVICE))
        assert (await asyncio.wait_for(watch.read(), DEADLINE_S)).status == SERVING
        burst = Burst()
        workers = [asyncio.create_task(_worker(users, auth, burst)) for _ in range(WORKERS)]

        await asyncio.wait_for(burst.enough.wait(), DEADLINE_S)
        signalled = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        await asyncio.wait_for(_not_serving(watch), DEADLINE_S)
        # Health turned before the process stopped (Envoy and probes stop sending new calls).
        assert process.running()
        watch.cancel()  # a watch open for the whole grace period would hold the drain up

        await asyncio.wait_for(asyncio.gather(*workers), DEADLINE_S)
        await _exited(process)
        assert process.exit_code() == 0, process.log_tail()

        with pytest.raises(grpc.aio.AioRpcError) as after:
            await users.GetMe(pb.GetMeRequest(), metadata=auth, timeout=5)
        assert after.value.code() == grpc.StatusCode.UNAVAILABLE

    served = _calls_in_access_log(process, "/elearn.user.v1.UserService/GetMe")
    # Every call the service started was answered OK, also those the signal caught mid-way.
    for outcome in burst.outcomes:
        if outcome.request_id in served:
            assert (outcome.code, served[outcome.request_id]) == (grpc.StatusCode.OK, "OK"), outcome
    drained = [
        o for o in burst.outcomes if o.started < signalled < o.ended and o.request_id in served
    ]
    assert drained, "no call was in flight at SIGTERM: the burst did not overlap it"
    # What failed never reached a handler: refused after the shutdown, or dropped from
    # grpc-core's queue by it (the known gap above); never INTERNAL or UNKNOWN.
    failed = [o for o in burst.outcomes if o.code != grpc.StatusCode.OK]
    assert not [o for o in failed if o.request_id in served]
    assert {o.code for o in failed} <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    # Each worker stopped at its first failure: the bound was never what ended the burst.
    assert len(failed) == WORKERS


def _calls_in_access_log(process: ManagedProcess, method: str) -> dict[str, str]:
    """request id -> status code of every `method` call the service's access log records."""
    calls: dict[str, str] = {}
    for line in process.log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("msg") == "rpc" and record.get("method") == method:
            calls[record["request_id"]] = record["code"]
    return calls


async def _worker(
    users: user_service_pb2_grpc.UserServiceStub, auth: tuple[tuple[str, str]], burst: Burst
) -> None:
    for _ in range(CALLS_PER_WORKER):
        request_id = uuid.uuid4().hex
        metadata = (*auth, ("x-request-id", request_id))
        started = time.monotonic()
        try:
            reply = await users.GetMe(pb.GetMeRequest(), metadata=metadata, timeout=DEADLINE_S)
            assert reply.user.email.startswith("drain-")
            code, details = grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        burst.record(Outcome(request_id, started, time.monotonic(), code, details))
        if code != grpc.StatusCode.OK:
            return


async def _not_serving(watch: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
    while True:
        update = await watch.read()
        assert update is not grpc.aio.EOF, "the health watch ended before NOT_SERVING"
        if update.status == NOT_SERVING:
            return


async def _exited(process: ManagedProcess) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while process.running():
        assert time.monotonic() < deadline, f"still running:\n{process.log_tail()}"
        await asyncio.sleep(0.05)
