"""Every SQL statement of the catalog, videos and enrollments (search lives in
`search_repository`, progress in `progress_repository`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_course.models import courses, enrollments, videos

COURSE_COLUMNS = (
    courses.c.id,
    courses.c.instructor_id,
    courses.c.title,
    courses.c.description,
    courses.c.category,
    courses.c.tags,
    courses.c.level,
    courses.c.language,
    courses.c.capacity,
    courses.c.state,
    courses.c.enrollment_count,
    courses.c.video_count,
    courses.c.total_duration_seconds,
    courses.c.created_at,
    courses.c.updated_at,
    courses.c.published_at,
)
VIDEO_COLUMNS = tuple(c for c in videos.c if c.name != "idempotency_key")
ENROLLMENT_COLUMNS = tuple(c for c in enrollments.c if c.name != "updated_at")


async def _one(conn: AsyncConnection, stmt: Any) -> Row | None:
    return (await conn.execute(stmt)).first()


# Courses


async def insert_course(
    conn: AsyncConnection, instructor_id: uuid.UUID, key: str, values: dict[str, Any]
) -> Row | None:
    """The new draft course, or None when this instructor already used the key."""
    stmt = (
        pg_insert(courses)
        .values(instructor_id=instructor_id, idempotency_key=key, **values)
        .on_conflict_do_nothing(constraint="uq_courses_instructor_key")
        .returning(*COURSE_COLUMNS)
    )
    return await _one(conn, stmt)


async def course_by_key(conn: AsyncConnection, instructor_id: uuid.UUID, key: str) -> Row | None:
    stmt = select(*COURSE_COLUMNS).where(
        courses.c.instructor_id == instructor_id, courses.c.idempotency_key == key
    )
    return await _one(conn, stmt)


async def course_by_id(conn: AsyncConnection, course_id: uuid.UUID) -> Row | None:
    return await _one(conn, select(*COURSE_COLUMNS).where(courses.c.id == course_id))


async def course_for_update(conn: AsyncConnection, course_id: uuid.UUID) -> Row | None:
    """The course, row-locked: its writers (edits, videos, counters) serialize on it."""
    stmt = select(*COURSE_COLUMNS).where(courses.c.id == course_id).with_for_update()
    return await _one(conn, stmt)


async def update_course(
    conn: AsyncConnection, course_id: uuid.UUID, values: dict[str, Any]
) -> Row | None:
    stmt = (
        update(courses)
        .where(courses.c.id == course_id)
        .values(**values, updated_at=func.now())
        .returning(*COURSE_COLUMNS)
    )
    return await _one(conn, stmt)


async def set_course_state(conn: AsyncConnection, course_id: uuid.UUID, state: str) -> Row | None:
    values: dict[str, Any] = {"state": state, "updated_at": func.now()}
    if state == "published":
        values["published_at"] = func.coalesce(courses.c.published_at, func.now())
    stmt = update(courses).where(courses.c.id == course_id).values(**values)
    return await _one(conn, stmt.returning(*COURSE_COLUMNS))


async def list_instructor_courses(
    conn: AsyncConnection,
    instructor_id: uuid.UUID,
    states: Sequence[str] | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Row]:
    """Newest first, keyset-paged on ix_courses_instructor."""
    stmt = (
        select(*COURSE_COLUMNS)
        .where(courses.c.instructor_id == instructor_id)
        .order_by(courses.c.created_at.desc(), courses.c.id.desc())
        .limit(limit)
    )
    if states is not None:
        stmt = stmt.where(courses.c.state.in_(states))
    if after is not None:
        stmt = stmt.where(tuple_(courses.c.created_at, courses.c.id) < tuple_(*after))
    return list((await conn.execute(stmt)).all())


async def free_seat(conn: AsyncConnection, course_id: uuid.UUID) -> Row | None:
    stmt = (
        update(courses)
        .where(courses.c.id == course_id)
        .values(enrollment_count=courses.c.enrollment_count - 1)
        .returning(courses.c.instructor_id)
    )
    return await _one(conn, stmt)


async def add_video_totals(
    conn: AsyncConnection, course_id: uuid.UUID, videos_delta: int, seconds_delta: int
) -> None:
    await conn.execute(
        update(courses)
        .where(courses.c.id == course_id)
        .values(
            video_count=courses.c.video_count + videos_delta,
            total_duration_seconds=courses.c.total_duration_seconds + seconds_delta,
            updated_at=func.now(),
        )
    )


# Videos


async def video_by_id(conn: AsyncConnection, video_id: uuid.UUID) -> Row | None:
    return await _one(conn, select(*VIDEO_COLUMNS).where(videos.c.id == video_id))


async def video_for_update(conn: AsyncConnection, video_id: uuid.UUID) -> Row | None:
    stmt = select(*VIDEO_COLUMNS).where(videos.c.id == video_id).with_for_update()
    return await _one(conn, stmt)


async def video_by_key(conn: AsyncConnection, course_id: uuid.UUID, key: str) -> Row | None:
    stmt = select(*VIDEO_COLUMNS).where(
        videos.c.course_id == course_id, videos.c.idempotency_key == key
    )
    return await _one(conn, stmt)


async def shift_positions(
    conn: AsyncConnection, course_id: uuid.UUID, low: int, high: int | None, delta: int
) -> list[uuid.UUID]:
    """Move the videos at positions low..high (open-ended when high is None) by delta; the
    ids moved, so their cached copies can be dropped."""
    where = [videos.c.course_id == course_id, videos.c.position >= low]
    if high is not None:
        where.append(videos.c.position <= high)
    stmt = update(videos).where(*where).values(position=videos.c.position + delta)
    return list((await conn.execute(stmt.returning(videos.c.id))).scalars())


async def insert_video(
    conn: AsyncConnection, course_id: uuid.UUID, key: str, values: dict[str, Any]
) -> Row:
    stmt = (
        pg_insert(videos)
        .values(course_id=course_id, idempotency_key=key, **values)
        .returning(*VIDEO_COLUMNS)
    )
    row = await _one(conn, stmt)
    assert row is not None
    return row


async def update_video(
    conn: AsyncConnection, video_id: uuid.UUID, values: dict[str, Any]
) -> Row | None:
    stmt = (
        update(videos)
        .where(videos.c.id == video_id)
        .values(**values, updated_at=func.now())
        .returning(*VIDEO_COLUMNS)
    )
    return await _one(conn, stmt)


async def list_videos(
    conn: AsyncConnection, course_id: uuid.UUID, limit: int, after: tuple[int, uuid.UUID] | None
) -> list[Row]:
    """In course order, keyset-paged on ix_videos_course_position."""
    stmt = (
        select(*VIDEO_COLUMNS)
        .where(videos.c.course_id == course_id)
        .order_by(videos.c.position, videos.c.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(tuple_(videos.c.position, videos.c.id) > tuple_(*after))
    return list((await conn.execute(stmt)).all())


# Enrollments


async def enrollment_of(
    conn: AsyncConnection, user_id: uuid.UUID, course_id: uuid.UUID
) -> Row | None:
    stmt = select(*ENROLLMENT_COLUMNS).where(
        enrollments.c.user_id == user_id, enrollments.c.course_id == course_id
    )
    return await _one(conn, stmt)


_WANTED_PAIRS = select(
    func.unnest(bindparam("users", type_=ARRAY(Uuid))).label("user_id"),
    func.unnest(bindparam("courses", type_=ARRAY(Uuid))).label("course_id"),
).subquery("wanted")
# One statement text for any number of pairs (arrays, not an expanding IN).
_ENROLLMENTS_OF = select(*ENROLLMENT_COLUMNS).join_from(
    enrollments,
    _WANTED_PAIRS,
    and_(
        enrollments.c.user_id == _WANTED_PAIRS.c.user_id,
        enrollments.c.course_id == _WANTED_PAIRS.c.course_id,
    ),
)


async def enrollments_of(
    conn: AsyncConnection, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> Sequence[Row]:
    """The enrollments of many (course, user) pairs in one statement; absent pairs have none."""
    params = {"courses": [c for c, _ in pairs], "users": [u for _, u in pairs]}
    return (await conn.execute(_ENROLLMENTS_OF, params)).all()


async def enrollment_by_key(conn: AsyncConnection, user_id: uuid.UUID, key: str) -> Row | None:
    stmt = select(*ENROLLMENT_COLUMNS).where(
        enrollments.c.user_id == user_id, enrollments.c.idempotency_key == key
    )
    return await _one(conn, stmt)


def _enroll_statement() -> Any:
    """Enrollment row and seat in ONE statement (one round trip fewer, and the course row lock
    is held one round trip shorter, in the hottest write). Both CTEs see the same snapshot;
    the seat UPDATE still waits for and re-checks a concurrent writer's committed count, so
    capacity stays exact. It always returns one row: enrollment columns NULL when one already
    holds a seat, `seat_instructor_id` NULL when no seat was taken; the caller rolls back
    unless both are there."""
    t = enrollments
    new = pg_insert(t).values(
        user_id=bindparam("user_id", type_=Uuid),
        course_id=bindparam("course_id", type_=Uuid),
        idempotency_key=bindparam("key", type_=Text),
    )
    started = (
        new.on_conflict_do_update(
            constraint="uq_enrollments_user_course",
            set_={
                "state": case((t.c.completed_at.is_not(None), "completed"), else_="active"),
                "enrolled_at": func.now(),
                "unenrolled_at": None,
                "idempotency_key": new.excluded.idempotency_key,
                "updated_at": func.now(),
            },
            where=t.c.state == "unenrolled",
        )
        .returning(*ENROLLMENT_COLUMNS, literal_column("(xmax = 0)").label("inserted"))
        .cte("started")
    )
    seat = (
        update(courses)
        .where(
            courses.c.id == bindparam("course_id", type_=Uuid),
            courses.c.state == "published",
            or_(courses.c.capacity == 0, courses.c.enrollment_count < courses.c.capacity),
        )
        .values(enrollment_count=courses.c.enrollment_count + 1)
        .returning(courses.c.instructor_id.label("seat_instructor_id"))
        .cte("seat")
    )
    one = select(literal_column("1").label("one")).subquery("one")
    return select(started, seat.c.seat_instructor_id).select_from(
        one.outerjoin(started, true()).outerjoin(seat, true())
    )


_ENROLL = _enroll_statement()


async def enroll_with_seat(
    conn: AsyncConnection, user_id: uuid.UUID, course_id: uuid.UUID, key: str | None
) -> Row:
    """Start (or reactivate) the enrollment and take a seat; see `_enroll_statement`."""
    result = await conn.execute(_ENROLL, {"user_id": user_id, "course_id": course_id, "key": key})
    return result.one()


async def end_enrollment(
    conn: AsyncConnection, user_id: uuid.UUID, course_id: uuid.UUID
) -> Row | None:
    """The enrollment now UNENROLLED, or None when it was not holding a seat."""
    t = enrollments
    stmt = (
        update(t)
        .where(t.c.user_id == user_id, t.c.course_id == course_id, t.c.state != "unenrolled")
        .values(state="unenrolled", unenrolled_at=func.now(), updated_at=func.now())
        .returning(*ENROLLMENT_COLUMNS)
    )
    return await _one(conn, stmt)


async def list_enrollments(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID | None = None,
    course_id: uuid.UUID | None = None,
    states: Sequence[str],
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Row]:
    """Newest first, by user (ix_enrollments_user_enrolled) or by course
    (ix_enrollments_course_enrolled), keyset-paged."""
    t = enrollments
    stmt = select(*ENROLLMENT_COLUMNS).where(t.c.state.in_(states))
    if user_id is not None:
        stmt = stmt.where(t.c.user_id == user_id)
    if course_id is not None:
        stmt = stmt.where(t.c.course_id == course_id)
    if after is not None:
        stmt = stmt.where(tuple_(t.c.enrolled_at, t.c.id) < tuple_(*after))
    stmt = stmt.order_by(t.c.enrolled_at.desc(), t.c.id.desc()).limit(limit)
    return list((await conn.execute(stmt)).all())


async def completed_enrollments(
    conn: AsyncConnection, course_id: uuid.UUID, since: datetime, limit: int
) -> list[Row]:
    """A course's completions since a time, on the partial index ix_enrollments_completed
    (M2: completion queries never scan the far larger set of active enrollments)."""
    t = enrollments
    stmt = (
        select(*ENROLLMENT_COLUMNS)
        .where(and_(t.c.course_id == course_id, t.c.state == "completed"))
        .where(t.c.completed_at >= since)
        .order_by(t.c.completed_at)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


# Seeding (python -m svc_course.seed): many rows per statement, ids chosen by the caller.


async def insert_many(conn: AsyncConnection, table: str, rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT per call (SQLAlchemy batches executemany into VALUES lists)."""
    target = {"courses": courses, "videos": videos, "enrollments": enrollments}[table]
    if rows:
        await conn.execute(target.insert(), rows)
