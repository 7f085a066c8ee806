"""Who a caller is in a course, from CourseService.CheckEnrollment over one long-lived
channel (the caller's token travels with the call), cached briefly in-process: a join storm
costs one call per student, and a revoked enrollment is honoured within seconds."""

from __future__ import annotations

import grpc

from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from mesh.context import Caller
from mesh.errors import NotFound, PermissionDenied, ServiceError, Unavailable
from mesh.local_cache import LocalCache

_MAX_ENTRIES = 50_000


class CourseAccess:
    def __init__(self, channel: grpc.aio.Channel, ttl_seconds: float) -> None:
        self._stub = CourseServiceStub(channel)
        self._cache: LocalCache[tuple[str, str], course_pb.CheckEnrollmentResponse]
        self._cache = LocalCache(ttl_seconds, _MAX_ENTRIES)

    async def check(self, course_id: str, caller: Caller) -> course_pb.CheckEnrollmentResponse:
        return await self._cache.get_or_load(
            (course_id, caller.user_id), self._ask, course_id, caller.user_id
        )

    async def _ask(self, course_id: str, user_id: str) -> course_pb.CheckEnrollmentResponse:
        try:
            return await self._stub.CheckEnrollment(
                course_pb.CheckEnrollmentRequest(course_id=course_id, user_id=user_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise _mapped(exc, course_id) from None

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
