"""enroll and check_enrollment: the course service's enrollment paths.

enroll: each caller enrolls its student in the setup's published courses one after another —
a new (student, course) pair per call, so each is a real write (the seat's conditional UPDATE,
the enrollment row and its outbox event in one transaction) until the pairs run out, after
which enrolling again is the idempotent read path; the report counts both.

check_enrollment: the platform's hot internal call (quizzes and live sessions ask it on every
attempt and join). Every caller's student is enrolled once in setup; each call asks about that
student, which the service answers from the cache Valkey (course + status), as in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from bench.scenarios.base import Scenario, SetupContext, UnexpectedResponse, raw_method
from bench.scenarios.catalog import admin_token, published_courses, user_side
from elearn.course.v1 import course_service_pb2 as pb

ENROLL = "/elearn.course.v1.CourseService/Enroll"
CHECK = "/elearn.course.v1.CourseService/CheckEnrollment"
ENROLL_COURSES = 100


@dataclass
class Enroller:
    metadata: tuple[tuple[str, str], ...]
    requests: list[bytes]
    at: int
    created: int = 0
    existing: int = 0


class Enroll(Scenario):
    name = "enroll"
    summary = "CourseService/Enroll: a new (student, course) pair per call while pairs last"
    service = "course"

    async def setup(self, ctx: SetupContext) -> Any:
        async with user_side(ctx) as users:
            token = await admin_token(ctx, users)
            sessions = await ctx.accounts.ensure_sessions(users, ctx.callers)
        courses = await published_courses(ctx.channel, token, ctx.run_id, ENROLL_COURSES)
        return [s.access_token for s in sessions], courses

    def make_state(self, data: Any, caller: int) -> Enroller:
        tokens, courses = data
        requests = [pb.EnrollRequest(course_id=c).SerializeToString() for c in courses]
        metadata = (("authorization", f"Bearer {tokens[caller % len(tokens)]}"),)
        return Enroller(metadata, requests, caller % len(requests))

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, ENROLL)

    async def call(self, stub: Any, state: Enroller) -> None:
        request = state.requests[state.at]
        state.at = (state.at + 1) % len(state.requests)
        reply = pb.EnrollResponse.FromString(
            await stub(request, metadata=state.metadata, timeout=self.timeout_s)
        )
        if reply.created:
            state.created += 1
        else:
            state.existing += 1

    def counters(self, states: list[Any]) -> dict[str, int]:
        return {
            "created": sum(s.created for s in states),
            "existing": sum(s.existing for s in states),
        }


class CheckEnrollment(Scenario):
    name = "check_enrollment"
    summary = "CourseService/CheckEnrollment of an enrolled student (served from cache)"
    service = "course"

    async def setup(self, ctx: SetupContext) -> Any:
        async with user_side(ctx) as users:
            token = await admin_token(ctx, users)
            sessions = await ctx.accounts.ensure_sessions(users, ctx.callers)
        (course,) = await published_courses(ctx.channel, token, ctx.run_id, 1)
        enroll = raw_method(ctx.channel, ENROLL)
        request = pb.EnrollRequest(course_id=course).SerializeToString()
        for s in {s.account.user_id: s for s in sessions}.values():
            auth = (("authorization", f"Bearer {s.access_token}"),)
            await enroll(request, metadata=auth, timeout=self.timeout_s)
        return [(s.access_token, s.account.user_id) for s in sessions], course

    def make_state(self, data: Any, caller: int) -> Any:
        sessions, course = data
        token, user_id = sessions[caller % len(sessions)]
        request = pb.CheckEnrollmentRequest(course_id=course, user_id=user_id)
        return (("authorization", f"Bearer {token}"),), request.SerializeToString()

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, CHECK)

    async def call(self, stub: Any, state: Any) -> None:
        metadata, request = state
        reply = pb.CheckEnrollmentResponse.FromString(
            await stub(request, metadata=metadata, timeout=self.timeout_s)
        )
        if not reply.enrolled:
            raise UnexpectedResponse("an enrolled student was reported not enrolled")
