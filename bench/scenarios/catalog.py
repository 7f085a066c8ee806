"""Shared set-up of the course scenarios: the user side of the stack, the admin's token and
published courses to work on.

Course scenarios may target course replicas directly (`--target direct`), where the setup
channel reaches no UserService; accounts and the admin's login then go through the edge or
the first user replica the endpoints list. The admin holds the instructor role, so it owns
the courses.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from bench.scenarios.base import SetupContext
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub

SETUP_CALL_TIMEOUT_S = 10.0


@asynccontextmanager
async def user_side(ctx: SetupContext) -> AsyncIterator[grpc.aio.Channel]:
    """A channel on which UserService answers: the edge, else a user replica, else (with
    --address, where the endpoints are unknown) the setup channel itself."""
    ends = ctx.endpoints
    address = None
    if ends is not None:
        address = ends.edge or next(iter(ends.services.get("user") or []), None)
    if address is None:
        yield ctx.channel
        return
    async with grpc.aio.insecure_channel(address) as channel:
        yield channel


async def admin_token(ctx: SetupContext, channel: grpc.aio.Channel) -> str:
    if ctx.endpoints is None or not ctx.endpoints.admin_email or not ctx.endpoints.admin_password:
        raise ConnectionError("course scenarios need the stack's admin credentials (endpoints)")
    login = await UserServiceStub(channel).Login(
        user_pb.LoginRequest(
            email=ctx.endpoints.admin_email, password=ctx.endpoints.admin_password
        ),
        timeout=SETUP_CALL_TIMEOUT_S,
    )
    return login.tokens.access_token


async def published_courses(
    channel: grpc.aio.Channel, token: str, run_id: str, count: int, capacity: int = 0
) -> list[str]:
    """`count` new published courses (unlimited seats by default), owned by the token's user."""
    stub = CourseServiceStub(channel)
    auth = (("authorization", f"Bearer {token}"),)
    ids = []
    for n in range(count):
        course = pb.Course(
            title=f"Bench course {run_id} {n}",
            category="bench",
            language="en",
            level=pb.COURSE_LEVEL_ALL_LEVELS,
            capacity=capacity,
        )
        created = await stub.CreateCourse(
            pb.CreateCourseRequest(course=course, idempotency_key=f"{run_id}-{n}-{uuid.uuid4()}"),
            metadata=auth,
            timeout=SETUP_CALL_TIMEOUT_S,
        )
        await stub.PublishCourse(
            pb.PublishCourseRequest(course_id=created.course.course_id),
            metadata=auth,
            timeout=SETUP_CALL_TIMEOUT_S,
        )
        ids.append(created.course.course_id)
    return ids
