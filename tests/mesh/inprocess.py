"""A small grpc.aio server on port 0 with the mesh interceptor and raw-bytes methods, for
testing the mesh runtime without a whole service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from mesh import context
from mesh.auth import OPTIONAL, PUBLIC, SIGNED_IN, Policy, TokenVerifier, role
from mesh.errors import NotFound
from mesh.interceptor import MeshInterceptor

SERVICE = "test.v1.Probe"
KEY = Ed25519PrivateKey.generate()


def path(name: str) -> str:
    return f"/{SERVICE}/{name}"


class Probe:
    """Handlers whose behaviour the tests steer; `entered`/`release` let a test hold calls."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def whoami(self, request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
        caller = context.current_caller.get()
        return b"anonymous" if caller is None else caller.user_id.encode()

    async def hold(self, request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
        self.entered.set()
        await self.release.wait()
        return b"released"

    async def feed(self, request: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"open"
        await self.release.wait()

    async def written(self, request: bytes, ctx: grpc.aio.ServicerContext) -> None:
        """A stream in the writer style (svc_live's): two messages, then an error."""
        await ctx.write(b"one")
        await ctx.write(b"two")
        raise NotFound("nothing after two")

    async def not_found(self, request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
        raise NotFound("no such thing")

    async def crash(self, request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("secret internals")

    async def aborts(self, request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
        await ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "handler said no")
        return b""

    def handlers(self) -> grpc.GenericRpcHandler:
        unary: dict[str, Callable[..., Any]] = {
            "Public": self.whoami,
            "Optional": self.whoami,
            "Signed": self.whoami,
            "AdminOnly": self.whoami,
            "Unruled": self.whoami,
            "Hold": self.hold,
            "NotFound": self.not_found,
            "Crash": self.crash,
            "Aborts": self.aborts,
        }
        handlers = {name: grpc.unary_unary_rpc_method_handler(h) for name, h in unary.items()}
        handlers["Feed"] = grpc.unary_stream_rpc_method_handler(self.feed)
        handlers["Written"] = grpc.unary_stream_rpc_method_handler(self.written)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


POLICY = Policy(
    {
        path("Public"): PUBLIC,
        path("Optional"): OPTIONAL,
        path("Signed"): SIGNED_IN,
        path("AdminOnly"): role("admin"),
        path("Hold"): PUBLIC,
        path("Feed"): PUBLIC,
        path("Written"): PUBLIC,
        path("NotFound"): PUBLIC,
        path("Crash"): PUBLIC,
        path("Aborts"): PUBLIC,
    }
)


@asynccontextmanager
async def probe_server(
    *,
    max_concurrent: int = 100,
    verifier: TokenVerifier | None = None,
    max_queue_ms: float = 0.0,
) -> AsyncIterator[tuple[grpc.aio.Channel, Probe]]:
    probe = Probe()
    interceptor = MeshInterceptor(
        POLICY,
        verifier or TokenVerifier(KEY.public_key()),
        access_log="off",
        max_concurrent=max_concurrent,
        max_queue_ms=max_queue_ms,
    )
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers((probe.handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, probe
    finally:
        probe.release.set()
        await server.stop(None)


def unary(channel: grpc.aio.Channel, name: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(path(name))


def handled(name: str, code: str) -> float:
    """How many calls of `name` the server counted as finished with `code`."""
    value = REGISTRY.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": SERVICE, "grpc_method": name, "grpc_code": code},
    )
    return value or 0.0
