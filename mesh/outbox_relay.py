"""The outbox relay's pass (mesh.outbox): claim a batch of rows, publish them to JetStream,
delete what was acknowledged, count an attempt and a back-off on what failed, and park a row
in the dead-letter table after its last attempt.

The statements are built with SQLAlchemy once and run as SQL on psycopg's own connection
(Database.transaction_driver): a relay passes many times a second under load, and
SQLAlchemy's execution of each statement (compiled-cache lookup, result wrapping, the greenlet
bridge) was a share of it; in an exam rush the greenlet bridge fell from 3.1 to 1.5 % of the
quiz process's samples.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import nats.errors
import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    Interval,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.sql import ClauseElement

from mesh import metrics, tracing
from mesh.bus import Bus
from mesh.db import Database

log = logging.getLogger("mesh.outbox")

AGGREGATE_ID_HEADER = "Elearn-Aggregate-Id"
AGGREGATE_SEQ_HEADER = "Elearn-Aggregate-Seq"
# How long JetStream may take to acknowledge a batch of publishes (the bus's request timeout).
ACK_TIMEOUT_SECONDS = 5.0
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


# A claimed row: psycopg's namedtuple of the outbox table's columns.
OutboxRow = Any


class _Compiled:
    """A statement as psycopg SQL (%(name)s placeholders, with the casts SQLAlchemy renders)
    and the parameters fixed when it was built (a LIMIT, a literal)."""

    def __init__(self, statement: ClauseElement, db: Database) -> None:
        compiled = statement.compile(dialect=db.engine.dialect)
        self.sql = str(compiled)
        self.fixed = {k: v for k, v in compiled.params.items() if v is not None}

    def params(self, **given: Any) -> dict[str, Any]:
        return {**self.fixed, **given}


def _headers(row: OutboxRow) -> dict[str, str]:
    headers = {"Nats-Msg-Id": str(row.event_id)}
    if row.aggregate_id:
        headers[AGGREGATE_ID_HEADER] = row.aggregate_id
        headers[AGGREGATE_SEQ_HEADER] = str(row.aggregate_seq)
    return headers


class Relay:
    """One relay's statements and its publish-and-account pass."""

    def __init__(
        self,
        table: Table,
        dead_letter: Table,
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
        t = table
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
        claim = (
            select(t)
            .where(t.c.next_attempt_at <= func.now())
            .where((t.c.aggregate_id == "") | ~waiting)
            .order_by(t.c.id)
            .limit(batch)
            .with_for_update(of=t, skip_locked=True)
        )
        # One array parameter, not an expanding IN: SQLAlchemy re-renders an IN list (a bind
        # and cast per id) on every execution, a few % of a busy relay's CPU, and each list
        # length would be a statement of its own for psycopg's prepared-statement cache.
        ids: Any = bindparam("ids", type_=ARRAY(BigInteger))
        remove = delete(t).where(t.c.id == any_(ids))
        failed = (
            update(t)
            .where(t.c.id == bindparam("row_id"))
            .values(
                attempts=t.c.attempts + bindparam("counted", type_=Integer),
                last_error=bindparam("error", type_=Text),
                next_attempt_at=func.now() + bindparam("delay", type_=Interval),
            )
        )
        dead = dead_letter
        moved = [c.name for c in dead.c if c.name != "dead_at"]
        bury = insert(dead).from_select(
            moved, select(*(t.c[name] for name in moved)).where(t.c.id == any_(ids))
        )
        self.claim, self.remove = _Compiled(claim, db), _Compiled(remove, db)
        self.failed, self.bury = _Compiled(failed, db), _Compiled(bury, db)

    async def once(self) -> int:
        """Claim a batch, publish it, record the outcome of every row; returns rows claimed."""
        if not self.bus.nc.is_connected:
            return 0
        async with self.db.transaction_driver("outbox relay") as conn:
            claimed = conn.cursor(row_factory=namedtuple_row)
            await claimed.execute(self.claim.sql, self.claim.params(), prepare=True)
            rows = await claimed.fetchall()
            if not rows:
                return 0
            outcomes = await self._publish(rows)
            await self._record(conn, rows, outcomes)
        return len(rows)

    async def _publish(self, rows: Sequence[OutboxRow]) -> dict[int, BaseException | None]:
        """Publish rows of one aggregate in order, stopping at its first failure (the rest
        wait: a consumer should not get seq 6 long before seq 5); aggregates in parallel.
        Rows of no aggregate go out together, their acks awaited at once."""
        groups: dict[str, list[OutboxRow]] = {}
        loose: list[OutboxRow] = []
        for row in rows:
            if row.aggregate_id:
                groups.setdefault(row.aggregate_id, []).append(row)
            else:
                loose.append(row)
        outcomes: dict[int, BaseException | None] = {}

        async def publish_group(group: list[OutboxRow]) -> None:
            for row in group:
                headers = _headers(row)
                try:
                    with tracing.publish_span(row.subject, row.traceparent, headers):
                        await self.bus.js.publish(row.subject, row.payload, headers=headers)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outcomes[row.id] = exc
                    return
                outcomes[row.id] = None

        await asyncio.gather(
            self._publish_loose(loose, outcomes), *(publish_group(g) for g in groups.values())
        )
        return outcomes

    async def _publish_loose(
        self, rows: list[OutboxRow], outcomes: dict[int, BaseException | None]
    ) -> None:
        """Send every row, then await the acks together: one wait for the batch instead of a
        request (a future, a timer, a task) per row, which was most of a busy relay's CPU."""
        sent: dict[asyncio.Future[Any], int] = {}
        for row in rows:
            headers = _headers(row)
            try:
                with tracing.publish_span(row.subject, row.traceparent, headers):
                    ack = await self.bus.js.publish_async(row.subject, row.payload, headers=headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcomes[row.id] = exc
                continue
            sent[ack] = row.id
        if not sent:
            return
        done, late = await asyncio.wait(sent, timeout=ACK_TIMEOUT_SECONDS)
        for ack in late:
            ack.cancel()
            outcomes[sent[ack]] = nats.errors.TimeoutError()
        for ack in done:
            outcomes[sent[ack]] = ack.exception()

    async def _record(
        self,
        conn: psycopg.AsyncConnection[Any],
        rows: Sequence[OutboxRow],
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
            await conn.cursor().executemany(
                self.failed.sql, [self.failed.params(**f) for f in failures]
            )
        if to_bury:
            ids = [row.id for row, _, _ in to_bury]
            await conn.execute(self.bury.sql, self.bury.params(ids=ids))
            await conn.execute(self.remove.sql, self.remove.params(ids=ids))
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
            ids = [row.id for row in done]
            await conn.execute(self.remove.sql, self.remove.params(ids=ids), prepare=True)
            now = time.time()
            for row in done:
                metrics.OUTBOX_LAG.observe(max(0.0, now - row.created_at.timestamp()))
            metrics.OUTBOX_PUBLISHED.inc(len(done))
