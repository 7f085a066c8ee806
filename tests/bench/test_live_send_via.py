"""`--send-via join`: the live bench's instructor broadcasts on its own Join stream (one call
for the run) instead of a unary Send per broadcast; each broadcast is acknowledged once."""

from __future__ import annotations

import asyncio

from bench.live_run import broadcast_joined, end_sessions, open_sessions
from devstack.runstate import Endpoints


def test_broadcasts_on_the_instructors_join_stream_are_each_acknowledged(
    stack: Endpoints,
) -> None:
    async def run() -> tuple[int, list[float]]:
        sids, host, _ = await open_sessions(stack, participants=2)
        rpc_ms: list[float] = []
        try:
            target = stack.services["live"][0]
            accepted = await broadcast_joined(target, host, sids[0], 10.0, 0.5, rpc_ms)
        finally:
            await end_sessions(stack, host, sids)
        return accepted, rpc_ms

    accepted, rpc_ms = asyncio.run(run())

    assert accepted == len(rpc_ms) >= 5
    assert all(ms > 0 for ms in rpc_ms)
