"""Every SQL statement of the video pipeline: uploads, their jobs and the queue's slots."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_course.models import videos
from svc_course.upload_models import transcode_slots, video_uploads

SLOT_ROW = 1


async def take_slot(conn: AsyncConnection, limit: int) -> bool:
    """One queue slot, if fewer than `limit` are held; atomic under concurrency (row lock)."""
    stmt = (
        update(transcode_slots)
        .where(transcode_slots.c.id == SLOT_ROW, transcode_slots.c.used < limit)
        .values(used=transcode_slots.c.used + 1)
        .returning(transcode_slots.c.used)
    )
    return (await conn.execute(stmt)).first() is not None


async def release_slot(conn: AsyncConnection, upload_id: uuid.UUID) -> bool:
    """Give back the upload's slot once (slot_held guards against a double release)."""
    held = await conn.execute(
        update(video_uploads)
        .where(video_uploads.c.id == upload_id, video_uploads.c.slot_held == 1)
        .values(slot_held=0)
        .returning(video_uploads.c.id)
    )
    if held.first() is None:
        return False
    await conn.execute(
        update(transcode_slots)
        .where(transcode_slots.c.id == SLOT_ROW)
        .values(used=transcode_slots.c.used - 1)
    )
    return True


async def slots_used(conn: AsyncConnection) -> int:
    stmt = select(transcode_slots.c.used).where(transcode_slots.c.id == SLOT_ROW)
    return int((await conn.execute(stmt)).scalar_one())


async def upload_by_key(conn: AsyncConnection, video_id: uuid.UUID, key: str) -> Row | None:
    stmt = select(video_uploads).where(
        video_uploads.c.video_id == video_id, video_uploads.c.idempotency_key == key
    )
    return (await conn.execute(stmt)).first()


async def upload_by_id(
    conn: AsyncConnection, upload_id: uuid.UUID, *, lock: bool = False
) -> Row | None:
    stmt = select(video_uploads).where(video_uploads.c.id == upload_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first()


async def latest_upload(conn: AsyncConnection, video_id: uuid.UUID) -> Row | None:
    """The newest upload that got past its open phase, else the newest at all."""
    stmt = (
        select(video_uploads)
        .where(video_uploads.c.video_id == video_id)
        .order_by((video_uploads.c.job_state.is_(None)).asc(), video_uploads.c.created_at.desc())
        .limit(1)
    )
    return (await conn.execute(stmt)).first()


async def open_upload_of(conn: AsyncConnection, video_id: uuid.UUID) -> Row | None:
    stmt = select(video_uploads.c.id).where(
        video_uploads.c.video_id == video_id, video_uploads.c.state == "open"
    )
    return (await conn.execute(stmt)).first()


async def insert_upload(conn: AsyncConnection, values: dict[str, Any]) -> Row:
    stmt = video_uploads.insert().values(**values).returning(*video_uploads.c)
    return (await conn.execute(stmt)).one()


async def update_upload(conn: AsyncConnection, upload_id: uuid.UUID, **values: Any) -> Row:
    stmt = (
        update(video_uploads)
        .where(video_uploads.c.id == upload_id)
        .values(**values, updated_at=func.now())
        .returning(*video_uploads.c)
    )
    return (await conn.execute(stmt)).one()


async def set_video_state(conn: AsyncConnection, video_id: uuid.UUID, state: str) -> Row | None:
    stmt = (
        update(videos)
        .where(videos.c.id == video_id)
        .values(state=state, updated_at=func.now())
        .returning(videos.c.id, videos.c.course_id, videos.c.state, videos.c.duration_seconds)
    )
    return (await conn.execute(stmt)).first()


async def abandoned_uploads(conn: AsyncConnection, older_than: datetime, limit: int) -> list[Row]:
    stmt = (
        select(video_uploads)
        .where(video_uploads.c.state == "open", video_uploads.c.created_at < older_than)
        .order_by(video_uploads.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(stmt)).all())


async def lock_video(conn: AsyncConnection, video_id: uuid.UUID) -> Row | None:
    stmt = select(videos).where(videos.c.id == video_id).with_for_update()
    return (await conn.execute(stmt)).first()


async def finish_video(
    conn: AsyncConnection, video_id: uuid.UUID, state: str, duration_seconds: int | None
) -> Row:
    values: dict[str, Any] = {"state": state, "updated_at": func.now()}
    if duration_seconds is not None:
        values["duration_seconds"] = duration_seconds
    stmt = update(videos).where(videos.c.id == video_id).values(**values).returning(*videos.c)
    return (await conn.execute(stmt)).one()
