"""A burst larger than grpc's default backlog waits for the handlers instead of being answered
CANCELLED by grpc's core (MeshSettings.max_pending_calls)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import grpc

from mesh.auth import PUBLIC, Policy
from mesh.config import MeshSettings
from mesh.server import ServiceSpec, build_server

METHOD = "/t.v1.T/Busy"
BURST = 2_500


async def busy(request: bytes, _ctx: grpc.aio.ServicerContext) -> bytes:
    # Holds the event loop a moment, as a loaded service does: calls pile up in the core.
    until = time.perf_counter() + 0.0005
    while time.perf_counter() < until:
        pass
    return request


def register(server: grpc.aio.Server) -> None:
    handlers = {"Busy": grpc.unary_unary_rpc_method_handler(busy)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.v1.T", handlers),))


async def burst(settings: MeshSettings) -> Counter[grpc.StatusCode]:
    spec = ServiceSpec(
        name="probe", services=[], register=register, policy=Policy({METHOD: PUBLIC})
    )
    server, _ = build_server(settings, spec, None)
    spec.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes: Counter[grpc.StatusCode] = Counter()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(METHOD)

            async def one(i: int) -> None:
                try:
                    await call(i.to_bytes(2, "big"), timeout=60)
                    codes[grpc.StatusCode.OK] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code()] += 1

            await asyncio.gather(*(one(i) for i in range(BURST)))
    finally:
        await server.stop(None)
    return codes


def settings(**overrides: int) -> MeshSettings:
    return MeshSettings(
        grpc_port=0, metrics_port=0, jwt_public_key_file="", nats_url="", access_log="off",
        max_concurrent_rpcs=BURST * 2, **overrides,
    )  # fmt: skip


async def test_a_burst_past_grpcs_default_backlog_is_served_in_full() -> None:
    assert await burst(settings()) == {grpc.StatusCode.OK: BURST}


async def test_a_backlog_bound_below_the_burst_answers_the_excess_cancelled() -> None:
    # The control, and what grpc does by default (1,000, then at random up to 3,000).
    codes = await burst(settings(max_pending_calls=1_000))
    assert codes[grpc.StatusCode.CANCELLED] > 0
    assert codes[grpc.StatusCode.OK] + codes[grpc.StatusCode.CANCELLED] == BURST
