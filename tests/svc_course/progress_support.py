"""Rows and waits the progress tests share.

Courses, videos and enrollments are inserted with SQL: these tests are about progress, and a
row written here is exactly what the catalog's write paths store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg

T = TypeVar("T")


@dataclass(frozen=True)
class CourseRows:
    course_id: str
    instructor_id: str
    video_ids: list[str]
    durations_s: list[int]


def make_course(
    sql: psycopg.Connection, durations_s: list[int], instructor_id: str | None = None
) -> CourseRows:
    instructor = instructor_id or str(uuid.uuid4())
    row = sql.execute(
        "INSERT INTO courses.courses (instructor_id, title, category, language, state,"
        " video_count, total_duration_seconds)"
        " VALUES (%s, %s, 'testing', 'en', 'published', %s, %s) RETURNING id",
        (instructor, f"Progress {uuid.uuid4().hex[:8]}", len(durations_s), sum(durations_s)),
    ).fetchone()
    assert row is not None
    course_id = str(row[0])
    videos = []
    for position, duration in enumerate(durations_s, start=1):
        v = sql.execute(
            "INSERT INTO courses.videos (course_id, title, position, duration_seconds)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (course_id, f"Part {position}", position, duration),
        ).fetchone()
        assert v is not None
        videos.append(str(v[0]))
    return CourseRows(course_id, instructor, videos, durations_s)


def enroll(sql: psycopg.Connection, user_ids: list[str], course_id: str) -> None:
    with sql.cursor() as cur:
        cur.executemany(
            "INSERT INTO courses.enrollments (user_id, course_id) VALUES (%s, %s)",
            [(u, course_id) for u in user_ids],
        )


def progress_rows(sql: psycopg.Connection, video_ids: list[str]) -> dict[tuple[str, str], tuple]:
    """(user, video) -> (position_ms, watched_ms, furthest_ms, completed) from Postgres."""
    rows = sql.execute(
        "SELECT user_id, video_id, position_ms, watched_ms, furthest_ms,"
        " completed_at IS NOT NULL FROM courses.video_progress WHERE video_id = ANY(%s)",
        ([uuid.UUID(v) for v in video_ids],),
    ).fetchall()
    return {(str(r[0]), str(r[1])): tuple(r[2:]) for r in rows}


async def eventually(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)
