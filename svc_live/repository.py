"""Every SQL statement of svc_live."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_live.models import sessions

# Session states (elearn.live.v1.SessionState numbers).
SCHEDULED, LIVE, ENDED = 1, 2, 3
# StartSession serialises on this advisory lock so two starts cannot both see 99 live
# sessions and both become the 100th.
_LIVE_CAP_LOCK = 0x6C697665  # "live"


async def insert_session(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    """Insert, or return the row an earlier call with the same idempotency key created."""
    stmt = (
        insert(sessions)
        .values(**values, state=SCHEDULED)
        .on_conflict_do_nothing(index_elements=[sessions.c.idempotency_key])
        .returning(*sessions.c)
    )
    row = (await conn.execute(stmt)).first()
    if row is not None:
        return row
    existing = await conn.execute(
        select(*sessions.c).where(sessions.c.idempotency_key == values["idempotency_key"])
    )
    return existing.one()


async def get_session(conn: AsyncConnection, session_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(*sessions.c).where(sessions.c.id == session_id))).first()


async def list_sessions(
    conn: AsyncConnection,
    course_id: uuid.UUID,
    state: int,
    size: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Row[Any]]:
    """One page plus one row (so the caller knows whether another page follows)."""
    stmt = select(*sessions.c).where(sessions.c.course_id == course_id)
    if state:
        stmt = stmt.where(sessions.c.state == state)
    if after is not None:
        stmt = stmt.where(
            or_(
                sessions.c.scheduled_start_at > after[0],
                and_(sessions.c.scheduled_start_at == after[0], sessions.c.id > after[1]),
            )
        )
    stmt = stmt.order_by(sessions.c.scheduled_start_at, sessions.c.id).limit(size + 1)
    return list((await conn.execute(stmt)).all())


async def lock_live_cap(conn: AsyncConnection) -> int:
    """Take the start lock for this transaction; returns the number of live sessions."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LIVE_CAP_LOCK})
    stmt = select(func.count()).select_from(sessions).where(sessions.c.state == LIVE)
    return int((await conn.execute(stmt)).scalar_one())


async def lock_session(conn: AsyncConnection, session_id: uuid.UUID) -> Row[Any] | None:
    stmt = select(*sessions.c).where(sessions.c.id == session_id).with_for_update()
    return (await conn.execute(stmt)).first()


async def set_state(
    conn: AsyncConnection, session_id: uuid.UUID, state: int, last_sequence: int = 0
) -> Row[Any]:
    values: dict[str, Any] = {"state": state}
    if state == LIVE:
        values["started_at"] = func.now()
    if state == ENDED:
        values["ended_at"] = func.now()
        values["last_sequence"] = last_sequence
    stmt = update(sessions).where(sessions.c.id == session_id).values(**values)
    return (await conn.execute(stmt.returning(*sessions.c))).one()
