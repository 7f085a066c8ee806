"""mesh.bus.consume_batches on the real JetStream: it outlives idle waits, hands messages over
in batches, and redelivers a batch whose handler failed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Sequence

from nats.aio.msg import Msg

from devstack.stack import Endpoints
from mesh.bus import DRAIN_TIMEOUT_SECONDS, EVENT_STREAM, connect_bus, consume_batches
from mesh.config import MeshSettings
from tests.mesh.polling import eventually


async def test_consumer_survives_idle_waits_and_redelivers_failed_batches(
    stack: Endpoints,
) -> None:
    subject = f"elearn.test.{uuid.uuid4().hex}"
    seen: list[bytes] = []
    idle = 0
    failures = 1

    async def handle(msgs: Sequence[Msg]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("first batch fails")
        seen.extend(m.data for m in msgs)

    def count_idle() -> None:
        nonlocal idle
        idle += 1

    stop = asyncio.Event()
    async with connect_bus(MeshSettings(nats_url=stack.nats_url)) as bus:
        task = asyncio.create_task(
            consume_batches(bus, f"t{uuid.uuid4().hex}", handle, filter_subject=subject,
                            wait_seconds=0.05, stop=stop, on_idle=count_idle)
        )  # fmt: skip

        async def idled() -> bool:
            return idle >= 3

        await eventually(idled, within=10)
        assert not task.done()
        for n in range(3):
            await bus.js.publish(subject, str(n).encode())

        async def all_seen() -> bool:
            return sorted(seen) == [b"0", b"1", b"2"]

        await eventually(all_seen, within=15)
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_shutdown_mid_fetch_is_prompt_and_keeps_the_acks(stack: Endpoints) -> None:
    """The service cancels its consumer while a fetch waits, then leaves connect_bus (NATS
    drain): that must end well before nats-py's 30 s drain default (and before our bounded
    drain times out), with the handled batch acked on the server."""
    subject = f"elearn.test.{uuid.uuid4().hex}"
    durable = f"t{uuid.uuid4().hex}"
    seen: list[bytes] = []

    async def handle(msgs: Sequence[Msg]) -> None:
        seen.extend(m.data for m in msgs)

    async with connect_bus(MeshSettings(nats_url=stack.nats_url)) as bus:
        task = asyncio.create_task(
            consume_batches(bus, durable, handle, filter_subject=subject, wait_seconds=5)
        )
        for n in range(3):
            await bus.js.publish(subject, str(n).encode())

        async def all_seen() -> bool:
            return len(seen) == 3

        await eventually(all_seen, within=15)

        async def acked() -> bool:
            info = await bus.js.consumer_info(EVENT_STREAM, durable)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(acked, within=10)
        # The loop waits in its next 5 s fetch by now; stop it as mesh.server.run does.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        started = time.monotonic()
    assert time.monotonic() - started < DRAIN_TIMEOUT_SECONDS
    async with connect_bus(MeshSettings(nats_url=stack.nats_url)) as bus:
        info = await bus.js.consumer_info(EVENT_STREAM, durable)
        assert (info.num_ack_pending, info.num_pending, info.delivered.stream_seq > 0) == (
            0, 0, True,
        )  # fmt: skip


async def test_paced_fetches_are_spaced_unless_a_batch_comes_full(stack: Endpoints) -> None:
    """With pace_seconds, a fetch that got less than a full batch is followed by the next no
    sooner than the pace: events that trickle in are handled together. A backlog (full
    batches) is fetched without pause."""
    subject = f"elearn.test.{uuid.uuid4().hex}"
    pace, batch, wait = 0.4, 50, 0.05
    calls: list[tuple[float, int]] = []

    async def handle(msgs: Sequence[Msg]) -> None:
        calls.append((time.monotonic(), len(msgs)))

    stop = asyncio.Event()
    async with connect_bus(MeshSettings(nats_url=stack.nats_url)) as bus:
        # The backlog first: 4 full batches.
        for n in range(4 * batch):
            await bus.js.publish(subject, f"b{n}".encode())
        task = asyncio.create_task(
            consume_batches(bus, f"t{uuid.uuid4().hex}", handle, filter_subject=subject,
                            batch=batch, wait_seconds=wait, stop=stop, pace_seconds=pace)
        )  # fmt: skip

        async def backlog_done() -> bool:
            return sum(n for _, n in calls) >= 4 * batch

        await eventually(backlog_done, within=10)
        backlog = list(calls)
        # Then a trickle: one event every 20 ms for 1.2 s, about 20 per pace (under a batch).
        for n in range(60):
            await bus.js.publish(subject, f"t{n}".encode())
            await asyncio.sleep(0.02)  # the load's own rate, not a synchronisation

        async def trickle_done() -> bool:
            return sum(n for _, n in calls) >= 4 * batch + 60

        await eventually(trickle_done, within=10)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert [n for _, n in backlog] == [batch] * 4
    assert backlog[-1][0] - backlog[0][0] < pace  # no pause between full batches
    trickle = calls[len(backlog) :]
    assert all(n < batch for _, n in trickle)
    # Handled once per pace, each fetch then taking up to `wait`, where unpaced fetches would
    # follow each other every few milliseconds.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(trickle)]
    assert len(trickle) >= 2 and min(gaps) >= pace - wait - 0.02
