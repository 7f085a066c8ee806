"""Alembic steps for the outbox tables every service's schema holds (`mesh.outbox`).

Each service's migration history calls these with its own schema, so the outbox's shape is
written once: version 2 adds per-aggregate sequence numbers, attempts with back-off, and the
dead-letter and sequence tables; version 3 the trace context. A later change to the outbox
gets a new pair of functions; these stay as they are, since applied migrations must keep
meaning what they meant. A new service's first migration calls `create_outbox_tables`
(version 2), then `upgrade_to_v3`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def upgrade_to_v2(S: str) -> None:
    """Per-aggregate sequence, attempts with back-off, and the dead-letter table."""
    op.add_column(
        "outbox",
        sa.Column("aggregate_id", sa.Text(), nullable=False, server_default=""),
        schema=S,
    )
    op.add_column(
        "outbox",
        sa.Column("aggregate_seq", sa.BigInteger(), nullable=False, server_default="0"),
        schema=S,
    )
    op.add_column(
        "outbox", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"), schema=S
    )
    op.add_column("outbox", sa.Column("last_error", sa.Text()), schema=S)
    op.add_column(
        "outbox",
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        schema=S,
    )
    op.create_index("ix_outbox_aggregate", "outbox", ["aggregate_id", "id"], schema=S)
    op.create_table(
        "outbox_dead_letter",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("aggregate_id", sa.Text(), nullable=False),
        sa.Column("aggregate_seq", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column(
            "dead_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=S,
    )
    op.create_table(
        "outbox_sequence",
        sa.Column("aggregate_id", sa.Text(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        schema=S,
    )


def downgrade_from_v2(S: str) -> None:
    op.drop_table("outbox_sequence", schema=S)
    op.drop_table("outbox_dead_letter", schema=S)
    op.drop_index("ix_outbox_aggregate", table_name="outbox", schema=S)
    for column in ("next_attempt_at", "last_error", "attempts", "aggregate_seq", "aggregate_id"):
        op.drop_column("outbox", column, schema=S)


def create_outbox_tables(S: str) -> None:
    """The outbox as it is now (version 2), for a schema that has none yet."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=S,
    )
    upgrade_to_v2(S)


def drop_outbox_tables(S: str) -> None:
    downgrade_from_v2(S)
    op.drop_table("outbox", schema=S)


def upgrade_to_v3(S: str) -> None:
    """The W3C traceparent of the transaction that wrote the event (mesh.tracing); nullable,
    since most events are written outside a sampled trace."""
    op.add_column("outbox", sa.Column("traceparent", sa.Text()), schema=S)


def downgrade_from_v3(S: str) -> None:
    op.drop_column("outbox", "traceparent", schema=S)
