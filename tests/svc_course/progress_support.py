"""Courses, students and waits the progress tests share.

Courses, videos and enrollments are made through the course service's own API, with tokens
minted by the `people` fixture (see conftest), so each test has fresh students cheaply.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from tests.people import People, Person
from tests.svc_course.conftest import new_course, new_video

T = TypeVar("T")


@dataclass(frozen=True)
class CourseRows:
    course_id: str
    instructor: Person
    video_ids: list[str]
    durations_s: list[int]


async def make_course(
    courses: CourseServiceStub, people: People, durations_s: list[int]
) -> CourseRows:
    """A published course with one video per duration, in that order."""
    teacher = people.instructor()
    course = await new_course(courses, teacher)
    videos = [
        (await new_video(courses, teacher, course.course_id, seconds)).video_id
        for seconds in durations_s
    ]
    await courses.PublishCourse(
        pb.PublishCourseRequest(course_id=course.course_id), metadata=teacher.auth
    )
    return CourseRows(course.course_id, teacher, videos, durations_s)


async def enroll(courses: CourseServiceStub, students: list[Person], course_id: str) -> None:
    await asyncio.gather(
        *(courses.Enroll(pb.EnrollRequest(course_id=course_id), metadata=s.auth) for s in students)
    )


def progress_rows(sql: psycopg.Connection, video_ids: list[str]) -> dict[tuple[str, str], tuple]:
    """(user, video) -> (position_ms, watched_ms, furthest_ms, completed) from Postgres."""
    rows = sql.execute(
        "SELECT user_id, video_id, position_ms, watched_ms, furthest_ms,"
        " completed_at IS NOT NULL FROM courses.video_progress WHERE video_id = ANY(%s)",
        ([uuid.UUID(v) for v in video_ids],),
    ).fetchall()
    return {(str(r[0]), str(r[1])): tuple(r[2:]) for r in rows}


async def eventually(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)
