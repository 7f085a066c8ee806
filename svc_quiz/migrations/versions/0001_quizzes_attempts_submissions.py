"""quizzes, answer-key versions, attempts, submissions, manual grade keys and the outbox

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from mesh.outbox_migrations import create_outbox_tables, drop_outbox_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "quizzes"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {S}")
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "quizzes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("instructor_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("due_time", tz),
        sa.Column("create_key", sa.Text(), nullable=False),
        sa.Column("created_at", tz, nullable=False, server_default=_now()),
        sa.Column("updated_at", tz, nullable=False, server_default=_now()),
        sa.Column("published_at", tz),
        sa.UniqueConstraint("instructor_id", "create_key", name="uq_quizzes_create_key"),
        schema=S,
    )
    op.create_index(
        "ix_quizzes_course_due",
        "quizzes",
        [
            "course_id",
            sa.text("coalesce(due_time, 'infinity'::timestamptz)"),
            "created_at",
            "id",
        ],
        schema=S,
    )
    op.create_table(
        "quiz_versions",
        sa.Column(
            "quiz_id",
            sa.Uuid(),
            sa.ForeignKey(f"{S}.quizzes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("definition", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("quiz_id", "revision"),
        schema=S,
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "quiz_id",
            sa.Uuid(),
            sa.ForeignKey(f"{S}.quizzes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("quiz_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("start_key", sa.Text(), nullable=False),
        sa.Column("shuffle_seed", sa.Integer(), nullable=False),
        sa.Column("started_at", tz, nullable=False),
        sa.Column("deadline_at", tz),
        sa.Column("saved_answers", sa.LargeBinary()),
        sa.Column("submission_id", sa.Uuid()),
        sa.UniqueConstraint("quiz_id", "user_id", "attempt_number", name="uq_attempts_number"),
        sa.UniqueConstraint("user_id", "start_key", name="uq_attempts_start_key"),
        schema=S,
    )
    op.create_index(
        "uq_attempts_open",
        "attempts",
        ["quiz_id", "user_id"],
        unique=True,
        postgresql_where=sa.text("state = 1"),
        schema=S,
    )
    op.create_index(
        "ix_attempts_open_deadline",
        "attempts",
        ["deadline_at"],
        postgresql_where=sa.text("state = 1"),
        schema=S,
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("quiz_id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("attempt_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("quiz_version", sa.Integer(), nullable=False),
        sa.Column("grading_status", sa.SmallInteger(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("answers_digest", sa.LargeBinary(), nullable=False),
        sa.Column("answers", sa.LargeBinary(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("late_penalty_percent", sa.Double(), nullable=False),
        sa.Column("submitted_at", tz, nullable=False),
        sa.Column("score", sa.Double()),
        sa.Column("max_score", sa.Double(), nullable=False),
        sa.Column("score_percent", sa.Double()),
        sa.Column("passed", sa.Boolean()),
        sa.Column("results", sa.LargeBinary()),
        sa.Column("pending_results", sa.LargeBinary()),
        sa.Column("graded_at", tz),
        sa.Column("grade_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failure_reason", sa.Text(), nullable=False, server_default=""),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_submissions_key"),
        schema=S,
    )
    op.create_index(
        "ix_submissions_user_time",
        "submissions",
        ["user_id", sa.text("submitted_at DESC"), sa.text("id DESC")],
        schema=S,
    )
    op.create_index(
        "ix_submissions_quiz_time", "submissions", ["quiz_id", "submitted_at", "id"], schema=S
    )
    op.create_index("ix_submissions_quiz_score", "submissions", ["quiz_id", "score"], schema=S)
    op.create_index(
        "ix_submissions_status_time", "submissions", ["grading_status", "submitted_at"], schema=S
    )
    op.create_table(
        "manual_grade_keys",
        sa.Column("submission_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("created_at", tz, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("submission_id", "idempotency_key"),
        schema=S,
    )
    create_outbox_tables(S)


def downgrade() -> None:
    drop_outbox_tables(S)
    for table in (
        "manual_grade_keys",
        "submissions",
        "attempts",
        "quiz_versions",
        "quizzes",
    ):
        op.drop_table(table, schema=S)
