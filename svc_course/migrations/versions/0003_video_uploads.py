"""video uploads, transcoding jobs and the transcoding queue's slot counter

Revision ID: 0003_video
Revises: 0002_outbox
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_video"
down_revision = "0002_outbox"
branch_labels = None
depends_on = None

S = "courses"


def upgrade() -> None:
    op.create_table(
        "video_uploads",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        sa.Column(
            "video_id",
            sa.Uuid(),
            sa.ForeignKey(f"{S}.videos.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("s3_upload_id", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("part_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default="open"),
        sa.Column("slot_held", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("job_state", sa.Text()),
        sa.Column("progress_percent", postgresql.REAL(), nullable=False, server_default="0"),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "renditions",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
        sa.Column("error_message", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("queued_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "state IN ('open', 'completed', 'aborted')", name="ck_video_uploads_state"
        ),
        sa.CheckConstraint(
            "job_state IS NULL OR job_state IN ('queued', 'running', 'succeeded', 'failed')",
            name="ck_video_uploads_job_state",
        ),
        sa.CheckConstraint("slot_held IN (0, 1)", name="ck_video_uploads_slot"),
        schema=S,
    )
    op.create_index(
        "uq_video_uploads_video_key",
        "video_uploads",
        ["video_id", "idempotency_key"],
        unique=True,
        schema=S,
    )
    op.create_index(
        "ix_video_uploads_video_created",
        "video_uploads",
        ["video_id", sa.text("created_at DESC")],
        schema=S,
    )
    op.create_index(
        "ix_video_uploads_open",
        "video_uploads",
        ["created_at"],
        postgresql_where=sa.text("state = 'open'"),
        schema=S,
    )
    op.create_table(
        "transcode_slots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.CheckConstraint("used >= 0", name="ck_transcode_slots_used"),
        schema=S,
    )
    op.execute(f"INSERT INTO {S}.transcode_slots (id, used) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("transcode_slots", schema=S)
    op.drop_table("video_uploads", schema=S)
