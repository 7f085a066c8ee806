"""The flusher against the real Postgres and state Valkey, in-process so statements can be
counted and two flushers raced. The samples live on a Valkey database index of their own, so
the stack's progress-flusher worker (index 0) never claims them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import psycopg
import pytest_asyncio
import redis.asyncio as redis
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import event

from devstack.stack import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.events.v1 import course_events_pb2
from mesh.context import Caller, current_caller
from mesh.db import Database
from mesh.outbox import Outbox
from svc_course.models import SCHEMA, outbox
from svc_course.progress import Progress
from svc_course.progress_flusher import ProgressFlusher, now_ms
from svc_course.progress_state import ProgressState
from svc_course.progress_worker import flusher_for
from svc_course.settings import ProgressFlusherSettings
from tests.people import People
from tests.svc_course.progress_support import enroll, make_course, progress_rows


@dataclass
class Rig:
    settings: ProgressFlusherSettings
    db: Database
    valkey: redis.Redis
    statements: list[str]

    def progress(self) -> Progress:
        return Progress(db=self.db, state=self.valkey, settings=self.settings)

    def flusher(self, **overrides: object) -> ProgressFlusher:
        settings = self.settings.model_copy(update=overrides)
        return flusher_for(self.db, ProgressState(self.valkey), Outbox(outbox), settings)


@pytest_asyncio.fixture(loop_scope="session")
async def rig(stack: Endpoints) -> AsyncIterator[Rig]:
    settings = ProgressFlusherSettings(
        database_url=stack.database_url,
        state_url=stack.state_url.rsplit("/", 1)[0] + "/8",
        # Long enough that only the test's explicit flushes run.
        flush_interval_seconds=3600.0,
    )
    valkey = redis.Redis.from_url(settings.state_url)
    await valkey.flushdb()
    statements: list[str] = []
    async with Database.open(settings, SCHEMA) as db:

        @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
        def _count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            statements.append(statement)

        try:
            yield Rig(settings, db, valkey, statements)
        finally:
            await valkey.flushdb()
            await valkey.aclose()


def seconds(s: float) -> Duration:
    return Duration(seconds=int(s), nanos=int((s % 1) * 1e9))


async def update(progress: Progress, user: str, video: str, position: float, watched: float):  # type: ignore[no-untyped-def]
    token = current_caller.set(Caller(user, frozenset({"student"}), "", time.time() + 60))
    try:
        return await progress.update(
            pb.UpdateVideoProgressRequest(
                video_id=video, position=seconds(position), watched=seconds(watched)
            )
        )
    finally:
        current_caller.reset(token)


def upserts(statements: list[str]) -> int:
    return sum("INSERT INTO video_progress" in s for s in statements)


async def test_a_flush_is_one_upsert_per_batch_not_one_per_sample(
    rig: Rig, sql: psycopg.Connection, courses: CourseServiceStub, people: People
) -> None:
    course = await make_course(courses, people, [600, 600, 600])
    students = [people.student() for _ in range(40)]
    await enroll(courses, students, course.course_id)
    users = [s.user_id for s in students]
    progress = rig.progress()
    for user in users:
        for i, video in enumerate(course.video_ids):
            await update(progress, user, video, position=10 + i, watched=20 + i)
    rig.statements.clear()
    written = await rig.flusher(flush_batch=50).flush()
    assert written == 120
    # 120 samples in batches of 50: three batches, each one upsert, one enrollment update and
    # one outbox row (VideoProgressFlushed), whatever the number of samples in it.
    assert upserts(rig.statements) == 3
    assert len(rig.statements) == 9, rig.statements
    rows = progress_rows(sql, course.video_ids)
    assert len(rows) == 120
    assert rows[(users[7], course.video_ids[2])] == (12_000, 22_000, 12_000, False)


async def test_two_flushers_never_write_a_sample_twice_nor_lose_one(
    rig: Rig, sql: psycopg.Connection, courses: CourseServiceStub, people: People
) -> None:
    course = await make_course(courses, people, [600, 600])
    students = [people.student() for _ in range(60)]
    await enroll(courses, students, course.course_id)
    users = [s.user_id for s in students]
    writer = rig.progress()
    pairs = [(u, v) for u in users for v in course.video_ids]
    for user, video in pairs:
        await update(writer, user, video, position=5, watched=5)
    a, b = (
        rig.flusher(flush_batch=7),
        rig.flusher(flush_batch=11),
    )
    rig.statements.clear()
    counts = await asyncio.gather(a.flush(), b.flush())
    # Every pending sample was written by exactly one of the two.
    assert sum(counts) == len(pairs)
    assert len(progress_rows(sql, course.video_ids)) == len(pairs)

    # Now with samples arriving while both flush: the last value of each pair must land.
    async def keep_writing() -> None:
        for step in range(1, 6):
            for user, video in pairs:
                await update(writer, user, video, position=5 + step * 10, watched=5 + step * 10)

    async def keep_flushing(flusher: ProgressFlusher, done: asyncio.Event) -> None:
        while not done.is_set():
            await flusher.flush()
            await asyncio.sleep(0)

    done = asyncio.Event()
    flushing = [asyncio.create_task(keep_flushing(f, done)) for f in (a, b)]
    await keep_writing()
    done.set()
    await asyncio.gather(*flushing)
    await asyncio.gather(a.flush(), b.flush())
    rows = progress_rows(sql, course.video_ids)
    assert {rows[p] for p in pairs} == {(55_000, 55_000, 55_000, False)}


async def test_a_draining_flusher_writes_the_pending_samples(
    rig: Rig, sql: psycopg.Connection, courses: CourseServiceStub, people: People
) -> None:
    course = await make_course(courses, people, [300])
    student = people.student()
    await enroll(courses, [student], course.course_id)
    user = student.user_id
    progress = rig.progress()
    await update(progress, user, course.video_ids[0], position=100, watched=120)
    assert progress_rows(sql, course.video_ids) == {}
    await rig.flusher().drain(10.0)
    assert progress_rows(sql, course.video_ids) == {
        (user, course.video_ids[0]): (100_000, 120_000, 100_000, False)
    }


async def test_completion_sets_percent_emits_course_completed_once_and_never_reverts(
    rig: Rig,
    sql: psycopg.Connection,
    stack: Endpoints,
    courses: CourseServiceStub,
    people: People,
) -> None:
    course = await make_course(courses, people, [100, 200])
    student = people.student()
    await enroll(courses, [student], course.course_id)
    user = student.user_id
    progress, flusher = rig.progress(), rig.flusher()
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("elearn.course.course_completed", ordered_consumer=True)
        first = await update(progress, user, course.video_ids[0], position=95, watched=90)
        assert first.progress.completed
        await flusher.flush()
        assert enrollment(sql, user, course.course_id) == ("active", 50.0, False)
        await update(progress, user, course.video_ids[1], position=200, watched=180)
        await flusher.flush()
        assert enrollment(sql, user, course.course_id) == ("completed", 100.0, True)
        # Watching again with less watched time changes nothing about completion.
        again = await update(progress, user, course.video_ids[1], position=10, watched=10)
        assert again.progress.completed and again.progress.watched.seconds == 180
        await flusher.flush()
        assert enrollment(sql, user, course.course_id) == ("completed", 100.0, True)
        events = await completed_events(sub, course.course_id, expect=1)
    finally:
        await nc.close()
    assert len(events) == 1
    assert events[0].user_id == user and events[0].instructor_id == course.instructor.user_id


def enrollment(sql: psycopg.Connection, user: str, course: str) -> tuple[str, float, bool]:
    row = sql.execute(
        "SELECT state, progress_percent, completed_at IS NOT NULL FROM courses.enrollments"
        " WHERE user_id = %s AND course_id = %s",
        (user, course),
    ).fetchone()
    assert row is not None
    return (row[0], round(float(row[1]), 3), row[2])


async def completed_events(
    sub, course_id: str, expect: int
) -> list[course_events_pb2.CourseCompleted]:  # type: ignore[no-untyped-def]
    """CourseCompleted events for the course: waits for `expect`, then a little for extras."""
    found: list[course_events_pb2.CourseCompleted] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        wait = 1.0 if len(found) >= expect else max(0.1, deadline - time.monotonic())
        try:
            msg = await sub.next_msg(timeout=wait)
        except (TimeoutError, nats.errors.TimeoutError):
            if len(found) >= expect:
                break
            continue
        evt = course_events_pb2.CourseCompleted.FromString(msg.data)
        if evt.course_id == course_id:
            found.append(evt)
    return found


async def test_history_flushed_and_expired_from_valkey_is_seeded_back_from_postgres(
    rig: Rig, sql: psycopg.Connection, courses: CourseServiceStub, people: People
) -> None:
    course = await make_course(courses, people, [600, 600])
    student = people.student()
    await enroll(courses, [student], course.course_id)
    progress = rig.progress()
    first, second = course.video_ids
    await update(progress, student.user_id, first, position=300, watched=400)
    await rig.flusher().flush()
    # What the keep TTL does after a day: the Valkey copy and the seeded mark are gone.
    await rig.valkey.delete(
        f"vp:{student.user_id}:{first}", f"vp:seeded:{student.user_id}:{course.course_id}"
    )
    rig.statements.clear()
    later = await update(progress, student.user_id, first, position=10, watched=20)
    assert later.progress.watched.seconds == 400, "the flushed history must not be forgotten"
    assert later.progress.furthest.seconds == 300 and later.progress.position.seconds == 10
    # One query seeded the whole course: the next video's first sample needs none.
    await update(progress, student.user_id, second, position=5, watched=5)
    assert sum("FROM video_progress" in s for s in rig.statements) == 1


async def test_samples_claimed_by_a_flusher_that_died_are_written_by_another(
    rig: Rig, sql: psycopg.Connection, courses: CourseServiceStub, people: People
) -> None:
    course = await make_course(courses, people, [600])
    students = [people.student() for _ in range(5)]
    await enroll(courses, students, course.course_id)
    progress = rig.progress()
    video = course.video_ids[0]
    for s in students:
        await update(progress, s.user_id, video, position=42, watched=42)
    # A replica claims the samples and is killed before its transaction commits; its lease is
    # taken as already expired, so the test need not wait the minute a real one lasts.
    dead = await ProgressState(rig.valkey).claim(now_ms=now_ms(), lease_ms=-1000, limit=100)
    assert len(dead.samples) == 5
    assert progress_rows(sql, [video]) == {}
    assert await rig.flusher().flush() == 5
    rows = progress_rows(sql, [video])
    assert {rows[(s.user_id, video)] for s in students} == {(42_000, 42_000, 42_000, False)}
