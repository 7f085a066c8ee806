"""The dashboard page is built from SQL-side conversions (id as text, the update time as
seconds and nanoseconds) straight into the response's bytes: every figure, the update time to
the microsecond, the order and the page token are checked against the courses table."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import text

from devstack.stack import Endpoints
from elearn.analytics.v1 import analytics_service_pb2 as pb
from mesh.cache import open_cache
from mesh.context import Caller
from mesh.db import Database
from svc_analytics.dashboard import Dashboards
from svc_analytics.models import SCHEMA
from svc_analytics.seed import Plan, seed
from svc_analytics.settings import AnalyticsSettings

_TABLE = text("""
SELECT course_id, title, enrollment_count, completion_count, graded_submission_count,
       score_sum, active_learner_count, at_risk_learner_count, updated_at
FROM courses WHERE instructor_id = :i ORDER BY created_at DESC, course_id DESC
""")


async def test_dashboard_pages_match_the_courses_table(stack: Endpoints) -> None:
    settings = AnalyticsSettings(database_url=stack.database_url, cache_url=stack.cache_url)
    async with Database.open(settings, SCHEMA) as db, open_cache(settings) as cache:
        instructor = await seed(
            db, Plan(f"page-{uuid.uuid4().hex[:8]}", 30, 30, 600, 500, 5), quiet=True
        )
        async with db.read() as conn:
            expected = (await conn.execute(_TABLE, {"i": instructor})).all()
        dashboards = Dashboards(db, cache)
        caller = Caller(str(instructor), frozenset({"instructor"}), "", time.time() + 60)
        first = pb.ListInstructorCourseStatsResponse.FromString(
            await dashboards.instructor(caller, instructor, 20, "")
        )
        assert first.next_page_token
        rest = pb.ListInstructorCourseStatsResponse.FromString(
            await dashboards.instructor(caller, instructor, 20, first.next_page_token)
        )
    assert not rest.next_page_token
    got = list(first.courses) + list(rest.courses)
    assert [c.course_id for c in got] == [str(r.course_id) for r in expected]
    for course, row in zip(got, expected, strict=True):
        assert course.title == row.title
        assert course.enrollment_count == row.enrollment_count > 0
        assert course.completion_count == row.completion_count
        assert course.completion_rate == row.completion_count / row.enrollment_count
        assert course.completion_percent == course.completion_rate * 100.0
        assert course.graded_submission_count == row.graded_submission_count
        assert course.average_score_percent == (
            row.score_sum / row.graded_submission_count if row.graded_submission_count else 0.0
        )
        assert course.active_learner_count == row.active_learner_count
        assert course.at_risk_learner_count == row.at_risk_learner_count
        assert course.update_time.ToDatetime(tzinfo=row.updated_at.tzinfo) == row.updated_at
