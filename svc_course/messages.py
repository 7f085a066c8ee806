"""Rows to protobuf messages and the enum names stored in the database.

States and levels are stored as readable text (`'published'`, `'beginner'`) so SQL stays
legible in psql and in EXPLAIN output; these tables are the one place that maps them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row

from elearn.course.v1 import course_service_pb2 as pb
from elearn.events.v1 import course_events_pb2 as events

LEVELS = {
    pb.COURSE_LEVEL_BEGINNER: "beginner",
    pb.COURSE_LEVEL_INTERMEDIATE: "intermediate",
    pb.COURSE_LEVEL_ADVANCED: "advanced",
    pb.COURSE_LEVEL_ALL_LEVELS: "all_levels",
}
COURSE_STATES = {
    pb.COURSE_STATE_DRAFT: "draft",
    pb.COURSE_STATE_PUBLISHED: "published",
    pb.COURSE_STATE_ARCHIVED: "archived",
}
VIDEO_STATES = {
    pb.VIDEO_STATE_AWAITING_UPLOAD: "awaiting_upload",
    pb.VIDEO_STATE_UPLOADING: "uploading",
    pb.VIDEO_STATE_PROCESSING: "processing",
    pb.VIDEO_STATE_READY: "ready",
    pb.VIDEO_STATE_FAILED: "failed",
}
ENROLLMENT_STATES = {
    pb.ENROLLMENT_STATE_ACTIVE: "active",
    pb.ENROLLMENT_STATE_COMPLETED: "completed",
    pb.ENROLLMENT_STATE_UNENROLLED: "unenrolled",
}
LEVEL_VALUES = {name: value for value, name in LEVELS.items()}
COURSE_STATE_VALUES = {name: value for value, name in COURSE_STATES.items()}
VIDEO_STATE_VALUES = {name: value for value, name in VIDEO_STATES.items()}
ENROLLMENT_STATE_VALUES = {name: value for value, name in ENROLLMENT_STATES.items()}
# Enrollments that hold a seat and give access to the course.
HOLDING = ("active", "completed")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """As Timestamp.FromDatetime (a naive value is UTC), in integer arithmetic: FromDatetime
    goes through utctimetuple and calendar.timegm, a fifth of the time a course row takes to
    become a message, and a search page converts sixty of them."""
    if value is None:
        return None
    since = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def seconds(value: int) -> Duration:
    return Duration(seconds=value)


def course(row: Row) -> pb.Course:
    return pb.Course(
        course_id=str(row.id),
        instructor_id=str(row.instructor_id),
        title=row.title,
        description=row.description,
        category=row.category,
        tags=list(row.tags),
        level=LEVEL_VALUES[row.level],  # type: ignore[arg-type]
        language=row.language,
        capacity=row.capacity,
        state=COURSE_STATE_VALUES[row.state],  # type: ignore[arg-type]
        enrollment_count=row.enrollment_count,
        video_count=row.video_count,
        total_duration=seconds(row.total_duration_seconds),
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        publish_time=timestamp(row.published_at),
    )


def course_info(c: pb.Course) -> events.CourseInfo:
    return events.CourseInfo(
        course_id=c.course_id,
        instructor_id=c.instructor_id,
        title=c.title,
        category=c.category,
        tags=c.tags,
        level=c.level,
        language=c.language,
        capacity=c.capacity,
        state=c.state,
    )


def video(row: Row) -> pb.Video:
    return pb.Video(
        video_id=str(row.id),
        course_id=str(row.course_id),
        title=row.title,
        description=row.description,
        position=row.position,
        duration=seconds(row.duration_seconds),
        state=VIDEO_STATE_VALUES[row.state],  # type: ignore[arg-type]
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )


def enrollment(row: Row) -> pb.Enrollment:
    return pb.Enrollment(
        enrollment_id=str(row.id),
        course_id=str(row.course_id),
        user_id=str(row.user_id),
        state=ENROLLMENT_STATE_VALUES[row.state],  # type: ignore[arg-type]
        progress_percent=row.progress_percent,
        enroll_time=timestamp(row.enrolled_at),
        complete_time=timestamp(row.completed_at),
        unenroll_time=timestamp(row.unenrolled_at),
    )
