"""svc_quiz's tables, all in the `quizzes` schema.

A quiz's settings, questions and key are stored as one serialized `Quiz` message per revision
(`quiz_versions`; every change makes a new revision, while the contract's `version` moves only
when questions change): grading reads a whole definition at once and caches it in-process by
(quiz_id, revision), which never changes once written. A submission's answers and results are
serialized messages too, so a submission is one row written by one statement.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)

from mesh.outbox import outbox_table

SCHEMA = "quizzes"
metadata = MetaData(schema=SCHEMA)

quizzes = Table(
    "quizzes",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("course_id", Uuid, nullable=False),
    # The course's instructor when the quiz was created (from CourseService.CheckEnrollment);
    # quiz-level authoring checks and SubmissionGraded events use it without a call.
    Column("instructor_id", Uuid, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("due_time", DateTime(timezone=True)),
    Column("create_key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    UniqueConstraint("instructor_id", "create_key", name="uq_quizzes_create_key"),
    # ListQuizzes: a course's quizzes by due time (none last), then creation.
    Index(
        "ix_quizzes_course_due",
        "course_id",
        text("coalesce(due_time, 'infinity'::timestamptz)"),
        "created_at",
        "id",
    ),
)

quiz_versions = Table(
    "quiz_versions",
    metadata,
    Column("quiz_id", Uuid, ForeignKey("quizzes.id", ondelete="CASCADE"), nullable=False),
    Column("revision", Integer, nullable=False),
    # elearn.quiz.v1.Quiz, serialized, questions and key included.
    Column("definition", LargeBinary, nullable=False),
    PrimaryKeyConstraint("quiz_id", "revision"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("quiz_id", Uuid, ForeignKey("quizzes.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("attempt_number", Integer, nullable=False),
    Column("quiz_version", Integer, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("start_key", Text, nullable=False),
    # Seeds the per-attempt shuffle, so a resumed attempt shows the same order.
    Column("shuffle_seed", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True)),
    # elearn.quiz.v1.SubmitQuizRequest holding only `answers`, from SaveAnswers.
    Column("saved_answers", LargeBinary),
    Column("submission_id", Uuid),
    UniqueConstraint("quiz_id", "user_id", "attempt_number", name="uq_attempts_number"),
    UniqueConstraint("user_id", "start_key", name="uq_attempts_start_key"),
    # At most one attempt in progress per student and quiz.
    Index(
        "uq_attempts_open",
        "quiz_id",
        "user_id",
        unique=True,
        postgresql_where=text("state = 1"),
    ),
    # The expiry sweep finds open attempts past their deadline.
    Index("ix_attempts_open_deadline", "deadline_at", postgresql_where=text("state = 1")),
)

submissions = Table(
    "submissions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("quiz_id", Uuid, nullable=False),
    Column("course_id", Uuid, nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("attempt_id", Uuid, nullable=False, unique=True),
    Column("attempt_number", Integer, nullable=False),
    Column("quiz_version", Integer, nullable=False),
    Column("grading_status", SmallInteger, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    # SHA-256 of the submitted answers: a repeat with the same key must carry the same answers.
    Column("answers_digest", LargeBinary, nullable=False),
    # elearn.quiz.v1.SubmitQuizRequest holding only `answers`.
    Column("answers", LargeBinary, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("late_penalty_percent", Double, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    # The final grade; NULL until the first grade is final, kept during a regrade.
    Column("score", Double),
    Column("max_score", Double, nullable=False),
    Column("score_percent", Double),
    Column("passed", Boolean),
    # elearn.quiz.v1.Submission holding only `results` (final ones).
    Column("results", LargeBinary),
    # Automatic results waiting for the instructor's essay grades; never shown.
    Column("pending_results", LargeBinary),
    Column("graded_at", DateTime(timezone=True)),
    # Bumped by every final grade; a worker's conditional update names the one it saw.
    Column("grade_version", Integer, nullable=False, server_default="0"),
    Column("failure_reason", Text, nullable=False, server_default=""),
    UniqueConstraint("user_id", "idempotency_key", name="uq_submissions_key"),
    # C4: ListMySubmissions, ListQuizSubmissions, score distributions, the grading queue.
    Index("ix_submissions_user_time", "user_id", text("submitted_at DESC"), text("id DESC")),
    Index("ix_submissions_quiz_time", "quiz_id", "submitted_at", "id"),
    Index("ix_submissions_quiz_score", "quiz_id", "score"),
    Index("ix_submissions_status_time", "grading_status", "submitted_at"),
)

manual_grade_keys = Table(
    "manual_grade_keys",
    metadata,
    Column("submission_id", Uuid, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("submission_id", "idempotency_key"),
)

outbox = outbox_table(metadata)
