"""CheckEnrollment's cache (M1): hits are counted and exported, and the event consumer drops a
stale cached status that a direct invalidation missed (the race between a concurrent miss and
the unenroll's commit), so the next check within a second sees the truth; concurrent misses of
many students share their reads."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import nats
import psycopg
import redis.asyncio as redis

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.events.v1 import course_events_pb2 as events
from tests.people import People
from tests.svc_course.conftest import new_course


def cache_hits(text: str, kind: str) -> float:
    prefix = f'cache_requests_total{{kind="{kind}",outcome="hit"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_enrollment_checks_are_cache_hits_and_exported(
    stack: Endpoints, courses: CourseServiceStub, people: People
) -> None:
    course = await new_course(courses, people.instructor(), publish=True)
    student = people.student()
    request = pb.CheckEnrollmentRequest(course_id=course.course_id, user_id=student.user_id)
    metrics_url = f"http://{stack.metrics['course'][0]}/metrics"
    async with httpx.AsyncClient(timeout=5) as http:
        await courses.CheckEnrollment(request, metadata=student.auth)
        before = cache_hits((await http.get(metrics_url)).text, "enrollment")
        for _ in range(5):
            await courses.CheckEnrollment(request, metadata=student.auth)
        after = cache_hits((await http.get(metrics_url)).text, "enrollment")
    assert after - before >= 5


async def test_an_event_clears_a_stale_cached_enrollment(
    stack: Endpoints, courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True)
    # A student who never enrolled, so no event of the service's own is in flight for the pair;
    # the cached "active" status is what a check that read just before an unenroll's commit
    # would have stored after it.
    student = people.student()
    stale = pb.Enrollment(
        enrollment_id=str(uuid.uuid4()),
        course_id=course.course_id,
        user_id=student.user_id,
        state=pb.ENROLLMENT_STATE_ACTIVE,
    )
    cache = redis.from_url(stack.cache_url)
    try:
        key = f"enrollment:{course.course_id}:{student.user_id}"
        await cache.set(key, stale.SerializeToString(), ex=300)
        request = pb.CheckEnrollmentRequest(course_id=course.course_id, user_id=student.user_id)
        assert (await courses.CheckEnrollment(request, metadata=student.auth)).enrolled
        nc = await nats.connect(stack.nats_url)
        try:
            event_id = str(uuid.uuid4())
            event = events.Unenrolled(
                event_id=event_id,
                course_id=course.course_id,
                instructor_id=teacher.user_id,
                user_id=student.user_id,
            )
            await nc.jetstream().publish(
                "elearn.course.unenrolled",
                event.SerializeToString(),
                headers={"Nats-Msg-Id": event_id},
            )
        finally:
            await nc.close()
        deadline = time.monotonic() + 1.0
        while (await courses.CheckEnrollment(request, metadata=student.auth)).enrolled:
            assert time.monotonic() < deadline, "the event did not clear the stale status in 1 s"
            await asyncio.sleep(0.02)
    finally:
        await cache.aclose()


def _enrollment_reads(sql: psycopg.Connection) -> int:
    """Statements run so far by the batched enrollment read (svc_course.repository)."""
    row = sql.execute(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE query LIKE '%%unnest%%' AND query LIKE '%%AS wanted%%'"
    ).fetchone()
    return int(row[0]) if row else 0


async def test_concurrent_misses_of_many_students_share_reads_and_get_their_own_answers(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True)
    students = [people.student() for _ in range(60)]
    enrolled = students[::2]
    await asyncio.gather(
        *(
            courses.Enroll(pb.EnrollRequest(course_id=course.course_id), metadata=s.auth)
            for s in enrolled
        )
    )
    before = _enrollment_reads(sql)
    # An exam's start: every student's first check at once, none of them cached yet (the
    # students who never enrolled have no entry; the others' were dropped at enrollment).
    replies = await asyncio.gather(
        *(
            courses.CheckEnrollment(
                pb.CheckEnrollmentRequest(course_id=course.course_id, user_id=s.user_id),
                metadata=s.auth,
            )
            for s in students
        )
    )
    reads = _enrollment_reads(sql) - before
    assert [r.enrolled for r in replies] == [s in enrolled for s in students]
    mine = [r.enrollment.user_id for r, s in zip(replies, students, strict=True) if s in enrolled]
    assert mine == [s.user_id for s in enrolled]
    # One read each would be 60.
    assert 1 <= reads <= 20, reads
