"""svc_live's tables, all in the `live` schema. Room state (presence, history, polls,
questions, hands) lives in the state Valkey, not here: it changes per event."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    Uuid,
    func,
    text,
)

from mesh.outbox import outbox_table

SCHEMA = "live"
metadata = MetaData(schema=SCHEMA)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("course_id", Uuid, nullable=False),
    Column("instructor_id", Uuid, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    # elearn.live.v1.SessionState numbers.
    Column("state", SmallInteger, nullable=False),
    Column("scheduled_start_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("max_participants", Integer, nullable=False),
    Column("last_sequence", BigInteger, nullable=False, server_default="0"),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # ListSessions pages a course's sessions by (scheduled start, id).
    Index("ix_sessions_course_start", "course_id", "scheduled_start_at", "id"),
    # StartSession counts live sessions platform-wide under a lock.
    Index("ix_sessions_live", "state", postgresql_where=text("state = 2")),
)

outbox = outbox_table(metadata)
