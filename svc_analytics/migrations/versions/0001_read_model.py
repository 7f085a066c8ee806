"""analytics read model

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from svc_analytics.models import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "analytics"


def upgrade() -> None:
    metadata.create_all(op.get_bind())
    # The dashboard: an instructor's courses, newest first, keyset-paged.
    op.create_index(
        "ix_courses_instructor_created",
        "courses",
        ["instructor_id", sa.text("created_at DESC"), sa.text("course_id DESC")],
        schema=S,
    )
    # The idle-learner refresh finds learners whose last activity crossed the 7-day line.
    op.create_index("ix_learners_last_seen", "learners", ["last_seen_at"], schema=S)
    op.create_index("ix_learners_last_activity", "learners", ["last_activity_at"], schema=S)
    # ListAtRiskLearners: only at-risk candidates, most idle first.
    op.create_index(
        "ix_learners_at_risk",
        "learners",
        ["course_id", "last_seen_at", "user_id"],
        schema=S,
        postgresql_where=sa.text("active AND NOT completed"),
    )
    op.create_index("ix_submissions_course", "submissions", ["course_id", "quiz_id"], schema=S)
    op.create_index("ix_videos_course", "videos", ["course_id"], schema=S)


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
