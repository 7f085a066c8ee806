"""The outbox's tables (mesh.outbox): defined apart from the relay so each stays short."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
)


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table in a service's schema (the metadata's schema), plus the two tables the
    relay needs beside it: `outbox_dead_letter` and `outbox_sequence`."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # "" for events about no aggregate; their seq is 0.
        Column("aggregate_id", Text, nullable=False, server_default=""),
        Column("aggregate_seq", BigInteger, nullable=False, server_default="0"),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        Column(
            "next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()
        ),
        # The W3C traceparent of the writing transaction's span when its trace is sampled: the
        # relay puts it in the message headers, so the consumer continues that trace.
        Column("traceparent", Text),
        # The relay holds back a row while an earlier row of its aggregate waits to be retried.
        Index("ix_outbox_aggregate", "aggregate_id", "id"),
    )
    Table(
        "outbox_dead_letter",
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column("event_id", Uuid, nullable=False),
        Column("subject", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("aggregate_id", Text, nullable=False),
        Column("aggregate_seq", BigInteger, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("last_error", Text, nullable=False),
        Column("dead_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Table(
        "outbox_sequence",
        metadata,
        Column("aggregate_id", Text, primary_key=True),
        Column("last_seq", BigInteger, nullable=False),
    )
    return outbox
