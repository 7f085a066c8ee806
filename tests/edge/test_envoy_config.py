"""The rendered edge config on a real Envoy in front of a fake UserService: native gRPC,
gRPC-Web, JSON transcoding, CORS, error mapping, limits, reflection and health."""

from __future__ import annotations

import json
import uuid
from functools import partial
from pathlib import Path

import grpc
import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc as pb_grpc
from tests.edge import grpcweb
from tests.edge.harness import (
    DETAILS_USER_ID,
    PROTOSET,
    USER_SERVICE,
    Edge,
    FakeUserService,
    fake_user_server,
    grpcurl,
    health_line,
    running_edge,
    wait_for,
)

ORIGIN = "http://localhost:5173"
LOGIN = f"/{USER_SERVICE}/Login"


def unique_email() -> str:
    return f"edge-{uuid.uuid4().hex[:10]}@example.test"


async def test_native_grpc_reaches_the_service(channel: grpc.aio.Channel) -> None:
    email = unique_email()
    reply = await pb_grpc.UserServiceStub(channel).Login(
        pb.LoginRequest(email=email, password="pw"), timeout=5
    )
    assert reply.tokens.access_token == f"access-for-{email}"
    assert reply.user.roles == [pb.ROLE_STUDENT]


async def test_json_login_is_transcoded_with_camel_case_fields(http: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await http.post("/api/auth/login", json={"email": email, "password": "pw"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["tokens"]["accessToken"] == f"access-for-{email}"
    assert body["tokens"]["tokenType"] == "Bearer"
    assert body["tokens"]["expiresIn"] == "3600"  # int64 is a string in proto3 JSON
    assert body["tokens"]["refreshTokenExpireTime"] == "2030-03-17T17:46:40Z"
    assert body["user"]["displayName"] == "Ada Lovelace"
    assert body["user"]["roles"] == ["ROLE_STUDENT"]
    assert "access_token" not in body["tokens"]
    assert response.headers["x-request-id"]


async def test_json_get_me_forwards_authorization_and_a_request_id(
    http: httpx.AsyncClient, fake_user: tuple[FakeUserService, int]
) -> None:
    servicer, _ = fake_user
    token = f"Bearer {uuid.uuid4().hex}"
    response = await http.get("/api/users/me", headers={"authorization": token})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == "me@example.test"
    arrived = [c for c in servicer.calls_to("GetMe") if c.metadata.get("authorization") == token]
    assert len(arrived) == 1
    assert arrived[0].metadata["x-request-id"] == response.headers["x-request-id"]


async def test_grpc_web_call_returns_message_and_trailer_frame(http: httpx.AsyncClient) -> None:
    email = unique_email()
    request = pb.LoginRequest(email=email, password="pw").SerializeToString()
    response = await http.post(
        LOGIN, content=grpcweb.frame(request), headers={**grpcweb.REQUEST_HEADERS, "origin": ORIGIN}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/grpc-web")
    assert response.headers["access-control-allow-origin"] == ORIGIN
    reply = grpcweb.parse(response.content, response.headers)
    assert reply.status == grpc.StatusCode.OK.value[0]
    assert len(reply.messages) == 1
    assert (
        pb.LoginResponse.FromString(reply.messages[0]).tokens.access_token == f"access-for-{email}"
    )


async def test_grpc_web_text_error_carries_status_and_message(http: httpx.AsyncClient) -> None:
    request = pb.GetUserRequest(user_id="PERMISSION_DENIED").SerializeToString()
    response = await http.post(
        f"/{USER_SERVICE}/GetUser",
        content=grpcweb.encode_text(grpcweb.frame(request)),
        headers={
            **grpcweb.REQUEST_HEADERS,
            "content-type": grpcweb.TEXT_CONTENT_TYPE,
            "accept": grpcweb.TEXT_CONTENT_TYPE,
        },
    )
    assert response.status_code == 200
    reply = grpcweb.parse(response.content, response.headers, text=True)
    assert reply.status == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert reply.messages == []


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/users/me", LOGIN])
async def test_cors_preflight_is_answered_at_the_edge(http: httpx.AsyncClient, path: str) -> None:
    response = await http.options(
        path,
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-grpc-web",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "x-request-id",
    } <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "600"


async def test_cors_exposes_grpc_status_headers_and_allows_127_origin(
    http: httpx.AsyncClient,
) -> None:
    origin = "http://127.0.0.1:8000"
    response = await http.post(
        "/api/auth/login",
        json={"email": unique_email(), "password": "pw"},
        headers={"origin": origin},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed


async def test_cors_ignores_foreign_origins(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/api/auth/login",
        headers={
            "origin": "http://localhost.evil.example",
            "access-control-request-method": "POST",
        },
    )
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/nope", {}),
        ("POST", "/nope", {"content-type": "application/json"}),
        ("GET", "/api/nope", {}),
        ("DELETE", "/api/auth/login", {}),
        ("POST", LOGIN, {"content-type": "application/json"}),
    ],
)
async def test_unknown_paths_are_404_not_forwarded(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await http.request(
        method, path, headers=headers, content=b"{}" if method == "POST" else None
    )
    assert response.status_code == 404
    assert response.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize(
    ("path", "body", "http_status", "code"),
    [
        ("/api/users/me?bogus=1", None, 400, "INVALID_ARGUMENT"),
        ("/api/auth/login", b"{not json", 400, "INVALID_ARGUMENT"),
        ("/api/auth/register", b"{}" + b" " * (2 << 20), 413, "RESOURCE_EXHAUSTED"),
    ],
)
async def test_errors_the_edge_answers_itself_are_status_json(
    http: httpx.AsyncClient, path: str, body: bytes | None, http_status: int, code: str
) -> None:
    method = "GET" if body is None else "POST"
    response = await http.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == http_status
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["code"] == grpc.StatusCode[code].value[0]
    assert payload["message"]


async def test_unreachable_service_is_503_json_for_rest_and_unavailable_for_grpc_web(
    http: httpx.AsyncClient,
) -> None:
    method, path, grpc_path = _rest_binding_of_a_service_without_replicas()
    response = await http.request(
        method, path, content=b"{}" if method != "GET" else None,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 503
    assert response.json()["code"] == grpc.StatusCode.UNAVAILABLE.value[0]

    response = await http.post(
        grpc_path, content=grpcweb.frame(b""), headers=grpcweb.REQUEST_HEADERS
    )
    # Envoy's own gRPC-Web error: HTTP 503 with grpc-status in the headers (trailers-only).
    assert response.status_code == 503
    reply = grpcweb.parse(response.content, response.headers)
    assert reply.status == grpc.StatusCode.UNAVAILABLE.value[0]


def _rest_binding_of_a_service_without_replicas() -> tuple[str, str, str]:
    """(HTTP method, literal path, gRPC path) of some binding of a service other than user."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(PROTOSET.read_bytes())
    for file in fds.file:
        for service in file.service:
            full = f"{file.package}.{service.name}"
            if full == USER_SERVICE:
                continue
            for m in service.method:
                rule = m.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                if verb in ("get", "post") and "{" not in getattr(rule, verb):
                    return verb.upper(), getattr(rule, verb), f"/{full}/{m.name}"
    raise AssertionError("the protoset has no literal REST binding outside UserService")


async def test_unknown_grpc_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/elearn.nope.v1.NopeService/Nope")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        ("NOT_FOUND", 404),
        ("INVALID_ARGUMENT", 400),
        ("UNAUTHENTICATED", 401),
        ("PERMISSION_DENIED", 403),
        ("ALREADY_EXISTS", 409),
        ("RESOURCE_EXHAUSTED", 429),
        ("FAILED_PRECONDITION", 400),
        ("UNIMPLEMENTED", 501),
        ("UNAVAILABLE", 503),
    ],
)
async def test_grpc_errors_map_to_http_codes_with_json_body(
    http: httpx.AsyncClient, code: str, http_status: int
) -> None:
    response = await http.get(f"/api/users/{code}")
    assert response.status_code == http_status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == grpc.StatusCode[code].value[0]
    assert body["message"] == f"chosen {code}: café"


async def test_rich_error_details_reach_json_callers(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/api/users/{DETAILS_USER_ID}")
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "email is invalid"
    [detail] = body["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    [violation] = detail["fieldViolations"]
    assert (violation["field"], violation["description"]) == ("email", "missing @")


async def test_unknown_query_parameter_is_400_before_the_service(
    http: httpx.AsyncClient, fake_user: tuple[FakeUserService, int]
) -> None:
    servicer, _ = fake_user
    before = len(servicer.calls_to("GetMe"))
    response = await http.get("/api/users/me", params={"bogus": "1"})
    assert response.status_code == 400
    assert len(servicer.calls_to("GetMe")) == before


async def test_oversized_json_body_is_refused_before_the_service(
    http: httpx.AsyncClient, fake_user: tuple[FakeUserService, int]
) -> None:
    servicer, _ = fake_user
    before = len(servicer.calls_to("Register"))
    body = json.dumps({"email": unique_email(), "password": "x" * (2 << 20), "displayName": "big"})
    response = await http.post(
        "/api/auth/register", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert len(servicer.calls_to("Register")) == before


async def test_health_check_and_watch_through_the_edge(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    checked = await stub.Check(health_pb2.HealthCheckRequest(service=USER_SERVICE), timeout=5)
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=USER_SERVICE), timeout=5)
    first = await watch.read()
    assert isinstance(first, health_pb2.HealthCheckResponse)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


async def test_grpcurl_with_the_protoset_through_the_edge(edge: Edge) -> None:
    email = unique_email()
    request = json.dumps({"email": email, "password": "pw"})
    code, out, err = await grpcurl(
        "-plaintext",
        "-protoset",
        str(PROTOSET),
        "-d",
        request,
        edge.target,
        f"{USER_SERVICE}/Login",
    )
    assert code == 0, err
    reply = json_format.Parse(out, pb.LoginResponse())
    assert reply.tokens.access_token == f"access-for-{email}"


async def test_grpcurl_lists_services_by_reflection_through_the_edge(edge: Edge) -> None:
    code, out, err = await grpcurl("-plaintext", edge.target, "list")
    assert code == 0, err
    assert USER_SERVICE in out.split()


async def test_a_replica_that_goes_away_is_ejected_while_calls_keep_succeeding(
    tmp_path: Path,
) -> None:
    servicers = [FakeUserService(), FakeUserService()]  # type: ignore[abstract]
    async with (
        fake_user_server(servicers[0]) as (_, kept_port),
        fake_user_server(servicers[1]) as (leaving, leaving_port),
        running_edge(tmp_path, [kept_port, leaving_port]) as edge,
        grpc.aio.insecure_channel(edge.target) as channel,
    ):
        stub = pb_grpc.UserServiceStub(channel)
        for _ in range(8):
            await stub.Login(pb.LoginRequest(email=unique_email(), password="pw"), timeout=5)
        assert all(s.calls_to("Login") for s in servicers), "least-request spreads over both"

        await leaving.stop(grace=0.5)
        # Connect failures are retried on the other replica: no call fails meanwhile.
        for _ in range(20):
            await stub.Login(pb.LoginRequest(email=unique_email(), password="pw"), timeout=5)
        # Ejected within a few seconds: at once by outlier detection (its connections are
        # refused), and by the gRPC health check (1 s interval, three misses).
        for flag in ("failed_outlier_check", "failed_active_hc"):
            ejected_after = await wait_for(
                partial(_has_health_flag, edge, leaving_port, flag),
                f"{flag} on the stopped replica",
                None,
                edge.log_path,
                deadline_s=10,
            )
            assert ejected_after < 6


async def _has_health_flag(edge: Edge, port: int, flag: str) -> bool:
    prefix = health_line("user", port, "")
    return any(line.startswith(prefix) and flag in line for line in await edge.cluster_lines())
