"""The analytics read model: rows the event consumers keep, never another service's tables.

Every figure is either recomputed from these rows or merged with an order-insensitive rule
(GREATEST, highest version wins), so applying an event twice or out of order ends in the same
state, and a rebuild from the stream gives the same figures.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA = "analytics"
metadata = sa.MetaData(schema=SCHEMA)

_TS = sa.DateTime(timezone=True)

# One dashboard row per course, with its counters precomputed so the dashboard is one indexed
# range read.
courses = sa.Table(
    "courses",
    metadata,
    sa.Column("course_id", sa.Uuid(), primary_key=True),
    sa.Column("instructor_id", sa.Uuid(), nullable=False),
    sa.Column("title", sa.Text(), nullable=False, server_default=""),
    sa.Column("created_at", _TS, nullable=False),
    # Version of the newest course event applied: (aggregate seq, occur time).
    sa.Column("info_seq", sa.BigInteger(), nullable=False, server_default="-1"),
    sa.Column("info_at", _TS),
    sa.Column("enrollment_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("completion_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("graded_submission_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("score_sum", sa.Float(), nullable=False, server_default="0"),
    sa.Column("active_learner_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("at_risk_learner_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("updated_at", _TS, nullable=False),
    # The course's CourseStats framed as one `courses` entry of ListInstructorCourseStatsResponse
    # (tag, length, message), rewritten with the counters: a dashboard page is these joined.
    sa.Column("stats_entry", sa.LargeBinary()),
)

# One row per (course, learner): the enrollment state and the learner's activity in the course.
learners = sa.Table(
    "learners",
    metadata,
    sa.Column("course_id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), primary_key=True),
    # False until an Enrolled event arrives (progress or grades may come first) and after
    # Unenrolled.
    sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("completed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("enroll_seq", sa.BigInteger(), nullable=False, server_default="-1"),
    sa.Column("enroll_at", _TS),
    sa.Column("enrolled_at", _TS),
    # Newest progress or submission.
    sa.Column("last_activity_at", _TS),
    # GREATEST(enrolled_at, last_activity_at): idleness is measured from here.
    sa.Column("last_seen_at", _TS),
    sa.Column("progress_percent", sa.Float(), nullable=False, server_default="0"),
    sa.Column("progress_at", _TS),
    sa.Column("failing_quiz_count", sa.Integer(), nullable=False, server_default="0"),
)

# The latest graded attempt per (course, learner, quiz): whether the learner is failing it.
latest_attempts = sa.Table(
    "latest_attempts",
    metadata,
    sa.Column("course_id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), primary_key=True),
    sa.Column("quiz_id", sa.Uuid(), primary_key=True),
    sa.Column("attempt_number", sa.Integer(), nullable=False),
    sa.Column("grade_version", sa.Integer(), nullable=False),
    sa.Column("passed", sa.Boolean(), nullable=False),
)

# Final grade per submission (highest grade_version wins), with its per-question outcomes as
# three parallel arrays (question, its position in the quiz, answered right): a 20-question
# submission is one row instead of 21, and an exam rush wrote most of its analytics WAL and
# index entries for the per-answer rows. Question difficulty unnests them (reads._QUESTIONS).
submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("submission_id", sa.Uuid(), primary_key=True),
    sa.Column("course_id", sa.Uuid(), nullable=False),
    sa.Column("quiz_id", sa.Uuid(), nullable=False),
    sa.Column("user_id", sa.Uuid(), nullable=False),
    sa.Column("attempt_number", sa.Integer(), nullable=False),
    sa.Column("grade_version", sa.Integer(), nullable=False),
    sa.Column("score_percent", sa.Float(), nullable=False),
    sa.Column("passed", sa.Boolean(), nullable=False),
    sa.Column("graded_at", _TS, nullable=False),
    sa.Column("question_ids", sa.ARRAY(sa.Uuid()), nullable=False, server_default="{}"),
    sa.Column("positions", sa.ARRAY(sa.Integer()), nullable=False, server_default="{}"),
    sa.Column("correct", sa.ARRAY(sa.Boolean()), nullable=False, server_default="{}"),
)

# Furthest point each learner reached in each video.
video_progress = sa.Table(
    "video_progress",
    metadata,
    sa.Column("course_id", sa.Uuid(), primary_key=True),
    sa.Column("video_id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), primary_key=True),
    sa.Column("furthest_ms", sa.BigInteger(), nullable=False),
    sa.Column("duration_ms", sa.BigInteger(), nullable=False),
    sa.Column("completed", sa.Boolean(), nullable=False),
)

videos = sa.Table(
    "videos",
    metadata,
    sa.Column("video_id", sa.Uuid(), primary_key=True),
    sa.Column("course_id", sa.Uuid(), nullable=False),
    sa.Column("title", sa.Text(), nullable=False),
    sa.Column("position", sa.Integer(), nullable=False),
    sa.Column("info_at", _TS, nullable=False),
)
