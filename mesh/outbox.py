"""Transactional outbox and its relay.

A service writes an event into its own schema's `outbox` table in the same transaction as the
change, so an event exists exactly when the change does. The relay publishes pending rows to
JetStream with `Nats-Msg-Id` = event id (duplicates inside the stream's window are dropped),
and deletes them once JetStream has acknowledged. A crash between publish and delete
re-publishes, and consumers are idempotent, so delivery is at least once and nothing is lost.
Several replicas may relay at once: rows are claimed with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh import metrics
from mesh.bus import Bus
from mesh.db import Database

log = logging.getLogger("mesh.outbox")


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table in a service's schema (the metadata's schema)."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def new_event_id() -> tuple[str, Timestamp]:
    """A fresh event id and occurrence time for an event message."""
    ts = Timestamp()
    ts.GetCurrentTime()
    return str(uuid.uuid4()), ts


class Outbox:
    def __init__(self, table: Table) -> None:
        self.table = table
        self._wake = asyncio.Event()
        self._insert = insert(table)

    async def add(self, conn: AsyncConnection, subject: str, event_id: str, event: Message) -> None:
        """Record an event inside the caller's transaction."""
        await conn.execute(
            self._insert,
            {
                "event_id": uuid.UUID(event_id),
                "subject": subject,
                "payload": event.SerializeToString(),
            },
        )

    def notify(self) -> None:
        """Tell this process's relay there is work (call after the commit)."""
        self._wake.set()

    async def relay(
        self, db: Database, bus: Bus, *, batch: int = 200, idle_poll_seconds: float = 0.5
    ) -> None:
        """Publish pending events forever. Polls when idle so rows written by other replicas
        (or left by a crash) go out too; an in-process commit wakes it at once."""
        t = self.table
        claim = (
            select(t.c.id, t.c.event_id, t.c.subject, t.c.payload, t.c.created_at)
            .order_by(t.c.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        remove = delete(t).where(t.c.id.in_(bindparam("ids", expanding=True)))
        while True:
            try:
                published = await self._relay_once(db, bus, claim, remove)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                published = 0
            if published < batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle_poll_seconds)

    async def _relay_once(self, db: Database, bus: Bus, claim, remove) -> int:  # type: ignore[no-untyped-def]
        async with db.transaction() as conn:
            rows = (await conn.execute(claim)).all()
            if not rows:
                return 0
            acks = [
                bus.js.publish(row.subject, row.payload, headers={"Nats-Msg-Id": str(row.event_id)})
                for row in rows
            ]
            # All must be acknowledged before the rows go; one failure rolls back the claim.
            await asyncio.gather(*acks)
            await conn.execute(remove, {"ids": [row.id for row in rows]})
        now = time.time()
        for row in rows:
            metrics.OUTBOX_LAG.observe(max(0.0, now - row.created_at.timestamp()))
        metrics.OUTBOX_PUBLISHED.inc(len(rows))
        return len(rows)
