"""mesh.acceptors: extra outstanding call requests per method, on grpc's private Cython layer.
These tests are what fails first if a grpcio upgrade moves that layer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from grpc.aio import ServerInterceptor

from mesh.acceptors import Acceptors


class Counting(ServerInterceptor):  # type: ignore[misc]
    """Counts the calls it sees and refuses the method named Refused."""

    def __init__(self) -> None:
        self.seen = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        self.seen += 1
        if details.method.endswith("/Refused"):

            async def refuse(_request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
                await ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "refused by the interceptor")
                return b""

            return grpc.unary_unary_rpc_method_handler(refuse)
        return await continuation(details)


class Service:
    def __init__(self) -> None:
        self.held = 0
        self.all_held = asyncio.Event()
        self.release = asyncio.Event()
        self.hold_target = 0

    async def echo(self, request: bytes, _ctx: grpc.aio.ServicerContext) -> bytes:
        return request

    async def hold(self, request: bytes, _ctx: grpc.aio.ServicerContext) -> bytes:
        self.held += 1
        if self.held >= self.hold_target:
            self.all_held.set()
        await self.release.wait()
        return request

    async def count(self, request: bytes, _ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for i in range(3):
            yield request + bytes([i])

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
            "Hold": grpc.unary_unary_rpc_method_handler(self.hold),
            "Refused": grpc.unary_unary_rpc_method_handler(self.echo),
            "Count": grpc.unary_stream_rpc_method_handler(self.count),
        }


Serving = tuple[grpc.aio.Channel, Acceptors, Service, Counting]


@asynccontextmanager
async def serving(depth: int, hot: Sequence[str] | None = None) -> AsyncIterator[Serving]:
    """A server whose `hot` methods (default: all) are accepted ahead."""
    interceptor = Counting()
    server = grpc.aio.server(interceptors=[interceptor])
    acceptors = Acceptors(server, [interceptor], depth)
    service = Service()
    handlers = service.handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.v1.T", handlers),))
    server.add_registered_method_handlers("t.v1.T", handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    acceptors.start([f"/t.v1.T/{m}" for m in handlers] if hot is None else hot)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, acceptors, service, interceptor
    finally:
        service.release.set()
        await server.stop(None)
        await acceptors.stop()


def _bytes(n: int) -> Iterator[bytes]:
    return (i.to_bytes(2, "big") for i in range(n))


async def test_a_burst_is_accepted_by_the_extra_loops_and_each_call_answered_once() -> None:
    async with serving(4) as (channel, acceptors, _, interceptor):
        echo = channel.unary_unary("/t.v1.T/Echo")
        sent = list(_bytes(300))
        answers = await asyncio.gather(*(echo(b, timeout=10) for b in sent))
        assert answers == sent
        assert acceptors.accepted > 0, "the extra loops took none of the burst"
        # Every call went through the server's interceptor exactly once, whichever loop took it.
        assert interceptor.seen == 300


async def test_the_servers_interceptors_decide_for_calls_the_extra_loops_accept() -> None:
    async with serving(4) as (channel, acceptors, _, _interceptor):
        refused = channel.unary_unary("/t.v1.T/Refused")
        outcomes = await asyncio.gather(
            *(refused(b"x", timeout=10) for _ in range(40)), return_exceptions=True
        )
        assert acceptors.accepted > 0
        assert all(
            isinstance(o, grpc.aio.AioRpcError) and o.code() == grpc.StatusCode.PERMISSION_DENIED
            for o in outcomes
        ), outcomes


async def test_more_held_calls_than_outstanding_requests_are_all_served() -> None:
    async with serving(4) as (channel, _acceptors, service, _):
        hold = channel.unary_unary("/t.v1.T/Hold")
        service.hold_target = 25  # far more than the 4 requests per method kept open
        calls = [asyncio.ensure_future(hold(b, timeout=20)) for b in _bytes(25)]
        await asyncio.wait_for(service.all_held.wait(), timeout=10)
        service.release.set()
        assert await asyncio.gather(*calls) == list(_bytes(25))


async def test_server_streams_accepted_by_the_extra_loops_stream_in_full() -> None:
    async with serving(3) as (channel, acceptors, _, _interceptor):
        count = channel.unary_stream("/t.v1.T/Count")

        async def read(tag: bytes) -> list[bytes]:
            return [m async for m in count(tag, timeout=10)]

        streams = await asyncio.gather(*(read(b) for b in _bytes(30)))
        assert streams == [[b + bytes([i]) for i in range(3)] for b in _bytes(30)]
        assert acceptors.accepted > 0


async def test_stop_ends_every_loop_and_the_port_refuses_calls_after() -> None:
    async with serving(4) as (channel, acceptors, _, _interceptor):
        echo = channel.unary_unary("/t.v1.T/Echo")
        assert await echo(b"before", timeout=10) == b"before"
        loops: list[asyncio.Task[Any]] = list(acceptors._loops)
        assert len(loops) == 3 * 4  # depth - 1 per registered method
    assert all(t.done() for t in loops)
    assert acceptors._loops == []


async def test_depth_one_leaves_grpcs_own_loop_alone() -> None:
    async with serving(1) as (channel, acceptors, _, _interceptor):
        echo = channel.unary_unary("/t.v1.T/Echo")
        assert await asyncio.gather(*(echo(b, timeout=10) for b in _bytes(20))) == list(_bytes(20))
        assert acceptors.accepted == 0
        assert acceptors._loops == []


async def test_a_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Acceptors(grpc.aio.server(), [], 0)


async def test_a_hot_method_that_is_not_registered_is_refused_at_start() -> None:
    server = grpc.aio.server()
    acceptors = Acceptors(server, [], 4)
    with pytest.raises(ValueError, match="not registered"):
        acceptors.start(["/t.v1.T/Nope"])


async def test_only_the_named_methods_get_extra_loops() -> None:
    async with serving(3, hot=["/t.v1.T/Echo"]) as (channel, acceptors, _, _interceptor):
        assert len(acceptors._loops) == 2
        refused = channel.unary_unary("/t.v1.T/Refused")
        with pytest.raises(grpc.aio.AioRpcError):
            await refused(b"x", timeout=10)
        assert acceptors.accepted == 0  # grpc's own loop took the call of a cold method
