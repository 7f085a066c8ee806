"""Video progress through the running svc_course (native gRPC) and through Envoy (JSON)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import psycopg
import pytest_asyncio
import redis.asyncio as redis
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from devstack.stack import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from svc_course.progress_state import DIRTY, PREFIX, member
from tests.grpc_assert import fails_with, violated_fields
from tests.people import People, Person
from tests.svc_course.progress_support import (
    CourseRows,
    enroll,
    eventually,
    make_course,
    progress_rows,
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def state(stack: Endpoints) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(stack.state_url)
    try:
        yield client
    finally:
        await client.aclose()


def seconds(s: float) -> Duration:
    return Duration(seconds=int(s), nanos=round((s % 1) * 1e9))


def sample(
    video: str, position: float, watched: float, at: float | None = None
) -> pb.UpdateVideoProgressRequest:
    request = pb.UpdateVideoProgressRequest(
        video_id=video, position=seconds(position), watched=seconds(watched)
    )
    if at is not None:
        request.client_time.CopyFrom(Timestamp(seconds=int(at), nanos=int((at % 1) * 1e9)))
    return request


async def student_in(
    courses: CourseServiceStub, people: People, durations: list[int]
) -> tuple[Person, CourseRows]:
    student = people.student()
    course = await make_course(courses, people, durations)
    await enroll(courses, [student], course.course_id)
    return student, course


async def test_watched_never_decreases_and_position_follows_the_newest_sample(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    me, course = await student_in(courses, people, [600])
    video = course.video_ids[0]
    now = time.time()
    await courses.UpdateVideoProgress(sample(video, 300, 300, now - 30), metadata=me.auth)
    late = await courses.UpdateVideoProgress(sample(video, 100, 100, now - 60), metadata=me.auth)
    assert late.progress.position.seconds == 300, "an older sample must not move position"
    assert late.progress.watched.seconds == 300
    back = await courses.UpdateVideoProgress(sample(video, 60, 200, now - 1), metadata=me.auth)
    assert back.progress.position.seconds == 60, "a newer seek back moves position"
    assert back.progress.watched.seconds == 300, "watched never decreases"
    assert back.progress.furthest.seconds == 300
    assert back.progress.duration.seconds == 600


async def test_a_client_clock_in_the_future_does_not_freeze_position(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    me, course = await student_in(courses, people, [600])
    video = course.video_ids[0]
    ahead = await courses.UpdateVideoProgress(
        sample(video, 50, 50, time.time() + 86_400), metadata=me.auth
    )
    assert ahead.progress.update_time.ToSeconds() <= time.time() + 1, "clamped to server time"
    later = await courses.UpdateVideoProgress(sample(video, 80, 80), metadata=me.auth)
    assert later.progress.position.seconds == 80


async def test_reads_return_the_newest_sample_before_it_is_flushed_and_after(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    me, course = await student_in(courses, people, [100, 100, 100, 100])
    first, second = course.video_ids[:2]
    await courses.UpdateVideoProgress(sample(first, 95, 95), metadata=me.auth)
    await courses.UpdateVideoProgress(sample(second, 12.5, 12.5), metadata=me.auth)
    got = await courses.GetVideoProgress(
        pb.GetVideoProgressRequest(video_id=second), metadata=me.auth
    )
    assert got.progress.position == seconds(12.5) and not got.progress.completed
    listed = await courses.ListVideoProgress(
        pb.ListVideoProgressRequest(course_id=course.course_id, page_size=1), metadata=me.auth
    )
    assert [p.video_id for p in listed.progress] == [first] and listed.progress[0].completed
    assert listed.course_progress_percent == 25.0
    rest = await courses.ListVideoProgress(
        pb.ListVideoProgressRequest(course_id=course.course_id, page_token=listed.next_page_token),
        metadata=me.auth,
    )
    assert [p.video_id for p in rest.progress] == [second] and not rest.next_page_token
    # The stack's progress-flusher worker (every 5 s) writes them to Postgres.
    rows = await eventually(
        lambda: (r := progress_rows(sql, [first, second])) and len(r) == 2 and r,
        30,
        "the progress-flusher worker to write both samples",
    )
    assert rows[(me.user_id, first)] == (95_000, 95_000, 95_000, True)
    unplayed = await courses.GetVideoProgress(
        pb.GetVideoProgressRequest(video_id=course.video_ids[3]), metadata=me.auth
    )
    assert unplayed.progress.watched.seconds == 0 and unplayed.progress.duration.seconds == 100


async def test_bad_samples_are_invalid_argument_and_write_nothing(
    courses: CourseServiceStub, people: People, state: redis.Redis
) -> None:
    me, course = await student_in(courses, people, [60])
    video = course.video_ids[0]
    beyond = await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.UpdateVideoProgress(sample(video, 61, 10), metadata=me.auth),
        "exceed the duration",
    )
    assert violated_fields(beyond) == ["position"]
    negative = pb.UpdateVideoProgressRequest(video_id=video, position=Duration(seconds=-1))
    error = await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT, courses.UpdateVideoProgress(negative, metadata=me.auth)
    )
    assert violated_fields(error) == ["position"]
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.UpdateVideoProgress(sample("not-a-uuid", 1, 1), metadata=me.auth),
        "video_id must be a UUID",
    )
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.UpdateVideoProgress(sample(str(uuid.uuid4()), 1, 1), metadata=me.auth),
    )
    assert await state.exists(PREFIX + member(me.user_id, video)) == 0


async def test_progress_on_a_course_not_enrolled_in_is_refused_and_not_written(
    courses: CourseServiceStub, people: People, state: redis.Redis
) -> None:
    me = people.student()
    course = await make_course(courses, people, [60])
    video = course.video_ids[0]
    await fails_with(
        grpc.StatusCode.PERMISSION_DENIED,
        courses.UpdateVideoProgress(sample(video, 1, 1), metadata=me.auth),
        "not enrolled",
    )
    name = member(me.user_id, video)
    assert await state.exists(PREFIX + name) == 0
    assert not await state.sismember(DIRTY, name)


async def test_after_unenrolling_the_next_sample_is_refused(
    courses: CourseServiceStub, people: People
) -> None:
    me, course = await student_in(courses, people, [60])
    video = course.video_ids[0]
    await courses.UpdateVideoProgress(sample(video, 10, 10), metadata=me.auth)
    await courses.Unenroll(pb.UnenrollRequest(course_id=course.course_id), metadata=me.auth)
    await fails_with(
        grpc.StatusCode.PERMISSION_DENIED,
        courses.UpdateVideoProgress(sample(video, 20, 20), metadata=me.auth),
        "not enrolled",
    )


async def test_only_the_viewer_the_instructor_or_an_admin_reads_progress(
    courses: CourseServiceStub, people: People
) -> None:
    viewer, other = people.student(), people.student()
    course = await make_course(courses, people, [60])
    await enroll(courses, [viewer, other], course.course_id)
    video = course.video_ids[0]
    await courses.UpdateVideoProgress(sample(video, 30, 30), metadata=viewer.auth)
    theirs = pb.GetVideoProgressRequest(video_id=video, user_id=viewer.user_id)
    await fails_with(
        grpc.StatusCode.PERMISSION_DENIED, courses.GetVideoProgress(theirs, metadata=other.auth)
    )
    for reader in (course.instructor, people.admin()):
        got = await courses.GetVideoProgress(theirs, metadata=reader.auth)
        assert got.progress.watched.seconds == 30


async def test_progress_through_the_edge_as_json(
    stack: Endpoints, courses: CourseServiceStub, people: People
) -> None:
    me, course = await student_in(courses, people, [120])
    outsider = people.student()
    video = course.video_ids[0]
    url = f"http://{stack.edge}/api/videos/{video}/progress"
    body = {"position": "42.500s", "watched": "40s"}
    async with httpx.AsyncClient(timeout=10) as http:
        put = await http.put(url, json=body, headers=_bearer(me))
        assert put.status_code == 200, put.text
        assert put.json()["progress"]["position"] == "42.500s"
        got = await http.get(url, headers=_bearer(me))
        assert got.json()["progress"]["furthest"] == "42.500s"
        denied = await http.put(url, json=body, headers=_bearer(outsider))
        assert denied.status_code == 403
        bad = await http.put(url, json={"position": "121s"}, headers=_bearer(me))
        assert bad.status_code == 400


def _bearer(person: Person) -> dict[str, str]:
    return {"authorization": f"Bearer {person.token}"}
