"""Transactional outbox and its relay.

A service writes an event into its own schema's `outbox` table in the same transaction as the
change, so an event exists exactly when the change does. The relay publishes pending rows to
JetStream with `Nats-Msg-Id` = event id (duplicates inside the stream's window are dropped),
and deletes each row once JetStream has acknowledged it. A crash between publish and delete
re-publishes, and consumers are idempotent, so delivery is at least once and nothing is lost.
Several replicas may relay at once: rows are claimed with FOR UPDATE SKIP LOCKED.

Events about one aggregate (a course, a user) carry a sequence number assigned in the writing
transaction (`Elearn-Aggregate-Id` / `Elearn-Aggregate-Seq` headers), so a consumer can order
them after redelivery and notice a gap. A row written inside a sampled trace keeps its
`traceparent`, and the relay sends it as a header, so the event's consumers continue that
trace (mesh.tracing). The rows of one aggregate are published one by one, in order; rows of
no aggregate are sent together and their acks awaited at once (mesh.outbox_relay). A row that
fails gets an attempt counted and a growing back-off while the others flow, and after
`max_attempts` it is parked in `outbox_dead_letter` with its last error. Outages of NATS
itself (not connected, timeouts) count no attempts: they are nobody's poison.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import (
    LargeBinary,
    Table,
    Text,
    Uuid,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh import outbox_stats, tracing
from mesh.bus import Bus
from mesh.db import Database
from mesh.outbox_relay import AGGREGATE_ID_HEADER, AGGREGATE_SEQ_HEADER, Relay
from mesh.outbox_schema import outbox_table

__all__ = [
    "AGGREGATE_ID_HEADER",
    "AGGREGATE_SEQ_HEADER",
    "BatchEvent",
    "Outbox",
    "new_event_id",
    "outbox_table",
]

log = logging.getLogger("mesh.outbox")

DEFAULT_MAX_ATTEMPTS = 10


class BatchEvent(NamedTuple):
    """One event of `Outbox.add_many`: ids and subject as for `add`, the payload serialized,
    and the traceparent of the request that caused it (None outside a sampled trace)."""

    event_id: str
    subject: str
    payload: bytes
    traceparent: str | None


def new_event_id() -> tuple[str, Timestamp]:
    """A fresh event id and occurrence time for an event message."""
    ts = Timestamp()
    ts.GetCurrentTime()
    return str(uuid.uuid4()), ts


def _sibling(table: Table, name: str) -> Table:
    key = f"{table.schema}.{name}" if table.schema else name
    return table.metadata.tables[key]


class Outbox:
    def __init__(self, table: Table) -> None:
        self.table = table
        self.dead_letter = _sibling(table, "outbox_dead_letter")
        self.sequence = _sibling(table, "outbox_sequence")
        self._wake = asyncio.Event()
        # Commits notified so far: a pass whose claim began after the n-th covers its rows.
        self._notified = 0
        self._insert = insert(table)
        self._insert_sequenced = self._sequenced_insert()
        self._insert_many = text(
            f"INSERT INTO {table.fullname} (event_id, subject, payload, traceparent) "
            "SELECT * FROM unnest(CAST(:event_id AS uuid[]), CAST(:subject AS text[]), "
            "CAST(:payload AS bytea[]), CAST(:traceparent AS text[]))"
        )

    def _sequenced_insert(self) -> Any:
        # One statement: bump the aggregate's counter (its row lock orders concurrent writers
        # of one aggregate, and a rollback returns the number) and insert the event with it.
        seq = self.sequence
        bump = (
            pg_insert(seq)
            .values(aggregate_id=bindparam("aggregate_id", type_=Text), last_seq=1)
            .on_conflict_do_update(
                index_elements=[seq.c.aggregate_id], set_={"last_seq": seq.c.last_seq + 1}
            )
            .returning(seq.c.last_seq)
            .cte("bump")
        )
        row = select(
            bindparam("event_id", type_=Uuid),
            bindparam("subject", type_=Text),
            bindparam("payload", type_=LargeBinary),
            bindparam("aggregate_id", type_=Text),
            bump.c.last_seq,
            bindparam("traceparent", type_=Text),
        )
        columns = ["event_id", "subject", "payload", "aggregate_id", "aggregate_seq", "traceparent"]
        return insert(self.table).from_select(columns, row).add_cte(bump)

    async def add(
        self,
        conn: AsyncConnection,
        subject: str,
        event_id: str,
        event: Message,
        *,
        aggregate_id: str = "",
    ) -> None:
        """Record an event inside the caller's transaction; with `aggregate_id`, it gets the
        aggregate's next sequence number."""
        values = {
            "event_id": uuid.UUID(event_id),
            "subject": subject,
            "payload": event.SerializeToString(),
            "traceparent": tracing.current_traceparent(),
        }
        if aggregate_id:
            await conn.execute(self._insert_sequenced, {**values, "aggregate_id": aggregate_id})
        else:
            await conn.execute(self._insert, values)

    async def add_many(self, conn: AsyncConnection, events: Sequence[BatchEvent]) -> None:
        """Record a batch of unsequenced events in one statement (a group commit's events);
        each keeps the traceparent its own request had."""
        if not events:
            return
        event_ids, subjects, payloads, parents = (list(col) for col in zip(*events, strict=True))
        await conn.execute(
            self._insert_many,
            {
                "event_id": [uuid.UUID(e) for e in event_ids],
                "subject": subjects,
                "payload": payloads,
                "traceparent": parents,
            },
        )

    def notify(self) -> None:
        """Tell this process's relay there is work (call after the commit)."""
        self._notified += 1
        self._wake.set()

    async def relay(
        self,
        db: Database,
        bus: Bus,
        *,
        batch: int = 200,
        idle_poll_seconds: float = 0.5,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_base_seconds: float = 0.5,
        retry_max_seconds: float = 60.0,
        linger_seconds: float = 0.0,
    ) -> None:
        """Publish pending events forever. Polls when idle so rows written by other replicas
        (or left by a crash, or waiting out a back-off) go out too; an in-process commit wakes
        it at once, or `linger_seconds` later: a writer committing many small batches a
        second (svc_quiz's group commit) then shares one relay pass (a transaction of a claim
        and a delete) among several of them instead of paying one per commit."""
        relay = Relay(
            self.table, self.dead_letter, db, bus, batch, max_attempts,
            retry_base_seconds, retry_max_seconds,
        )  # fmt: skip
        stats = asyncio.create_task(outbox_stats.sample_forever(db, self.table, self.dead_letter))
        try:
            while True:
                # Commits notified before the claim began are in its snapshot: only a later
                # one calls for another pass (waking for rows already claimed is an empty one).
                self._wake.clear()
                covered = self._notified
                try:
                    claimed = await relay.once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay failed; retrying")
                    claimed = 0
                if claimed < batch:
                    if self._notified == covered:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), idle_poll_seconds)
                    if linger_seconds and self._notified != covered:
                        await asyncio.sleep(linger_seconds)
        finally:
            stats.cancel()
