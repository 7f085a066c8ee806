"""Who teaches a course and who is enrolled, from CourseService.CheckEnrollment over one
long-lived channel, cached briefly in-process: an exam start asks once per student, not once
per request."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1 import course_service_pb2_grpc as course_grpc
from mesh.channels import Channels
from mesh.errors import NotFound, PermissionDenied, ServiceError, Unavailable
from mesh.local_cache import LocalCache


@dataclass(frozen=True, slots=True)
class Standing:
    enrolled: bool
    instructor_id: str
    course_state: int


class Courses:
    def __init__(
        self, channels: Channels, address: str, ttl_seconds: float, max_entries: int = 100_000
    ) -> None:
        self._stub = course_grpc.CourseServiceStub(channels.get(address))
        self._cache: LocalCache[tuple[str, str], Standing] = LocalCache(ttl_seconds, max_entries)

    async def standing(self, course_id: str, user_id: str) -> Standing:
        """The user's standing in the course; asked with the caller's own token (mesh.channels
        forwards it), so the course service applies its own rules too."""
        return await self._cache.get_or_load((course_id, user_id), self._ask, course_id, user_id)

    async def _ask(self, course_id: str, user_id: str) -> Standing:
        try:
            reply = await self._stub.CheckEnrollment(
                course_pb.CheckEnrollmentRequest(course_id=course_id, user_id=user_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise _mapped(exc) from None
        return Standing(reply.enrolled, reply.instructor_id, reply.course_state)


def _mapped(exc: grpc.aio.AioRpcError) -> ServiceError:
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound("course not found")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"the course service refused: {exc.details()}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return NotFound("course not found")
    return Unavailable(f"course service unavailable ({code.name}); retry shortly")
