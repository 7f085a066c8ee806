"""live sessions and the outbox

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

S = "live"


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("instructor_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("scheduled_start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("max_participants", sa.Integer(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.Text(), nullable=False, unique=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=S,
    )
    op.create_index(
        "ix_sessions_course_start",
        "sessions",
        ["course_id", "scheduled_start_at", "id"],
        schema=S,
    )
    op.create_index(
        "ix_sessions_live", "sessions", ["state"], postgresql_where=sa.text("state = 2"), schema=S
    )
    create_outbox_tables(S)


def downgrade() -> None:
    drop_outbox_tables(S)
    op.drop_table("sessions", schema=S)
