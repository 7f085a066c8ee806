"""A course's dashboard entry as bytes: a ListInstructorCourseStatsResponse holding only that
course's CourseStats. Serialized once when the course's counters change and stored beside
them; protobuf merges concatenated messages (repeated fields append), so a dashboard page is
the entries joined, with no message built per read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elearn.analytics.v1 import analytics_service_pb2 as pb


def fill_stats(course: pb.CourseStats, row: Sequence[Any]) -> None:
    """Fill a message in place from a row of repository.STATS_COLUMNS: the response's own
    submessage, not one built and then copied in, and the timestamp's two integers set
    directly (Timestamp.FromDatetime costs more than the rest of the message)."""
    cid, title, enrolled, completed, graded, score_sum, active, at_risk, seconds, nanos = row[:10]
    rate = completed / enrolled if enrolled else 0.0
    course.course_id = cid
    course.title = title or ""
    course.enrollment_count = enrolled
    course.completion_count = completed
    course.completion_rate = rate
    course.completion_percent = rate * 100.0
    course.average_score_percent = score_sum / graded if graded else 0.0
    course.graded_submission_count = graded
    course.active_learner_count = active
    course.at_risk_learner_count = at_risk
    update = course.update_time
    update.seconds = seconds
    update.nanos = nanos


def stats_entry(row: Sequence[Any]) -> bytes:
    """The entry of a row of repository.STATS_COLUMNS."""
    entry = pb.ListInstructorCourseStatsResponse()
    fill_stats(entry.courses.add(), row)
    return entry.SerializeToString()


def next_page(token: str) -> bytes:
    """The page token, to append to the joined entries."""
    return pb.ListInstructorCourseStatsResponse(next_page_token=token).SerializeToString()
