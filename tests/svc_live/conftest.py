"""Live-service fixtures: people with signed tokens, a course with an instructor and enrolled
students (through the real course service), and live sessions on the real live service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1.live_service_pb2_grpc import LiveServiceStub
from tests.people import People, Person


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def live_channel(stack: Endpoints) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(stack.services["live"][0]) as channel:
        yield channel


@pytest.fixture(scope="session")
def live(live_channel: grpc.aio.Channel) -> LiveServiceStub:
    return LiveServiceStub(live_channel)


@dataclass
class Room:
    course_id: str
    instructor: Person
    students: list[Person]
    session: pb.LiveSession


async def new_course(courses: CourseServiceStub, instructor: Person, people: People,
                     students: int) -> tuple[str, list[Person]]:  # fmt: skip
    created = await courses.CreateCourse(
        course_pb.CreateCourseRequest(
            course=course_pb.Course(
                title=f"Live {uuid.uuid4().hex[:8]}",
                description="A course for live-session tests.",
                category="testing",
                level=course_pb.COURSE_LEVEL_BEGINNER,
                language="en",
            ),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=instructor.auth,
    )
    course_id = created.course.course_id
    await courses.PublishCourse(
        course_pb.PublishCourseRequest(course_id=course_id), metadata=instructor.auth
    )
    enrolled = []
    for _ in range(students):
        student = people.make()
        await courses.Enroll(
            course_pb.EnrollRequest(course_id=course_id, idempotency_key=uuid.uuid4().hex),
            metadata=student.auth,
        )
        enrolled.append(student)
    return course_id, enrolled


async def schedule(live: LiveServiceStub, instructor: Person, course_id: str,
                   **fields: object) -> pb.LiveSession:  # fmt: skip
    start = Timestamp()
    start.GetCurrentTime()
    reply = await live.ScheduleSession(
        pb.ScheduleSessionRequest(
            session=pb.LiveSession(
                course_id=course_id,
                title="Office hours",
                scheduled_start_time=start,
                **fields,  # type: ignore[arg-type]
            ),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=instructor.auth,
    )
    return reply.session


async def open_room(live: LiveServiceStub, courses: CourseServiceStub, people: People,
                    students: int = 2, **fields: object) -> Room:  # fmt: skip
    instructor = people.make("instructor")
    course_id, enrolled = await new_course(courses, instructor, people, students)
    session = await schedule(live, instructor, course_id, **fields)
    started = await live.StartSession(
        pb.StartSessionRequest(session_id=session.session_id), metadata=instructor.auth
    )
    return Room(course_id, instructor, enrolled, started.session)
