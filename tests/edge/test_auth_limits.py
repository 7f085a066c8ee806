"""The edge's sign-in rate limit (a token bucket per edge on Login, Register and Refresh, for
JSON, gRPC-Web and native gRPC alike) and the client address it hands to services."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from devstack.envoy_config import AuthRateLimit
from devstack.envoy_config.replies import RATE_LIMITED_MESSAGE
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc as pb_grpc
from mesh import queue_time
from tests.edge import grpcweb
from tests.edge.harness import (
    LOOPBACK,
    USER_SERVICE,
    Edge,
    FakeUserService,
    fake_user_server,
    running_edge,
)

# Far below any burst a test sends, and refilled slowly, so a burst of BURST_SIZE calls must
# run out of tokens whatever the timing.
LOW_LIMIT = AuthRateLimit(per_second=1, burst=3)
BURST_SIZE = 12
SPOOFED = "203.0.113.9"
ORIGIN = "http://localhost:5173"
HEADERS = grpcweb.REQUEST_HEADERS


def login_request() -> pb.LoginRequest:
    return pb.LoginRequest(email=f"limit-{uuid.uuid4().hex[:8]}@example.test", password="pw")


@pytest.fixture(scope="module")
async def limited(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Edge, FakeUserService]]:
    """An edge of its own with a low sign-in limit, so no other test shares its buckets."""
    servicer = FakeUserService()  # type: ignore[abstract]
    workdir: Path = tmp_path_factory.mktemp("limited-edge")
    async with (
        fake_user_server(servicer) as (_, port),
        running_edge(workdir, [port], auth_rate_limit=LOW_LIMIT) as edge,
    ):
        yield edge, servicer


async def test_a_native_grpc_login_burst_is_refused_with_resource_exhausted(
    limited: tuple[Edge, FakeUserService],
) -> None:
    edge, servicer = limited
    before = len(servicer.calls_to("Login"))
    async with grpc.aio.insecure_channel(edge.target) as channel:
        stub = pb_grpc.UserServiceStub(channel)
        results = await asyncio.gather(
            *(stub.Login(login_request(), timeout=5) for _ in range(BURST_SIZE)),
            return_exceptions=True,
        )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert refused, "a burst four times the bucket went through"
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "too many sign-in requests" in (refused[0].details() or "")
    passed = len(results) - len(refused)
    assert 1 <= passed <= LOW_LIMIT.burst + LOW_LIMIT.per_second * 5
    # Refused calls never reached the service.
    assert len(servicer.calls_to("Login")) - before == passed


async def test_a_json_register_burst_is_refused_with_429_and_a_status_body(
    limited: tuple[Edge, FakeUserService],
) -> None:
    edge, _ = limited
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    "/api/auth/register",
                    json={"email": f"r{i}@example.test", "password": "pw", "displayName": "R"},
                    headers={"origin": ORIGIN},
                )
                for i in range(BURST_SIZE)
            )
        )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    refused = [r for r in responses if r.status_code == 429]
    assert refused, statuses
    for response in refused:
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "code": grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
            "message": RATE_LIMITED_MESSAGE,
        }
        # A browser on another origin can read the refusal (CORS still decorates it).
        assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_a_grpc_web_refresh_burst_is_refused_with_resource_exhausted(
    limited: tuple[Edge, FakeUserService],
) -> None:
    edge, _ = limited
    frame = grpcweb.frame(pb.RefreshRequest(refresh_token="r").SerializeToString())
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    f"/{USER_SERVICE}/Refresh", content=frame, headers=grpcweb.REQUEST_HEADERS
                )
                for _ in range(BURST_SIZE)
            )
        )
    replies = [grpcweb.parse(r.content, r.headers) for r in responses]
    codes = [r.status for r in replies]
    # The fake leaves Refresh out: calls let through answer UNIMPLEMENTED.
    assert set(codes) <= {
        grpc.StatusCode.UNIMPLEMENTED.value[0],
        grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
    }, codes
    [refused, *_] = [r for r in replies if r.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
    assert refused.message == RATE_LIMITED_MESSAGE
    # A well-formed gRPC-Web answer: HTTP 200, trailers-only.
    assert {r.status_code for r in responses} == {200}


async def test_other_methods_are_not_limited(limited: tuple[Edge, FakeUserService]) -> None:
    edge, _ = limited
    async with grpc.aio.insecure_channel(edge.target) as channel:
        stub = pb_grpc.UserServiceStub(channel)
        replies = await asyncio.gather(
            *(stub.GetMe(pb.GetMeRequest(), timeout=5) for _ in range(BURST_SIZE))
        )
    assert len(replies) == BURST_SIZE


async def test_the_default_limit_lets_a_sign_in_burst_through(
    channel: grpc.aio.Channel, fake_user: tuple[FakeUserService, int]
) -> None:
    """The shared edge renders the default limit: 100 concurrent logins (more than the login
    benchmark sends in a second) all reach the service."""
    servicer, _ = fake_user
    before = len(servicer.calls_to("Login"))
    stub = pb_grpc.UserServiceStub(channel)
    await asyncio.gather(*(stub.Login(login_request(), timeout=10) for _ in range(100)))
    assert len(servicer.calls_to("Login")) - before == 100


@pytest.mark.parametrize("header", ["x-envoy-external-address", "x-forwarded-for"])
async def test_a_client_address_header_sent_by_the_client_is_overwritten(
    channel: grpc.aio.Channel,
    http: httpx.AsyncClient,
    fake_user: tuple[FakeUserService, int],
    header: str,
) -> None:
    servicer, _ = fake_user
    native = login_request()
    await pb_grpc.UserServiceStub(channel).Login(native, metadata=((header, SPOOFED),), timeout=5)
    json_email = f"json-{uuid.uuid4().hex[:8]}@example.test"
    response = await http.post(
        "/api/auth/login", json={"email": json_email, "password": "pw"}, headers={header: SPOOFED}
    )
    assert response.status_code == 200, response.text
    for email in (native.email, json_email):
        [call] = [c for c in servicer.calls_to("Login") if c.request.email == email]  # type: ignore[attr-defined]
        # What the edge saw, and only that: the service can key a throttle on it.
        assert call.metadata["x-envoy-external-address"] == LOOPBACK
        assert call.metadata["x-forwarded-for"] == LOOPBACK


async def test_the_edge_stamps_each_call_with_its_arrival_over_a_clients_own_stamp(
    channel: grpc.aio.Channel, http: httpx.AsyncClient, fake_user: tuple[FakeUserService, int]
) -> None:
    servicer, _ = fake_user
    ancient = ((queue_time.HEADER, "t=1.0"),)
    native = login_request()
    before = time.time()
    await pb_grpc.UserServiceStub(channel).Login(native, metadata=ancient, timeout=5)
    json_email = f"json-{uuid.uuid4().hex[:8]}@example.test"
    response = await http.post(
        "/api/auth/login",
        json={"email": json_email, "password": "pw"},
        headers={queue_time.HEADER: "t=1.0"},
    )
    assert response.status_code == 200, response.text
    after = time.time()
    for email in (native.email, json_email):
        [call] = [c for c in servicer.calls_to("Login") if c.request.email == email]  # type: ignore[attr-defined]
        stamp = call.metadata[queue_time.HEADER]
        waited = queue_time.waited_seconds(stamp, after)
        assert waited is not None and waited <= after - before + 0.001, stamp
