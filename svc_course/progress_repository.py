"""Every SQL statement of video progress (tables in the `courses` schema).

The flush path is two statements per batch whatever its size: one upsert over arrays and one
enrollment update for the batch's (viewer, course) pairs. Statements are plain SQL because
`INSERT … SELECT FROM unnest(…)` and `UPDATE … FROM` a self-join (to read a row's value from
before the update) say exactly what Postgres should do.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

_VIDEO = text("SELECT course_id, duration_seconds FROM videos WHERE id = :video_id")

_ENROLLED = text(
    "SELECT 1 FROM enrollments WHERE user_id = :user_id AND course_id = :course_id"
    " AND state IN ('active', 'completed')"
)

_INSTRUCTOR = text("SELECT instructor_id FROM courses WHERE id = :course_id")

_ROW = text(
    "SELECT position_ms, watched_ms, furthest_ms, client_time, completed_at, updated_at"
    " FROM video_progress WHERE user_id = :user_id AND video_id = :video_id"
)

# A viewer's flushed rows in one course, to seed Valkey (index ix_video_progress_user_course).
_VIEWER_COURSE = text(
    "SELECT video_id, position_ms, watched_ms, furthest_ms, client_time, completed_at, updated_at"
    " FROM video_progress WHERE user_id = :user_id AND course_id = :course_id"
)

# Every video of a course in course order, with the viewer's flushed progress where there is
# some; a course has at most a few hundred videos, so one page of them is one read.
_COURSE = text(
    "SELECT v.id AS video_id, v.duration_seconds, p.position_ms, p.watched_ms, p.furthest_ms,"
    " p.client_time, p.completed_at, p.updated_at"
    " FROM videos v LEFT JOIN video_progress p"
    " ON p.video_id = v.id AND p.user_id = :user_id"
    " WHERE v.course_id = :course_id ORDER BY v.position, v.id"
)

_VIDEO_COUNT = text("SELECT video_count FROM courses WHERE id = :course_id")

# Watched and furthest never decrease; position follows the newest client time; completion,
# once recorded, stays. Re-applying a batch (a re-flush after a crash) changes nothing.
_UPSERT = text(
    """
INSERT INTO video_progress AS vp (user_id, video_id, course_id, position_ms, watched_ms,
    furthest_ms, client_time, completed_at, updated_at)
SELECT * FROM unnest(CAST(:user_ids AS uuid[]), CAST(:video_ids AS uuid[]),
    CAST(:course_ids AS uuid[]), CAST(:positions AS bigint[]), CAST(:watched AS bigint[]),
    CAST(:furthest AS bigint[]), CAST(:client_times AS timestamptz[]),
    CAST(:completed_ats AS timestamptz[]), CAST(:updated_ats AS timestamptz[]))
ON CONFLICT (user_id, video_id) DO UPDATE SET
    position_ms = CASE WHEN EXCLUDED.client_time >= vp.client_time
        THEN EXCLUDED.position_ms ELSE vp.position_ms END,
    client_time = GREATEST(vp.client_time, EXCLUDED.client_time),
    watched_ms = GREATEST(vp.watched_ms, EXCLUDED.watched_ms),
    furthest_ms = GREATEST(vp.furthest_ms, EXCLUDED.furthest_ms),
    completed_at = COALESCE(vp.completed_at, EXCLUDED.completed_at),
    updated_at = GREATEST(vp.updated_at, EXCLUDED.updated_at)
RETURNING user_id, video_id, course_id, position_ms, watched_ms, furthest_ms, client_time,
    completed_at
"""
)

# Progress percent = completed videos / the course's videos, for the batch's pairs at once.
# Completion (every video completed) is set once and never cleared; `old` is the row as it was
# before this statement, so `newly_completed` is true exactly once per enrollment.
_ENROLLMENTS = text(
    """
WITH pairs AS (
    SELECT DISTINCT u AS user_id, c AS course_id
    FROM unnest(CAST(:user_ids AS uuid[]), CAST(:course_ids AS uuid[])) AS t(u, c)
), done AS (
    SELECT pairs.user_id, pairs.course_id, co.video_count, co.instructor_id,
        (SELECT count(*) FROM video_progress p WHERE p.user_id = pairs.user_id
            AND p.course_id = pairs.course_id AND p.completed_at IS NOT NULL) AS completed
    FROM pairs JOIN courses co ON co.id = pairs.course_id
)
UPDATE enrollments e SET
    progress_percent = CASE WHEN old.completed_at IS NOT NULL THEN 100
        ELSE LEAST(100, 100.0 * done.completed / GREATEST(done.video_count, 1)) END,
    completed_at = CASE WHEN old.completed_at IS NULL AND done.video_count > 0
        AND done.completed >= done.video_count THEN now() ELSE old.completed_at END,
    state = CASE WHEN old.state = 'active' AND done.video_count > 0
        AND done.completed >= done.video_count THEN 'completed' ELSE old.state END
FROM done, enrollments old
WHERE e.user_id = done.user_id AND e.course_id = done.course_id AND old.id = e.id
    AND e.state IN ('active', 'completed')
RETURNING e.id, e.user_id, e.course_id, e.progress_percent, done.instructor_id,
    (old.completed_at IS NULL AND e.completed_at IS NOT NULL) AS newly_completed
"""
)


@dataclass(frozen=True, slots=True)
class Batch:
    """One flush batch as parallel arrays, one element per (viewer, video)."""

    user_ids: list[uuid.UUID]
    video_ids: list[uuid.UUID]
    course_ids: list[uuid.UUID]
    positions: list[int]
    watched: list[int]
    furthest: list[int]
    client_times: list[datetime]
    completed_ats: list[datetime | None]
    updated_ats: list[datetime]


async def video(conn: AsyncConnection, video_id: uuid.UUID) -> Row | None:
    return (await conn.execute(_VIDEO, {"video_id": video_id})).first()


async def enrolled(conn: AsyncConnection, user_id: uuid.UUID, course_id: uuid.UUID) -> bool:
    params = {"user_id": user_id, "course_id": course_id}
    return (await conn.execute(_ENROLLED, params)).first() is not None


async def instructor(conn: AsyncConnection, course_id: uuid.UUID) -> uuid.UUID | None:
    row = (await conn.execute(_INSTRUCTOR, {"course_id": course_id})).first()
    return None if row is None else row.instructor_id


async def progress_row(
    conn: AsyncConnection, user_id: uuid.UUID, video_id: uuid.UUID
) -> Row | None:
    return (await conn.execute(_ROW, {"user_id": user_id, "video_id": video_id})).first()


async def viewer_course_rows(
    conn: AsyncConnection, user_id: uuid.UUID, course_id: uuid.UUID
) -> Sequence[Row]:
    params = {"user_id": user_id, "course_id": course_id}
    return (await conn.execute(_VIEWER_COURSE, params)).all()


async def course_progress(
    conn: AsyncConnection, user_id: uuid.UUID, course_id: uuid.UUID
) -> Sequence[Row]:
    return (await conn.execute(_COURSE, {"user_id": user_id, "course_id": course_id})).all()


async def video_count(conn: AsyncConnection, course_id: uuid.UUID) -> int | None:
    row = (await conn.execute(_VIDEO_COUNT, {"course_id": course_id})).first()
    return None if row is None else int(row.video_count)


async def upsert(conn: AsyncConnection, batch: Batch) -> Sequence[Row]:
    """One statement for the whole batch; returns the rows as stored after the merge."""
    return (await conn.execute(_UPSERT, _params(batch))).all()


async def refresh_enrollments(
    conn: AsyncConnection, user_ids: list[uuid.UUID], course_ids: list[uuid.UUID]
) -> Sequence[Row]:
    params = {"user_ids": user_ids, "course_ids": course_ids}
    return (await conn.execute(_ENROLLMENTS, params)).all()


def _params(batch: Batch) -> dict[str, object]:
    return {f.name: getattr(batch, f.name) for f in fields(batch)}
