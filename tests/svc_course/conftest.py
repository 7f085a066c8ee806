"""Course-service fixtures: a stub on the real service, and people with signed access tokens.

Tokens are minted with the stack's own signing key, the way svc_user mints them, so a test can
have 500 distinct students without paying 500 argon2 registrations; the course service only
ever sees verified tokens, exactly as in production.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from tests.people import Person


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def course_channel(stack: Endpoints) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(stack.services["course"][0]) as channel:
        yield channel


@pytest.fixture(scope="session")
def courses(course_channel: grpc.aio.Channel) -> CourseServiceStub:
    return CourseServiceStub(course_channel)


def course_fields(**over: object) -> pb.Course:
    fields: dict[str, object] = {
        "title": f"Course {uuid.uuid4().hex[:8]}",
        "description": "A course written for the tests.",
        "category": "testing",
        "tags": ["tests"],
        "level": pb.COURSE_LEVEL_BEGINNER,
        "language": "en",
    }
    fields.update(over)
    return pb.Course(**fields)  # type: ignore[arg-type]


async def new_course(
    stub: CourseServiceStub, owner: Person, *, publish: bool = False, **over: object
) -> pb.Course:
    created = await stub.CreateCourse(
        pb.CreateCourseRequest(course=course_fields(**over), idempotency_key=uuid.uuid4().hex),
        metadata=owner.auth,
    )
    if not publish:
        return created.course
    published = await stub.PublishCourse(
        pb.PublishCourseRequest(course_id=created.course.course_id), metadata=owner.auth
    )
    return published.course


async def new_video(
    stub: CourseServiceStub, owner: Person, course_id: str, seconds: int = 60, **over: object
) -> pb.Video:
    video = pb.Video(title=f"Video {uuid.uuid4().hex[:6]}", duration=Duration(seconds=seconds))
    for name, value in over.items():
        setattr(video, name, value)
    reply = await stub.CreateVideo(
        pb.CreateVideoRequest(course_id=course_id, video=video, idempotency_key=uuid.uuid4().hex),
        metadata=owner.auth,
    )
    return reply.video
