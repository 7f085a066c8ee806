"""A course's dashboard entry as bytes: its CourseStats framed as one `courses` element of
ListInstructorCourseStatsResponse. Serialized once when the course's counters change and
stored beside them, so a dashboard page is the entries joined (no message built per read)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elearn.analytics.v1 import analytics_service_pb2 as pb

# Wire tags of ListInstructorCourseStatsResponse: field 1 (courses) and field 2
# (next_page_token), both length-delimited (wire type 2).
COURSES_TAG = b"\x0a"
NEXT_PAGE_TOKEN_TAG = b"\x12"


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data


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
    """The framed entry of a row of repository.STATS_COLUMNS."""
    course = pb.CourseStats()
    fill_stats(course, row)
    return field(COURSES_TAG, course.SerializeToString())
