"""The real stack: reflection resolves method symbols on every service and on the edge
(`grpcurl describe pkg.Service.Method`), and a server-streaming REST binding answers a
well-formed JSON error when the call is refused.

The streaming JSON success path is tested against a fake service in
tests/edge/test_json_stream.py; live's Subscribe is the real one."""

from __future__ import annotations

import uuid

import httpx
import pytest
from google.protobuf import descriptor_pool

from devstack.stack import Endpoints
from elearn.analytics.v1 import analytics_service_pb2  # noqa: F401  (fills the pool)
from elearn.course.v1 import course_service_pb2  # noqa: F401
from elearn.live.v1 import live_service_pb2  # noqa: F401
from elearn.quiz.v1 import quiz_service_pb2  # noqa: F401
from elearn.user.v1 import user_service_pb2  # noqa: F401
from mesh.platform import SERVICES as PLATFORM_SERVICES
from tests.e2e.test_edge_flows import GRPCURL, run

pytestmark = pytest.mark.e2e
SERVICES = {s.name: s.grpc_service for s in PLATFORM_SERVICES}


def first_method(service: str) -> str:
    return descriptor_pool.Default().FindServiceByName(service).methods[0].name


async def test_grpcurl_describes_a_method_on_every_service(stack: Endpoints) -> None:
    # Every service runs (workers such as quiz-worker serve health only, no contract).
    assert set(SERVICES) <= set(stack.services)
    for name, service in SERVICES.items():
        symbol = f"{service}.{first_method(service)}"
        out = await run(GRPCURL, "-plaintext", stack.services[name][0], "describe", symbol)
        assert f"{symbol} is a method:" in out, (name, out)


async def test_grpcurl_describes_methods_of_every_service_through_the_edge(
    stack: Endpoints,
) -> None:
    assert stack.edge is not None
    out = await run(
        GRPCURL, "-plaintext", stack.edge, "describe", "elearn.user.v1.UserService.Login"
    )
    assert (
        "rpc Login ( .elearn.user.v1.LoginRequest ) returns ( .elearn.user.v1.LoginResponse )"
        in out
    )
    # The edge's reflection (answered by user) lists the whole platform, methods included.
    for service in SERVICES.values():
        symbol = f"{service}.{first_method(service)}"
        assert f"{symbol} is a method:" in await run(
            GRPCURL, "-plaintext", stack.edge, "describe", symbol
        )


def test_a_streaming_json_route_refusal_is_json_with_its_http_code(
    stack: Endpoints,
) -> None:
    # Live's Subscribe is a real server stream now; without a token it is refused before the
    # first message, and the edge turns that status into a JSON error with its HTTP code.
    path = f"/api/live/sessions/{uuid.uuid4()}/events"
    with httpx.Client(base_url=f"http://{stack.edge}", timeout=10) as http:
        response = http.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == 16  # google.rpc.Code UNAUTHENTICATED
    assert "access token" in body["message"]
