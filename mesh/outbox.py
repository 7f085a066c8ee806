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
trace (mesh.tracing). Each row is published on its own: a row that fails
gets an attempt counted and a growing back-off while the others flow, and after
`max_attempts` it is parked in `outbox_dead_letter` with its last error. Outages of NATS
itself (not connected, timeouts) count no attempts: they are nobody's poison.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import nats.errors
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import (
    Integer,
    Interval,
    LargeBinary,
    Row,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh import metrics, outbox_stats, tracing
from mesh.bus import Bus
from mesh.db import Database
from mesh.outbox_schema import outbox_table

__all__ = ["BatchEvent", "Outbox", "new_event_id", "outbox_table"]

log = logging.getLogger("mesh.outbox")

AGGREGATE_ID_HEADER = "Elearn-Aggregate-Id"
AGGREGATE_SEQ_HEADER = "Elearn-Aggregate-Seq"
DEFAULT_MAX_ATTEMPTS = 10
# Failures that say NATS is down or slow, not that this row is bad.
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.FlushTimeoutError,
    TimeoutError,
)


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
    ) -> None:
        """Publish pending events forever. Polls when idle so rows written by other replicas
        (or left by a crash, or waiting out a back-off) go out too; an in-process commit wakes
        it at once."""
        relay = _Relay(self, db, bus, batch, max_attempts, retry_base_seconds, retry_max_seconds)
        stats = asyncio.create_task(outbox_stats.sample_forever(db, self.table, self.dead_letter))
        try:
            while True:
                try:
                    claimed = await relay.once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay failed; retrying")
                    claimed = 0
                if claimed < batch:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), idle_poll_seconds)
        finally:
            stats.cancel()


class _Relay:
    """One relay's statements and its publish-and-account pass."""

    def __init__(
        self,
        outbox: Outbox,
        db: Database,
        bus: Bus,
        batch: int,
        max_attempts: int,
        retry_base: float,
        retry_max: float,
    ) -> None:
        self.db, self.bus = db, bus
        self.max_attempts = max_attempts
        self.retry_base, self.retry_max = retry_base, retry_max
        t = outbox.table
        earlier = t.alias("earlier")
        waiting = (
            select(literal_column("1"))
            .where(
                and_(
                    earlier.c.aggregate_id == t.c.aggregate_id,
                    earlier.c.id < t.c.id,
                    earlier.c.next_attempt_at > func.now(),
                )
            )
            .exists()
        )
        self.claim = (
            select(t)
            .where(t.c.next_attempt_at <= func.now())
            .where((t.c.aggregate_id == "") | ~waiting)
            .order_by(t.c.id)
            .limit(batch)
            .with_for_update(of=t, skip_locked=True)
        )
        ids: Any = bindparam("ids", expanding=True)
        self.remove = delete(t).where(t.c.id.in_(ids))
        self.failed = (
            update(t)
            .where(t.c.id == bindparam("row_id"))
            .values(
                attempts=t.c.attempts + bindparam("counted", type_=Integer),
                last_error=bindparam("error", type_=Text),
                next_attempt_at=func.now() + bindparam("delay", type_=Interval),
            )
        )
        dead = outbox.dead_letter
        moved = [c.name for c in dead.c if c.name != "dead_at"]
        self.bury = insert(dead).from_select(
            moved, select(*(t.c[name] for name in moved)).where(t.c.id.in_(ids))
        )

    async def once(self) -> int:
        """Claim a batch, publish it, record the outcome of every row; returns rows claimed."""
        if not self.bus.nc.is_connected:
            return 0
        async with self.db.transaction() as conn:
            rows = (await conn.execute(self.claim)).all()
            if not rows:
                return 0
            outcomes = await self._publish(rows)
            await self._record(conn, rows, outcomes)
        return len(rows)

    async def _publish(self, rows: Sequence[Row[Any]]) -> dict[int, BaseException | None]:
        """Publish rows of one aggregate in order, stopping at its first failure (the rest
        wait: a consumer should not get seq 6 long before seq 5); aggregates in parallel."""
        groups: dict[str, list[Row[Any]]] = {}
        for row in rows:
            groups.setdefault(row.aggregate_id or f"#{row.id}", []).append(row)
        outcomes: dict[int, BaseException | None] = {}

        async def publish_group(group: list[Row[Any]]) -> None:
            for row in group:
                headers = {"Nats-Msg-Id": str(row.event_id)}
                if row.aggregate_id:
                    headers[AGGREGATE_ID_HEADER] = row.aggregate_id
                    headers[AGGREGATE_SEQ_HEADER] = str(row.aggregate_seq)
                try:
                    with tracing.publish_span(row.subject, row.traceparent, headers):
                        await self.bus.js.publish(row.subject, row.payload, headers=headers)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outcomes[row.id] = exc
                    return
                outcomes[row.id] = None

        await asyncio.gather(*(publish_group(g) for g in groups.values()))
        return outcomes

    async def _record(
        self,
        conn: AsyncConnection,
        rows: Sequence[Row[Any]],
        outcomes: dict[int, BaseException | None],
    ) -> None:
        done = [row for row in rows if row.id in outcomes and outcomes[row.id] is None]
        failures = []
        to_bury = []
        for row in rows:
            exc = outcomes.get(row.id)
            if exc is None:
                continue
            counted = 0 if isinstance(exc, _TRANSIENT) else 1
            attempts = row.attempts + counted
            kind = "transient" if counted == 0 else "row"
            metrics.OUTBOX_PUBLISH_FAILURES.labels(kind).inc()
            delay = min(self.retry_max, self.retry_base * 2 ** max(0, attempts - 1))
            failures.append(
                {
                    "row_id": row.id,
                    "counted": counted,
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "delay": timedelta(seconds=delay),
                }
            )
            if attempts >= self.max_attempts:
                to_bury.append((row, exc, attempts))
            elif counted:
                log.warning(
                    "outbox event failed to publish (attempt %d of %d); retrying in %.1f s",
                    attempts,
                    self.max_attempts,
                    delay,
                    extra={"event_id": str(row.event_id), "subject": row.subject},
                )
        if failures:
            await conn.execute(self.failed, failures)
        if to_bury:
            ids = [row.id for row, _, _ in to_bury]
            await conn.execute(self.bury, {"ids": ids})
            await conn.execute(self.remove, {"ids": ids})
            for row, exc, attempts in to_bury:
                metrics.OUTBOX_DEAD_LETTERED.inc()
                log.error(
                    "outbox event parked in the dead-letter table after %d attempts",
                    attempts,
                    extra={
                        "event_id": str(row.event_id),
                        "subject": row.subject,
                        "aggregate_id": row.aggregate_id,
                        "aggregate_seq": row.aggregate_seq,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
        if done:
            await conn.execute(self.remove, {"ids": [row.id for row in done]})
            now = time.time()
            for row in done:
                metrics.OUTBOX_LAG.observe(max(0.0, now - row.created_at.timestamp()))
            metrics.OUTBOX_PUBLISHED.inc(len(done))
