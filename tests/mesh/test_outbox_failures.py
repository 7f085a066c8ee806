"""The outbox relay's failure paths against real Postgres and NATS JetStream (issue 10,
item 10): a poison row is parked in the dead-letter table after N attempts while the rows
around it are published, and events carry contiguous per-aggregate sequence numbers; rows of
no aggregate go out together, and a commit notified during a pass is not left waiting."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import nats
import psycopg
import pytest_asyncio
from google.protobuf.wrappers_pb2 import BytesValue, StringValue
from sqlalchemy import MetaData, create_engine, text

from devstack.stack import Endpoints
from mesh.bus import Bus, connect_bus
from mesh.config import MeshSettings
from mesh.db import Database
from mesh.outbox import (
    AGGREGATE_ID_HEADER,
    AGGREGATE_SEQ_HEADER,
    BatchEvent,
    Outbox,
    outbox_table,
)


@dataclass
class Rig:
    schema: str
    db: Database
    bus: Bus
    outbox: Outbox
    sql: psycopg.Connection
    topic: str  # a subject prefix inside the event stream, private to the test

    def count(self, table: str) -> int:
        row = self.sql.execute(f'SELECT count(*) FROM "{self.schema}".{table}').fetchone()
        assert row is not None
        return int(row[0])


@pytest_asyncio.fixture
async def rig(stack: Endpoints, sql: psycopg.Connection) -> AsyncIterator[Rig]:
    schema = f"outbox_{uuid.uuid4().hex[:10]}"
    metadata = MetaData(schema=schema)
    table = outbox_table(metadata)
    engine = create_engine(stack.database_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        metadata.create_all(conn)
    settings = MeshSettings(database_url=stack.database_url, nats_url=stack.nats_url)
    try:
        async with Database.open(settings, schema) as db, connect_bus(settings) as bus:
            yield Rig(schema, db, bus, Outbox(table), sql, f"elearn.relaytest.{schema}")
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextlib.asynccontextmanager
async def relaying(rig: Rig, **options: float) -> AsyncIterator[None]:
    task = asyncio.create_task(
        rig.outbox.relay(rig.db, rig.bus, **{"idle_poll_seconds": 0.05, **options})  # type: ignore[arg-type]
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)  # polling a condition under a deadline
    assert condition(), "condition not reached in time"


async def add(rig: Rig, subject: str, payload: bytes | str, aggregate_id: str = "") -> str:
    event_id = str(uuid.uuid4())
    event = BytesValue(value=payload) if isinstance(payload, bytes) else StringValue(value=payload)
    async with rig.db.transaction() as conn:
        await rig.outbox.add(conn, subject, event_id, event, aggregate_id=aggregate_id)
    return event_id


async def received(nats_url: str, subjects: str, count: int) -> list[nats.aio.msg.Msg]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(subjects, ordered_consumer=True)
        msgs = []
        deadline = time.monotonic() + 15
        while len(msgs) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                msgs.append(await sub.next_msg(timeout=max(0.1, deadline - time.monotonic())))
        return msgs
    finally:
        await nc.close()


async def test_poison_rows_are_dead_lettered_while_the_rest_flows(
    rig: Rig, stack: Endpoints
) -> None:
    before = await add(rig, f"{rig.topic}.ok", "before")
    # No stream listens outside elearn.>: JetStream answers "no responders" every time.
    unroutable = await add(rig, f"nowhere.{rig.schema}", "lost")
    # Larger than the server's max_payload (1 MiB): the client refuses it every time.
    oversized = await add(rig, f"{rig.topic}.big", b"x" * (2 * 1024 * 1024))
    after = await add(rig, f"{rig.topic}.ok", "after")
    async with relaying(rig, max_attempts=3, retry_base_seconds=0.01):
        await wait_for(lambda: rig.count("outbox") == 0)
    dead = rig.sql.execute(
        f'SELECT event_id::text, attempts, last_error FROM "{rig.schema}".outbox_dead_letter'
        " ORDER BY id"
    ).fetchall()
    assert [(d[0], d[1]) for d in dead] == [(unroutable, 3), (oversized, 3)]
    assert "no response from stream" in dead[0][2]
    assert "MaxPayload" in dead[1][2]
    msgs = await received(stack.nats_url, f"{rig.topic}.ok", 2)
    assert [m.headers["Nats-Msg-Id"] for m in msgs if m.headers] == [before, after]


async def test_events_of_one_aggregate_carry_contiguous_sequence_numbers(
    rig: Rig, stack: Endpoints
) -> None:
    course, other = f"course-{uuid.uuid4().hex[:6]}", f"course-{uuid.uuid4().hex[:6]}"

    async def write(n: int) -> None:
        event_id = str(uuid.uuid4())
        async with rig.db.transaction() as conn:
            await rig.outbox.add(conn, f"{rig.topic}.seq", event_id, StringValue(value=str(n)),
                                 aggregate_id=course if n % 3 else other)  # fmt: skip
            if n % 5 == 0:
                raise LookupError("rolled back: its number goes back too")

    results = await asyncio.gather(*(write(n) for n in range(1, 41)), return_exceptions=True)
    assert sum(isinstance(r, LookupError) for r in results) == 8
    seqs = rig.sql.execute(
        f'SELECT aggregate_id, aggregate_seq FROM "{rig.schema}".outbox ORDER BY aggregate_seq'
    ).fetchall()
    per_course = [s for a, s in seqs if a == course]
    per_other = [s for a, s in seqs if a == other]
    assert per_course == list(range(1, len(per_course) + 1))
    assert per_other == list(range(1, len(per_other) + 1))
    assert len(per_course) + len(per_other) == 32

    async with relaying(rig):
        await wait_for(lambda: rig.count("outbox") == 0)
    msgs = await received(stack.nats_url, f"{rig.topic}.seq", 32)
    headers = [m.headers or {} for m in msgs]
    got = sorted(int(h[AGGREGATE_SEQ_HEADER]) for h in headers if h[AGGREGATE_ID_HEADER] == course)
    assert got == per_course


async def test_a_failing_row_holds_back_later_events_of_its_aggregate(rig: Rig) -> None:
    course = f"course-{uuid.uuid4().hex[:6]}"
    await add(rig, f"nowhere.{rig.schema}", "first", aggregate_id=course)
    await add(rig, f"{rig.topic}.held", "second", aggregate_id=course)
    free = await add(rig, f"{rig.topic}.free", "unrelated")
    # Back-off long enough that the first row is still waiting when we look.
    async with relaying(rig, max_attempts=5, retry_base_seconds=30):
        await wait_for(lambda: rig.count("outbox") == 2)
        attempts = rig.sql.execute(
            f'SELECT aggregate_seq, attempts FROM "{rig.schema}".outbox ORDER BY id'
        ).fetchall()
    assert [tuple(a) for a in attempts] == [(1, 1), (2, 0)], "seq 2 waits behind seq 1"
    assert free not in {
        r[0]
        for r in rig.sql.execute(f'SELECT event_id::text FROM "{rig.schema}".outbox').fetchall()
    }


async def test_a_batch_of_rows_without_aggregate_is_published_and_deleted(
    rig: Rig, stack: Endpoints
) -> None:
    subject = f"{rig.topic}.many"
    payloads = [StringValue(value=str(n)).SerializeToString() for n in range(150)]
    events = [BatchEvent(str(uuid.uuid4()), subject, p, None) for p in payloads]
    async with rig.db.transaction() as conn:
        await rig.outbox.add_many(conn, events)
    rig.outbox.notify()
    async with relaying(rig, idle_poll_seconds=60):
        await wait_for(lambda: rig.count("outbox") == 0)
    msgs = await received(stack.nats_url, f"{rig.topic}.many", len(events))
    assert sorted(m.headers["Nats-Msg-Id"] for m in msgs if m.headers) == sorted(
        e.event_id for e in events
    )


async def test_commits_notified_during_a_pass_are_relayed_without_the_idle_poll(
    rig: Rig,
) -> None:
    # The idle poll is far beyond the deadline: every row must go out on a notification,
    # including those committed while a pass (and its linger) was under way.
    async with relaying(rig, idle_poll_seconds=120, linger_seconds=0.005):
        for n in range(40):
            await add(rig, f"{rig.topic}.nudge", str(n))
            rig.outbox.notify()
        await wait_for(lambda: rig.count("outbox") == 0, seconds=20)


def test_user_schema_has_the_outbox_columns_and_dead_letter_table(sql: psycopg.Connection) -> None:
    columns = {
        r[0]
        for r in sql.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'users' AND table_name = 'outbox'"
        ).fetchall()
    }
    assert {"aggregate_id", "aggregate_seq", "attempts", "last_error", "next_attempt_at"} <= columns
    tables = {
        r[0]
        for r in sql.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'users'"
        ).fetchall()
    }
    assert {"outbox_dead_letter", "outbox_sequence"} <= tables
