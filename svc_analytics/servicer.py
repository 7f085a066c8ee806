"""AnalyticsService over gRPC: validate, call the dashboards. Errors are mapped by the mesh
interceptor, so handlers only raise."""

from __future__ import annotations

from uuid import UUID

from grpc.aio import ServicerContext

from elearn.analytics.v1 import analytics_service_pb2 as pb
from elearn.analytics.v1 import analytics_service_pb2_grpc
from mesh.context import Caller, current_caller
from mesh.errors import InvalidArgument
from mesh.pagination import page_size
from svc_analytics.dashboard import Dashboards

MAX_DASHBOARD_PAGE = 500
DEFAULT_DASHBOARD_PAGE = 100


def _caller() -> Caller:
    caller = current_caller.get()
    assert caller is not None, "policy admits signed-in methods only with a caller"
    return caller


def _uuid(value: str, field: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID", violations=[(field, "not a UUID")]
        ) from None


def _dashboard_size(requested: int) -> int:
    if requested < 0 or requested > MAX_DASHBOARD_PAGE:
        raise InvalidArgument(
            f"page_size must be 0 to {MAX_DASHBOARD_PAGE}",
            violations=[("page_size", f"must be 0..{MAX_DASHBOARD_PAGE}")],
        )
    return requested or DEFAULT_DASHBOARD_PAGE


class AnalyticsServicer(analytics_service_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, dashboards: Dashboards) -> None:
        self._dashboards = dashboards

    async def ListInstructorCourseStats(  # type: ignore[override]
        self, request: pb.ListInstructorCourseStatsRequest, context: ServicerContext
    ) -> bytes:
        """Returns the serialized response (see svc_analytics.server.PRESERIALIZED)."""
        instructor = _uuid(request.instructor_id, "instructor_id")
        size = _dashboard_size(request.page_size)
        return await self._dashboards.instructor(_caller(), instructor, size, request.page_token)

    async def GetCourseAnalytics(
        self, request: pb.GetCourseAnalyticsRequest, context: ServicerContext
    ) -> pb.GetCourseAnalyticsResponse:
        course = _uuid(request.course_id, "course_id")
        quiz = _uuid(request.quiz_id, "quiz_id") if request.quiz_id else None
        return await self._dashboards.course(_caller(), course, quiz)

    async def ListAtRiskLearners(
        self, request: pb.ListAtRiskLearnersRequest, context: ServicerContext
    ) -> pb.ListAtRiskLearnersResponse:
        course = _uuid(request.course_id, "course_id")
        size = page_size(request.page_size)
        return await self._dashboards.at_risk(_caller(), course, size, request.page_token)
