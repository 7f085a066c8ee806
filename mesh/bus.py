"""NATS and JetStream: one connection per process, and the platform's event stream.

Events go to JetStream subjects `elearn.<service>.<event>` in one stream, `ELEARN`, with a
de-duplication window so a relay that re-publishes after a crash (same Nats-Msg-Id) adds
nothing. Live fan-out uses core NATS subjects on the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from mesh import metrics, tracing
from mesh.config import MeshSettings

log = logging.getLogger("mesh.bus")

EVENT_STREAM = "ELEARN"
EVENT_SUBJECTS = ["elearn.>"]
# Publishers retry for a while after a crash; two minutes covers a relay restart.
DUPLICATE_WINDOW_SECONDS = 120.0
# Read models (analytics) rebuild by replaying the stream, so it keeps 30 days; a rebuild
# after that starts from the first retained message and says that history is missing.
EVENT_RETENTION_SECONDS = 30 * 24 * 3600.0
DRAIN_TIMEOUT_SECONDS = 2


@dataclass
class Bus:
    nc: NATS
    js: JetStreamContext


@asynccontextmanager
async def connect_bus(settings: MeshSettings) -> AsyncIterator[Bus]:
    settings.require("nats_url")
    nc = await nats.connect(
        settings.nats_url,
        name=settings.instance_name,
        connect_timeout=3,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        # Bounded: a pull subscription's drain can wait out nats-py's 30 s default at shutdown.
        # Acks already sent (or buffered: drain flushes them even after a timeout) are kept,
        # and an unacked batch is redelivered, so stopping sooner loses no applied work.
        drain_timeout=DRAIN_TIMEOUT_SECONDS,
    )
    try:
        js = nc.jetstream(timeout=5)
        await ensure_event_stream(js)
        yield Bus(nc, js)
    finally:
        await nc.drain()


async def ensure_event_stream(js: JetStreamContext) -> None:
    config = StreamConfig(
        name=EVENT_STREAM,
        subjects=EVENT_SUBJECTS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=EVENT_RETENTION_SECONDS,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists already (another replica created it): bring its settings up to date.
        await js.update_stream(config)


# Lag sampling: a consumer_info round trip per durable every few seconds, per process.
CONSUMER_SAMPLE_SECONDS = 5.0


async def watch_consumer(
    bus: Bus, stream: str, durable: str, every: float = CONSUMER_SAMPLE_SECONDS
) -> None:
    """Export a durable consumer's lag (num_pending), unacked and redelivered counts, forever
    (run it as a task; cancel it with the consumer). Work queues' depth is their lag."""
    labels = (stream, durable)
    while True:
        try:
            info = await bus.js.consumer_info(stream, durable)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an outage: the gauges keep their last value
            log.debug("consumer %s/%s: no info (%s)", stream, durable, exc)
        else:
            metrics.JETSTREAM_PENDING.labels(*labels).set(info.num_pending or 0)
            metrics.JETSTREAM_ACK_PENDING.labels(*labels).set(info.num_ack_pending or 0)
            metrics.JETSTREAM_REDELIVERED.labels(*labels).set(info.num_redelivered or 0)
        await asyncio.sleep(every)


BatchHandler = Callable[[Sequence[Msg]], Awaitable[None]]


async def consume_batches(
    bus: Bus,
    durable: str,
    handle: BatchHandler,
    *,
    filter_subject: str = "elearn.>",
    batch: int = 500,
    wait_seconds: float = 1.0,
    ack_wait_seconds: float = 60.0,
    stop: asyncio.Event | None = None,
    on_idle: Callable[[], None] | None = None,
    pace_seconds: float = 0.0,
) -> None:
    """Apply the stream to a handler in batches through a durable pull consumer, forever (or
    until `stop` is set). A batch is acked only after `handle` returns, so a crash or a failed
    batch is redelivered: handlers must be idempotent. A failing batch is retried after a
    short back-off instead of acked, so nothing is skipped silently. `on_idle` is called after
    each wait that fetched nothing. Events that carry a trace get a consumer span in it
    (mesh.tracing.batch_spans). With `pace_seconds`, a fetch that left nothing waiting (its
    last message's num_pending is 0) is followed by the next no sooner than that after it:
    what a handler pays per batch (a transaction, acks, a cache bump) is then spread over the
    events of that interval instead of over the one or two that arrived while the last batch
    was handled. It adds at most that much to an event's wait; a backlog is fetched without
    pause (fetches return less than `batch` even then, so a short batch does not mean caught
    up)."""
    sub = await bus.js.pull_subscribe(
        filter_subject,
        durable=durable,
        stream=EVENT_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_seconds,
            max_ack_pending=batch * 4,
        ),
    )
    watcher = asyncio.create_task(watch_consumer(bus, EVENT_STREAM, durable))
    try:
        await _fetch_loop(sub, durable, handle, batch, wait_seconds, stop, on_idle, pace_seconds)
    finally:
        watcher.cancel()
        # A pull subscription left to the connection's drain holds it until the drain timeout.
        with contextlib.suppress(NatsError, OSError):
            await sub.unsubscribe()


async def _fetch_loop(
    sub: JetStreamContext.PullSubscription,
    durable: str,
    handle: BatchHandler,
    batch: int,
    wait_seconds: float,
    stop: asyncio.Event | None,
    on_idle: Callable[[], None] | None,
    pace_seconds: float = 0.0,
) -> None:
    backoff = 0.5
    while stop is None or not stop.is_set():
        fetched_at = time.monotonic()
        try:
            msgs = await sub.fetch(batch, timeout=wait_seconds)
        except (NatsTimeoutError, TimeoutError):
            # Nothing to fetch within the wait (nats-py raises either, depending on the path).
            if on_idle is not None:
                on_idle()
            continue
        try:
            with tracing.batch_spans(f"{durable} process", msgs):
                await handle(msgs)
        except Exception:
            log.exception(
                "consumer %s: batch of %d failed; it will be redelivered", durable, len(msgs)
            )
            for msg in msgs:
                await msg.nak(delay=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 0.5
        # Acked only now that the batch is committed. An ack is a publish into the
        # connection's buffer (no round trip), so they go out together without a task each.
        for msg in msgs:
            await msg.ack()
        # A fetch can come back empty (only status messages): nothing waits then either.
        if pace_seconds > 0 and len(msgs) < batch and (not msgs or _caught_up(msgs[-1])):
            await _pause(fetched_at + pace_seconds - time.monotonic(), stop)


def _caught_up(msg: Msg) -> bool:
    """Whether the stream held nothing more for the consumer when `msg` was delivered."""
    try:
        return msg.metadata.num_pending == 0
    except (NatsError, ValueError, IndexError):
        return True


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep, unless `stop` is set meanwhile."""
    if seconds <= 0:
        return
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
