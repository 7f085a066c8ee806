"""Who a caller is in a course, from CourseService.CheckEnrollment over one long-lived
channel (the caller's token travels with the call), cached briefly in-process: a join storm
costs one call per student, and a revoked enrollment is honoured within seconds."""

from __future__ import annotations

import time
from collections import OrderedDict

import grpc

from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from mesh.context import Caller
from mesh.errors import NotFound, PermissionDenied, ServiceError, Unavailable

_MAX_ENTRIES = 50_000


class CourseAccess:
    def __init__(self, channel: grpc.aio.Channel, ttl_seconds: float) -> None:
        self._stub = CourseServiceStub(channel)
        self._ttl = ttl_seconds
        self._cache: OrderedDict[tuple[str, str], tuple[float, course_pb.CheckEnrollmentResponse]]
        self._cache = OrderedDict()

    async def check(self, course_id: str, caller: Caller) -> course_pb.CheckEnrollmentResponse:
        key = (course_id, caller.user_id)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            answer = await self._stub.CheckEnrollment(
                course_pb.CheckEnrollmentRequest(course_id=course_id, user_id=caller.user_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise _mapped(exc, course_id) from None
        self._cache[key] = (now + self._ttl, answer)
        self._cache.move_to_end(key)
        if len(self._cache) > _MAX_ENTRIES:
            self._cache.popitem(last=False)
        return answer

    async def instructor_of(self, course_id: str, caller: Caller) -> str:
        """The course's instructor id; PERMISSION_DENIED unless the caller is it or an admin."""
        answer = await self.check(course_id, caller)
        if answer.instructor_id != caller.user_id and not caller.is_admin:
            raise PermissionDenied("only the course's instructor may manage its live sessions")
        return answer.instructor_id

    async def role_in(self, course_id: str, caller: Caller) -> int:
        """The caller's participant role in the course's sessions, or PERMISSION_DENIED."""
        answer = await self.check(course_id, caller)
        if answer.instructor_id == caller.user_id or caller.is_admin:
            return pb.PARTICIPANT_ROLE_INSTRUCTOR
        if answer.enrolled:
            return pb.PARTICIPANT_ROLE_STUDENT
        raise PermissionDenied("only students enrolled in the course may join its live sessions")


def _mapped(exc: grpc.aio.AioRpcError, course_id: str) -> ServiceError:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"course {course_id} not found")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(exc.details() or "not allowed in this course")
    return Unavailable(f"course service unavailable ({code.name}); retry shortly")
