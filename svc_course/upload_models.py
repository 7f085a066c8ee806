"""Tables of the video pipeline (uploads, transcoding jobs, the queue's slot counter), in the
same `courses` schema and MetaData as the rest of svc_course."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, REAL

from svc_course.models import metadata

UPLOAD_STATES = ("open", "completed", "aborted")
JOB_STATES = ("queued", "running", "succeeded", "failed")

# One row per upload. The job columns describe the transcoding of a completed upload; a
# queue slot is held from StartVideoUpload until the job ends or the upload is aborted
# (slot_held), so the queue bound counts uploads that will become jobs, not only jobs.
video_uploads = Table(
    "video_uploads",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("video_id", Uuid, ForeignKey("videos.id", ondelete="CASCADE"), nullable=False),
    Column("course_id", Uuid, nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("object_key", Text, nullable=False),
    Column("s3_upload_id", Text, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("part_size_bytes", BigInteger, nullable=False),
    Column("state", Text, nullable=False, server_default="open"),
    Column("slot_held", Integer, nullable=False, server_default=text("1")),
    Column("job_state", Text),
    Column("progress_percent", REAL, nullable=False, server_default=text("0")),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("renditions", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("error_message", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("queued_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("state IN ('open', 'completed', 'aborted')", name="ck_video_uploads_state"),
    CheckConstraint(
        "job_state IS NULL OR job_state IN ('queued', 'running', 'succeeded', 'failed')",
        name="ck_video_uploads_job_state",
    ),
    CheckConstraint("slot_held IN (0, 1)", name="ck_video_uploads_slot"),
    Index("uq_video_uploads_video_key", "video_id", "idempotency_key", unique=True),
    Index("ix_video_uploads_video_created", "video_id", text("created_at DESC")),
    # The sweeper's scan: open uploads by age.
    Index("ix_video_uploads_open", "created_at", postgresql_where=text("state = 'open'")),
)

# The queue bound (M4): one row; `used` counts held slots. Taken with a conditional UPDATE, so
# concurrent StartVideoUpload calls never overshoot, whichever replica serves them.
transcode_slots = Table(
    "transcode_slots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("used", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("used >= 0", name="ck_transcode_slots_used"),
)
