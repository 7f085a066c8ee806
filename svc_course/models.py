"""svc_course's tables, all in the `courses` schema.

Search: `search_document` (weighted tsvector) and `search_title` (unaccented, lower-cased title
for trigram and substring matching) are kept by a trigger in the same statement as the write,
so a course is searchable the moment its transaction commits. `search_terms` is the vocabulary
of every indexed word; a misspelt query word is corrected against it by trigram distance. It
only grows: a word whose courses changed or were archived can still be offered as a correction,
and then simply matches nothing published.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, REAL, TSVECTOR

from mesh.outbox import outbox_table

SCHEMA = "courses"
metadata = MetaData(schema=SCHEMA)

COURSE_STATES = ("draft", "published", "archived")
ENROLLMENT_STATES = ("active", "completed", "unenrolled")


courses = Table(
    "courses",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("instructor_id", Uuid, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("category", Text, nullable=False),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("level", Text, nullable=False, server_default="all_levels"),
    Column("language", Text, nullable=False),
    # 0 means unlimited.
    Column("capacity", Integer, nullable=False, server_default=text("0")),
    Column("state", Text, nullable=False, server_default="draft"),
    Column("enrollment_count", Integer, nullable=False, server_default=text("0")),
    Column("video_count", Integer, nullable=False, server_default=text("0")),
    Column("total_duration_seconds", Integer, nullable=False, server_default=text("0")),
    Column("search_document", TSVECTOR, nullable=False, server_default=text("''::tsvector")),
    Column("search_title", Text, nullable=False, server_default=""),
    # The CreateCourse idempotency key, unique per instructor.
    Column("idempotency_key", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    CheckConstraint("state IN ('draft', 'published', 'archived')", name="ck_courses_state"),
    CheckConstraint("capacity >= 0", name="ck_courses_capacity"),
    # The capacity check in Enroll is an atomic conditional UPDATE; this is the backstop.
    CheckConstraint(
        "capacity = 0 OR enrollment_count <= capacity", name="ck_courses_enrollment_capacity"
    ),
    CheckConstraint(
        "enrollment_count >= 0 AND video_count >= 0 AND total_duration_seconds >= 0",
        name="ck_courses_counts",
    ),
    UniqueConstraint("instructor_id", "idempotency_key", name="uq_courses_instructor_key"),
    # ListInstructorCourses: newest first, keyset-paged.
    Index("ix_courses_instructor", "instructor_id", text("created_at DESC"), text("id DESC")),
    # Search with no query text lists published courses newest first.
    Index(
        "ix_courses_published_created",
        text("created_at DESC"),
        text("id DESC"),
        postgresql_where=text("state = 'published'"),
    ),
    Index("ix_courses_search_document", "search_document", postgresql_using="gin"),
    Index(
        "ix_courses_search_title_trgm",
        "search_title",
        postgresql_using="gin",
        postgresql_ops={"search_title": "gin_trgm_ops"},
    ),
)

search_terms = Table(
    "search_terms",
    metadata,
    Column("term", Text, primary_key=True),
    Index(
        "ix_search_terms_trgm",
        "term",
        postgresql_using="gist",
        postgresql_ops={"term": "gist_trgm_ops"},
    ),
)

videos = Table(
    "videos",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("course_id", Uuid, ForeignKey("courses.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    # 1..n within the course; kept dense by the write paths under the course's row lock.
    Column("position", Integer, nullable=False),
    # Set by the instructor until transcoding probes the real value.
    Column("duration_seconds", Integer, nullable=False, server_default=text("0")),
    Column("state", Text, nullable=False, server_default="awaiting_upload"),
    Column("idempotency_key", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("position >= 1", name="ck_videos_position"),
    CheckConstraint("duration_seconds >= 0", name="ck_videos_duration"),
    UniqueConstraint("course_id", "idempotency_key", name="uq_videos_course_key"),
    Index("ix_videos_course_position", "course_id", "position"),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("user_id", Uuid, nullable=False),
    Column("course_id", Uuid, ForeignKey("courses.id", ondelete="CASCADE"), nullable=False),
    Column("state", Text, nullable=False, server_default="active"),
    Column("progress_percent", REAL, nullable=False, server_default=text("0")),
    Column("completed_at", DateTime(timezone=True)),
    Column("enrolled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("unenrolled_at", DateTime(timezone=True)),
    Column("idempotency_key", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("state IN ('active', 'completed', 'unenrolled')", name="ck_enrollments_state"),
    # Also the index for "this user in this course" and, by its leading column, "by user".
    UniqueConstraint("user_id", "course_id", name="uq_enrollments_user_course"),
    Index("ix_enrollments_user_enrolled", "user_id", text("enrolled_at DESC"), text("id DESC")),
    Index("ix_enrollments_course_enrolled", "course_id", text("enrolled_at DESC"), text("id DESC")),
    # M2: completions are few next to enrollments; a partial index keeps their queries small.
    Index(
        "ix_enrollments_completed",
        "course_id",
        "completed_at",
        postgresql_where=text("state = 'completed'"),
    ),
    Index(
        "uq_enrollments_user_key",
        "user_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
)

video_progress = Table(
    "video_progress",
    metadata,
    Column("user_id", Uuid, nullable=False),
    Column("video_id", Uuid, nullable=False),
    Column("course_id", Uuid, nullable=False),
    Column("position_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("watched_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("furthest_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("client_time", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("user_id", "video_id", name="pk_video_progress"),
    Index("ix_video_progress_video", "video_id"),
    Index("ix_video_progress_user_course", "user_id", "course_id"),
)

outbox = outbox_table(metadata)
