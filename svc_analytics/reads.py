"""The analytics read SQL, each call one statement: the dashboard page, one course's row, the
at-risk page, the course detail, and the courses the idle refresh recomputes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_analytics.repository import AT_RISK, STATS_COLUMNS

# The dashboard: one statement, an index range read of precomputed rows, whatever the count.
# It runs on psycopg's own connection (%(name)s placeholders; % doubled). ENTRY_COLUMNS read the
# serialized entries (see svc_analytics.entries); a row whose entry is NULL (written before the
# column existed, until the start-up refresh) is read again with STATS_COLUMNS. The id as text
# and created_at in microseconds since the epoch close each row: the page token's start key.
# ORDER BY names the table's columns (c.): a bare course_id is the text output column, a sort on
# text that the index cannot provide.
ENTRY_COLUMNS = "stats_entry"
_DASHBOARD = """
SELECT {columns}, c.course_id::text, (extract(epoch FROM created_at) * 1000000)::bigint
FROM courses c WHERE instructor_id = %(instructor)s{after}
ORDER BY c.created_at DESC, c.course_id DESC LIMIT %(limit)s
"""
_AFTER = "\n  AND (c.created_at, c.course_id) < (%(created_at)s, %(course_id)s)"
_DASHBOARD_SQL = {
    (columns, paged): _DASHBOARD.format(columns=columns, after=_AFTER if paged else "")
    for columns in (ENTRY_COLUMNS, STATS_COLUMNS.replace("%", "%%"))
    for paged in (False, True)
}


async def dashboard(
    conn: psycopg.AsyncConnection[Any],
    instructor: UUID,
    limit: int,
    after: tuple[datetime, UUID] | None,
    *,
    entries: bool = True,
) -> list[tuple[Any, ...]]:
    """Rows of the entry (or, entries=False, STATS_COLUMNS) then the id as text and
    created_at in µs, as tuples (binary transfer: no text parsing of the numbers)."""
    params: dict[str, Any] = {"instructor": instructor, "limit": limit}
    if after is not None:
        params.update(created_at=after[0], course_id=after[1])
    columns = ENTRY_COLUMNS if entries else STATS_COLUMNS.replace("%", "%%")
    async with conn.cursor(binary=True) as cur:
        await cur.execute(_DASHBOARD_SQL[columns, after is not None], params)
        return await cur.fetchall()


_COURSE_ROW = text(f"SELECT {STATS_COLUMNS}, instructor_id FROM courses WHERE course_id = :c")


async def course_row(conn: AsyncConnection, course: UUID) -> Row[Any] | None:
    return (await conn.execute(_COURSE_ROW, {"c": course})).first()


_AT_RISK_PAGE = text(f"""
SELECT user_id, last_activity_at, last_seen_at, enrolled_at, progress_percent,
       failing_quiz_count
FROM learners
WHERE course_id = :course AND {AT_RISK} AND (last_seen_at, user_id) > (:seen, :user)
ORDER BY last_seen_at, user_id LIMIT :limit
""")


async def at_risk(
    conn: AsyncConnection, course: UUID, cutoff: datetime, limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[Row[Any]]:  # fmt: skip
    seen, user = after or (datetime.min.replace(tzinfo=cutoff.tzinfo), UUID(int=0))
    params = {"course": course, "cutoff": cutoff, "limit": limit, "seen": seen, "user": user}
    return list((await conn.execute(_AT_RISK_PAGE, params)).all())


_QUIZ_FILTER = "AND (CAST(:quiz AS uuid) IS NULL OR s.quiz_id = :quiz)"

_SCORES = text(f"""
SELECT LEAST(floor(s.score_percent / 10), 9)::int AS bucket, count(*) AS n
FROM submissions s WHERE s.course_id = :course {_QUIZ_FILTER}
GROUP BY 1
""")

# Difficulty is the share of final answers fully correct; discrimination compares that share
# in the top third of the quiz's submissions by score with the bottom third (0 when a third
# is empty).
_QUESTIONS = text(f"""
WITH ranked AS (
  SELECT s.quiz_id, s.question_ids, s.positions, s.correct,
         ntile(3) OVER (PARTITION BY s.quiz_id ORDER BY s.score_percent) AS third
  FROM submissions s WHERE s.course_id = :course {_QUIZ_FILTER}
)
SELECT r.quiz_id, q.question_id, min(q.position) AS position, count(*) AS n,
       avg(q.correct::int) AS correct_share,
       CASE WHEN count(*) FILTER (WHERE r.third = 3) = 0
              OR count(*) FILTER (WHERE r.third = 1) = 0 THEN 0
            ELSE avg(q.correct::int) FILTER (WHERE r.third = 3)
               - avg(q.correct::int) FILTER (WHERE r.third = 1) END AS discrimination
FROM ranked r, unnest(r.question_ids, r.positions, r.correct) AS q(question_id, position, correct)
GROUP BY r.quiz_id, q.question_id
ORDER BY r.quiz_id, position, q.question_id
LIMIT :limit
""")

_RETENTION = ", ".join(
    f"avg((p.completed OR (p.duration_ms > 0 AND p.furthest_ms * 10 >= {k} * p.duration_ms))"
    f"::int) AS r{k}"
    for k in range(1, 11)
)
_VIDEOS = text(f"""
SELECT p.video_id, coalesce(v.title, '') AS title, coalesce(v.position, 0) AS position,
       count(*) AS viewers, count(*) FILTER (WHERE p.completed) AS completions, {_RETENTION}
FROM video_progress p LEFT JOIN videos v ON v.video_id = p.video_id
WHERE p.course_id = :course
GROUP BY p.video_id, v.title, v.position
ORDER BY v.position IS NULL, v.position, p.video_id
LIMIT :limit
""")


async def course_detail(
    conn: AsyncConnection, course: UUID, quiz: UUID | None, limit: int
) -> tuple[list[Row[Any]], list[Row[Any]], list[Row[Any]]]:
    params = {"course": course, "quiz": quiz, "limit": limit}
    scores = list((await conn.execute(_SCORES, params)).all())
    questions = list((await conn.execute(_QUESTIONS, params)).all())
    videos = list((await conn.execute(_VIDEOS, params)).all())
    return scores, questions, videos


_CROSSED = text("""
SELECT DISTINCT course_id FROM learners
WHERE (last_seen_at >= :since AND last_seen_at < :until)
   OR (last_activity_at >= :since AND last_activity_at < :until)
""")


async def crossed_idle_line(conn: AsyncConnection, since: datetime, until: datetime) -> list[UUID]:
    """Courses with a learner whose last activity moved past the idle line between two
    cutoffs: only their active/at-risk counters can have changed with the clock."""
    result = await conn.execute(_CROSSED, {"since": since, "until": until})
    return [r[0] for r in result]


async def all_course_ids(conn: AsyncConnection) -> list[UUID]:
    return [r[0] for r in await conn.execute(text("SELECT course_id FROM courses"))]
