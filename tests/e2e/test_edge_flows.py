"""The whole stack through Envoy: register -> login -> who-am-I as JSON, as gRPC-Web and as
native gRPC; reflection lists the five services; analytics as JSON."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from devstack.stack import Endpoints
from elearn.course.v1 import course_service_pb2, course_service_pb2_grpc
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc
from mesh.platform import GRPC_SERVICE_NAMES
from tests.conftest import unique_email
from tests.edge import grpcweb
from tests.grpc_assert import fails_with

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
PROTOSET = ROOT / "envoy" / "elearn.protoset"
GRPCURL = str(Path(sys.executable).with_name("grpcurl"))
PLATFORM = set(GRPC_SERVICE_NAMES)


def test_json_register_login_whoami(stack: Endpoints) -> None:
    base = f"http://{stack.edge}"
    email = unique_email("json")
    with httpx.Client(base_url=base, timeout=10) as http:
        reg = http.post(
            "/api/auth/register",
            json={"email": email, "password": "correct horse", "displayName": "Jay",
                  "idempotencyKey": uuid.uuid4().hex},
        )  # fmt: skip
        assert reg.status_code == 200, reg.text
        login = http.post("/api/auth/login", json={"email": email, "password": "correct horse"})
        assert login.status_code == 200, login.text
        tokens = login.json()["tokens"]
        me = http.get("/api/users/me", headers={"authorization": f"Bearer {tokens['accessToken']}"})
        assert me.status_code == 200 and me.json()["user"]["email"] == email
        refreshed = http.post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
        assert refreshed.status_code == 200
        # A retry inside the grace window (a lost answer, a double click) gets the same pair;
        # replays after it revoke the family (tests/svc_user/test_sessions.py ages the token).
        retry = http.post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
        assert retry.status_code == 200
        assert retry.json()["tokens"]["refreshToken"] == refreshed.json()["tokens"]["refreshToken"]
        assert http.get("/api/users/me").status_code == 401
        bad = http.post("/api/auth/register", json={"email": "nope"})
        assert bad.status_code == 400 and "email" in bad.json()["message"]
        dup = http.post(
            "/api/auth/register",
            json={"email": email, "password": "correct horse", "displayName": "J",
                  "idempotencyKey": uuid.uuid4().hex},
        )  # fmt: skip
        assert dup.status_code == 409
        assert http.get("/api/no/such/path").status_code == 404
        logout = http.post("/api/auth/logout", json={"refreshToken": tokens["refreshToken"]})
        assert logout.status_code == 200


def test_analytics_dashboard_as_json_needs_a_token(stack: Endpoints) -> None:
    # Analytics was the last service answering UNIMPLEMENTED (501); it now serves dashboards.
    base = f"http://{stack.edge}"
    login = httpx.post(
        f"{base}/api/auth/login",
        json={"email": stack.admin_email, "password": stack.admin_password},
        timeout=10,
    ).json()
    me = login["user"]["userId"]
    path = f"{base}/api/analytics/instructor/{me}/courses?pageSize=10"
    assert httpx.get(path, timeout=10).status_code == 401
    response = httpx.get(
        path, headers={"authorization": f"Bearer {login['tokens']['accessToken']}"}, timeout=10
    )
    assert response.status_code == 200
    assert isinstance(response.json().get("courses", []), list)
    course_id = "00000000-0000-4000-8000-000000000000"
    unknown = httpx.get(
        f"{base}/api/analytics/courses/{course_id}/at-risk",
        headers={"authorization": f"Bearer {login['tokens']['accessToken']}"},
        timeout=10,
    )
    assert unknown.status_code == 404


def grpc_web_call(stack: Endpoints, method: str, request: bytes, token: str = "") -> grpcweb.Reply:
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = httpx.post(
        f"http://{stack.edge}/elearn.user.v1.UserService/{method}",
        content=grpcweb.frame(request),
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return grpcweb.parse(response.content, response.headers)


def test_grpc_web_register_login_whoami(stack: Endpoints) -> None:
    email = unique_email("web")
    reg = grpc_web_call(
        stack,
        "Register",
        pb.RegisterRequest(
            email=email, password="correct horse", display_name="W",
            idempotency_key=uuid.uuid4().hex,
        ).SerializeToString(),
    )  # fmt: skip
    assert reg.status == 0, reg.message
    login = grpc_web_call(
        stack, "Login", pb.LoginRequest(email=email, password="correct horse").SerializeToString()
    )
    token = pb.LoginResponse.FromString(login.messages[0]).tokens.access_token
    me = grpc_web_call(stack, "GetMe", pb.GetMeRequest().SerializeToString(), token)
    assert pb.GetMeResponse.FromString(me.messages[0]).user.email == email
    denied = grpc_web_call(stack, "GetMe", pb.GetMeRequest().SerializeToString())
    assert denied.status == grpc.StatusCode.UNAUTHENTICATED.value[0]


async def test_native_grpc_through_the_edge(stack: Endpoints) -> None:
    assert stack.edge is not None
    async with grpc.aio.insecure_channel(stack.edge) as channel:
        users = user_service_pb2_grpc.UserServiceStub(channel)
        email = unique_email("native")
        await users.Register(
            pb.RegisterRequest(
                email=email, password="correct horse", display_name="N",
                idempotency_key=uuid.uuid4().hex,
            )
        )  # fmt: skip
        login = await users.Login(pb.LoginRequest(email=email, password="correct horse"))
        me = await users.GetMe(
            pb.GetMeRequest(),
            metadata=(("authorization", f"Bearer {login.tokens.access_token}"),),
        )
        assert me.user.email == email
        courses = course_service_pb2_grpc.CourseServiceStub(channel)
        # The course service answers through the same channel (a student may not see jobs).
        await fails_with(
            grpc.StatusCode.PERMISSION_DENIED,
            courses.GetTranscodingStatus(
                course_service_pb2.GetTranscodingStatusRequest(video_id=str(uuid.uuid4())),
                metadata=(("authorization", f"Bearer {login.tokens.access_token}"),),
            ),
        )


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_lists_the_five_services_and_logs_in(stack: Endpoints) -> None:
    assert stack.edge is not None
    listed = set((await run(GRPCURL, "-plaintext", stack.edge, "list")).split())
    assert listed >= PLATFORM
    body = json.dumps({"email": stack.admin_email, "password": stack.admin_password})
    out = await run(
        GRPCURL, "-plaintext", "-protoset", str(PROTOSET), "-d", body,
        stack.edge, "elearn.user.v1.UserService/Login",
    )  # fmt: skip
    assert json.loads(out)["tokens"]["accessToken"]


async def test_ghz_drives_the_edge_with_the_shipped_protoset(stack: Endpoints) -> None:
    ghz = shutil.which("ghz", path=str(ROOT / ".tools" / "bin")) or shutil.which("ghz")
    assert ghz, "ghz is missing: run `make tools` (needs Go)"
    assert stack.edge is not None
    out = await run(
        ghz, "--insecure", "--protoset", str(PROTOSET),
        "--call", "elearn.user.v1.UserService.Login",
        "-d", json.dumps({"email": stack.admin_email, "password": stack.admin_password}),
        "-n", "20", "-c", "2", "--format", "json", stack.edge,
    )  # fmt: skip
    report = json.loads(out)
    assert report["count"] == 20
    assert report["statusCodeDistribution"] == {"OK": 20}, report["statusCodeDistribution"]
