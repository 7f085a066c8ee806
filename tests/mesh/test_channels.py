"""Outgoing calls through mesh.channels carry the incoming call's deadline, caller token and
request id, whatever the call shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from mesh import context
from mesh.channels import open_channels
from mesh.context import Caller

SERVICE = "test.v1.Echo"


def _seen(ctx: grpc.aio.ServicerContext) -> bytes:
    """What the server received: the authorization and request id headers, and whether a
    deadline under two seconds arrived."""
    metadata = dict(ctx.invocation_metadata() or ())
    remaining = ctx.time_remaining()
    short = remaining is not None and remaining < 2.0
    return f"{metadata.get('authorization')}|{metadata.get('x-request-id')}|{short}".encode()


async def unary_unary(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
    return _seen(ctx)


async def unary_stream(request: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield _seen(ctx)


async def stream_unary(requests: AsyncIterator[bytes], ctx: grpc.aio.ServicerContext) -> bytes:
    async for _ in requests:
        pass
    return _seen(ctx)


async def stream_stream(
    requests: AsyncIterator[bytes], ctx: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield _seen(ctx)


async def _requests() -> AsyncIterator[bytes]:
    yield b"one"


async def test_every_call_shape_carries_deadline_token_and_request_id() -> None:
    handlers = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "UU": grpc.unary_unary_rpc_method_handler(unary_unary),
            "US": grpc.unary_stream_rpc_method_handler(unary_stream),
            "SU": grpc.stream_unary_rpc_method_handler(stream_unary),
            "SS": grpc.stream_stream_rpc_method_handler(stream_stream),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    caller = Caller(user_id="u1", roles=frozenset(), token="tok-1", expires_at=time.time() + 60)
    # As if inside an incoming call with one second left.
    context.current_caller.set(caller)
    context.request_id.set("rid-7")
    context.deadline.set(time.monotonic() + 1.0)
    expected = b"Bearer tok-1|rid-7|True"
    try:
        async with open_channels() as channels:
            channel = channels.get(f"127.0.0.1:{port}")
            seen: dict[str, Any] = {
                "UU": await channel.unary_unary(f"/{SERVICE}/UU")(b""),
                "US": await anext(aiter(channel.unary_stream(f"/{SERVICE}/US")(b""))),
                "SU": await channel.stream_unary(f"/{SERVICE}/SU")(_requests()),
                "SS": await anext(aiter(channel.stream_stream(f"/{SERVICE}/SS")(_requests()))),
            }
    finally:
        context.current_caller.set(None)
        context.request_id.set("")
        context.deadline.set(None)
        await server.stop(None)
    assert seen == dict.fromkeys(("UU", "US", "SU", "SS"), expected)
