"""`python -m svc_analytics.rebuild`: empty the read model and replay the event stream into it
from its first retained message, with a progress bar.

The stream keeps events for mesh.bus.EVENT_RETENTION_SECONDS (30 days). When it no longer
holds everything (its first sequence is past 1, or its first message is newer than the oldest
course the read model knew), the command says so before replaying: the rebuilt figures then
miss the expired history. The live consumer may keep running meanwhile; every write is an
order-insensitive merge, so both converge on the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

from mesh.bus import (
    DUPLICATE_WINDOW_SECONDS,
    EVENT_RETENTION_SECONDS,
    EVENT_STREAM,
    Bus,
    connect_bus,
)
from mesh.cache import Cache, open_cache
from mesh.db import Database
from svc_analytics.events import Incoming
from svc_analytics.ingest import Ingest
from svc_analytics.models import SCHEMA
from svc_analytics.repository import APPLY_ORDER
from svc_analytics.settings import AnalyticsSettings


async def _empty(db: Database, attempts: int = 5) -> None:
    """TRUNCATE every table, in the order the live consumer's batches mostly write them. A
    batch may still lock them in another order (one with grades only starts at learners);
    Postgres then aborts one of the two: a batch is redelivered, the TRUNCATE is retried."""
    names = ", ".join(f"{SCHEMA}.{t}" for t in APPLY_ORDER)
    for attempt in range(attempts):
        try:
            async with db.transaction() as conn:
                await conn.execute(text(f"TRUNCATE {names}"))
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == attempts - 1:
                raise


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


async def rebuild(db: Database, cache: Cache | None, bus: Bus, batch: int = 1000,
                  quiet: bool = False) -> int:  # fmt: skip
    """Replay every retained event into an emptied read model; returns the messages read."""
    info = await bus.js.stream_info(EVENT_STREAM)
    first, last = info.state.first_seq, info.state.last_seq
    async with db.read() as conn:
        oldest = (await conn.execute(text("SELECT min(created_at) FROM courses"))).scalar()
    days = EVENT_RETENTION_SECONDS / 86400
    if first > 1:
        _warn(
            f"the stream no longer holds everything: messages 1 to {first - 1} expired "
            f"(retention {days:g} days); the rebuilt figures miss them"
        )
    if info.state.messages and oldest is not None:
        head = await bus.js.get_msg(EVENT_STREAM, seq=first)
        head_time = head.time if isinstance(head.time, datetime) else None
        # Publication trails an event's creation by the relay's lag: allow a margin.
        if head_time is not None and head_time.replace(tzinfo=head_time.tzinfo or UTC) > (
            oldest + timedelta(seconds=DUPLICATE_WINDOW_SECONDS)
        ):
            _warn(
                f"the stream's first message ({head_time.isoformat()}) is newer than the oldest "
                f"course in the read model ({oldest.isoformat()}): older events are gone"
            )
    await _empty(db)
    if not info.state.messages:
        return 0
    ingest = Ingest(db, cache, consumer="analytics-rebuild")
    sub = await bus.js.pull_subscribe(
        "elearn.>",
        stream=EVENT_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=60.0,
        ),
    )
    read = 0
    with tqdm(total=last - first + 1, desc="replay", unit="msg", disable=quiet) as bar:
        position = first - 1
        while position < last:
            try:
                msgs = await sub.fetch(batch, timeout=5)
            except (NatsTimeoutError, TimeoutError):
                break
            await ingest.apply_incoming(
                [Incoming(m.subject, m.data, dict(m.headers or {})) for m in msgs]
            )
            newest = msgs[-1].metadata.sequence.stream
            bar.update(newest - position)
            position = newest
            read += len(msgs)
    await sub.unsubscribe()
    return read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svc_analytics.rebuild", description=__doc__)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    settings = AnalyticsSettings.load()

    async def run() -> int:
        async with (
            Database.open(settings, SCHEMA) as db,
            open_cache(settings) as cache,
            connect_bus(settings) as bus,
        ):
            return await rebuild(db, cache, bus, args.batch)

    count = asyncio.run(run())
    print(f"rebuilt the analytics read model from {count} stream messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
