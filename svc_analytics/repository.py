"""The analytics write SQL: order-insensitive merges (see models), so a batch may be applied
twice or out of order. The reads, each one statement, are in svc_analytics.reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_analytics.entries import stats_entry
from svc_analytics.events import Changes

_NEWER_INFO = (
    "(excluded.info_seq, excluded.info_at) > (c.info_seq, coalesce(c.info_at, '-infinity'))"
)


@dataclass(frozen=True)
class _Bulk:
    """One statement per batch and table: the rows travel as one array per column and are
    unnested server-side (executemany would run one statement per row)."""

    stmt: TextClause
    columns: tuple[str, ...]

    async def run(self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await conn.execute(self.stmt, {c: [r[c] for r in rows] for c in self.columns})


def _bulk(head: str, columns: str, tail: str, select: str = "t.*") -> _Bulk:
    """`columns` is "name type, …"; the statement is `head SELECT select FROM unnest(…) t tail`
    with one array parameter per column."""
    pairs = [c.split() for c in columns.split(",")]
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in pairs)
    names = ", ".join(name for name, _ in pairs)
    sql = f"{head}\nSELECT {select} FROM unnest({arrays}) AS t({names})\n{tail}"
    return _Bulk(text(sql), tuple(name for name, _ in pairs))


_UPSERT_COURSE = _bulk(
    "INSERT INTO courses AS c (course_id, instructor_id, title, created_at, info_seq, info_at,"
    " updated_at)",
    "course_id uuid, instructor_id uuid, title text, created_at timestamptz, info_seq bigint,"
    " info_at timestamptz",
    f"""ON CONFLICT (course_id) DO UPDATE SET
  instructor_id = CASE WHEN {_NEWER_INFO} THEN excluded.instructor_id ELSE c.instructor_id END,
  title = CASE WHEN {_NEWER_INFO} THEN excluded.title ELSE c.title END,
  info_seq = CASE WHEN {_NEWER_INFO} THEN excluded.info_seq ELSE c.info_seq END,
  info_at = CASE WHEN {_NEWER_INFO} THEN excluded.info_at ELSE c.info_at END,
  created_at = LEAST(c.created_at, excluded.created_at)""",
    select="t.*, now()",
)

# A course first seen through an enrollment: a row to hang counters on until its course event.
_PLACEHOLDER_COURSE = _bulk(
    "INSERT INTO courses AS c (course_id, instructor_id, created_at, updated_at)",
    "course_id uuid, instructor_id uuid, at timestamptz",
    "ON CONFLICT (course_id) DO UPDATE SET created_at = LEAST(c.created_at, excluded.created_at)",
    select="t.*, now()",
)

_NEWER_ENROLL = (
    "(excluded.enroll_seq, excluded.enroll_at) > (l.enroll_seq, coalesce(l.enroll_at, '-infinity'))"
)

_UPSERT_ENROLLMENT = _bulk(
    "INSERT INTO learners AS l (course_id, user_id, active, enroll_seq, enroll_at, enrolled_at,"
    " last_seen_at)",
    "course_id uuid, user_id uuid, active boolean, enroll_seq bigint, enroll_at timestamptz,"
    " enrolled_at timestamptz",
    f"""ON CONFLICT (course_id, user_id) DO UPDATE SET
  active = CASE WHEN {_NEWER_ENROLL} THEN excluded.active ELSE l.active END,
  enrolled_at = CASE WHEN {_NEWER_ENROLL} AND excluded.active THEN excluded.enrolled_at
                     ELSE l.enrolled_at END,
  enroll_seq = CASE WHEN {_NEWER_ENROLL} THEN excluded.enroll_seq ELSE l.enroll_seq END,
  enroll_at = CASE WHEN {_NEWER_ENROLL} THEN excluded.enroll_at ELSE l.enroll_at END,
  last_seen_at = GREATEST(l.last_seen_at, excluded.last_seen_at)""",
    select="t.*, t.enrolled_at",
)

_COMPLETE = _bulk(
    "INSERT INTO learners (course_id, user_id, completed)",
    "course_id uuid, user_id uuid",
    "ON CONFLICT (course_id, user_id) DO UPDATE SET completed = true",
    select="t.*, true",
)

_ACTIVITY = _bulk(
    "INSERT INTO learners AS l (course_id, user_id, last_activity_at, last_seen_at,"
    " progress_percent, progress_at)",
    "course_id uuid, user_id uuid, last_activity_at timestamptz, progress_percent float8,"
    " progress_at timestamptz",
    """ON CONFLICT (course_id, user_id) DO UPDATE SET
  last_activity_at = GREATEST(l.last_activity_at, excluded.last_activity_at),
  last_seen_at = GREATEST(l.last_seen_at, excluded.last_activity_at),
  progress_percent = CASE
    WHEN excluded.progress_at IS NOT NULL
         AND excluded.progress_at >= coalesce(l.progress_at, '-infinity')
    THEN excluded.progress_percent ELSE l.progress_percent END,
  progress_at = GREATEST(l.progress_at, excluded.progress_at)""",
    select="t.course_id, t.user_id, t.last_activity_at, t.last_activity_at,"
    " t.progress_percent, t.progress_at",
)

_SUBMISSION = _bulk(
    "INSERT INTO submissions AS s (submission_id, course_id, quiz_id, user_id, attempt_number,"
    " grade_version, score_percent, passed, graded_at)",
    "submission_id uuid, course_id uuid, quiz_id uuid, user_id uuid, attempt_number int,"
    " grade_version int, score_percent float8, passed boolean, graded_at timestamptz",
    """ON CONFLICT (submission_id) DO UPDATE SET
  grade_version = excluded.grade_version, score_percent = excluded.score_percent,
  passed = excluded.passed, graded_at = excluded.graded_at
WHERE excluded.grade_version > s.grade_version""",
)

_ANSWER = _bulk(
    "INSERT INTO answers AS a (submission_id, question_id, course_id, quiz_id, position,"
    " grade_version, correct)",
    "submission_id uuid, question_id uuid, course_id uuid, quiz_id uuid, position int,"
    " grade_version int, correct boolean",
    """ON CONFLICT (submission_id, question_id) DO UPDATE SET
  grade_version = excluded.grade_version, correct = excluded.correct,
  position = excluded.position
WHERE excluded.grade_version > a.grade_version""",
)

_ATTEMPT = _bulk(
    "INSERT INTO latest_attempts AS a (course_id, user_id, quiz_id, attempt_number,"
    " grade_version, passed)",
    "course_id uuid, user_id uuid, quiz_id uuid, attempt_number int, grade_version int,"
    " passed boolean",
    """ON CONFLICT (course_id, user_id, quiz_id) DO UPDATE SET
  attempt_number = excluded.attempt_number, grade_version = excluded.grade_version,
  passed = excluded.passed
WHERE (excluded.attempt_number, excluded.grade_version) > (a.attempt_number, a.grade_version)""",
)

_FAILING = text("""
UPDATE learners l SET failing_quiz_count = (
  SELECT count(*) FROM latest_attempts a
  WHERE a.course_id = l.course_id AND a.user_id = l.user_id AND NOT a.passed)
FROM unnest(CAST(:courses AS uuid[]), CAST(:users AS uuid[])) AS t(course_id, user_id)
WHERE l.course_id = t.course_id AND l.user_id = t.user_id
""")

_VIDEO_PROGRESS = _bulk(
    "INSERT INTO video_progress AS v (course_id, video_id, user_id, furthest_ms, duration_ms,"
    " completed)",
    "course_id uuid, video_id uuid, user_id uuid, furthest_ms bigint, duration_ms bigint,"
    " completed boolean",
    """ON CONFLICT (course_id, video_id, user_id) DO UPDATE SET
  furthest_ms = GREATEST(v.furthest_ms, excluded.furthest_ms),
  duration_ms = GREATEST(v.duration_ms, excluded.duration_ms),
  completed = v.completed OR excluded.completed""",
)

_VIDEO = _bulk(
    "INSERT INTO videos AS v (video_id, course_id, title, position, info_at)",
    "video_id uuid, course_id uuid, title text, position int, info_at timestamptz",
    """ON CONFLICT (video_id) DO UPDATE SET
  course_id = excluded.course_id, title = excluded.title, position = excluded.position,
  info_at = excluded.info_at
WHERE excluded.info_at > v.info_at""",
)

# A course's figures in the order `entries.fill_stats` unpacks them. The id comes as text and
# the update time as whole seconds and nanoseconds, so filling 200 messages costs no UUID,
# datetime or Timestamp conversion in Python (those were most of a cold dashboard's CPU).
STATS_COLUMNS = """course_id::text, title, enrollment_count, completion_count,
  graded_submission_count, score_sum, active_learner_count, at_risk_learner_count,
  floor(extract(epoch FROM updated_at))::bigint AS update_seconds,
  (extract(microseconds FROM updated_at)::bigint % 1000000 * 1000)::int AS update_nanos"""

# Qualified: the subquery below has a course_id too.
_RETURNED_STATS = STATS_COLUMNS.replace("course_id::text", "c.course_id::text")

# Every counter recomputed from the rows, not incremented: a replayed event cannot count twice.
AT_RISK = "active AND NOT completed AND (last_seen_at < :cutoff OR failing_quiz_count > 0)"
_REFRESH = text(f"""
UPDATE courses c SET
  enrollment_count = s.enrolled, completion_count = s.completed,
  active_learner_count = s.active_now, at_risk_learner_count = s.at_risk,
  graded_submission_count = s.graded, score_sum = s.scores, updated_at = now()
FROM (
  SELECT x.course_id, coalesce(l.enrolled, 0) AS enrolled, coalesce(l.completed, 0) AS completed,
         coalesce(l.active_now, 0) AS active_now, coalesce(l.at_risk, 0) AS at_risk,
         coalesce(g.graded, 0) AS graded, coalesce(g.score_sum, 0) AS scores
  FROM unnest(CAST(:ids AS uuid[])) AS x(course_id)
  LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE active) AS enrolled,
           count(*) FILTER (WHERE active AND completed) AS completed,
           count(*) FILTER (WHERE active AND last_activity_at >= :cutoff) AS active_now,
           count(*) FILTER (WHERE {AT_RISK}) AS at_risk
    FROM learners WHERE course_id = x.course_id) l ON true
  LEFT JOIN LATERAL (
    SELECT count(*) AS graded, sum(score_percent) AS score_sum
    FROM submissions WHERE course_id = x.course_id) g ON true
) s
WHERE c.course_id = s.course_id
RETURNING c.course_id, c.instructor_id, {_RETURNED_STATS}
""")

# Written in the refresh's transaction, after its UPDATE locked the rows: a concurrent refresh
# of the same course waits, so the entry always matches the counters committed beside it.
_STORE_ENTRIES = text("""
UPDATE courses c SET stats_entry = t.entry
FROM unnest(CAST(:ids AS uuid[]), CAST(:entries AS bytea[])) AS t(course_id, entry)
WHERE c.course_id = t.course_id
""")

_CROSSED = text("""
SELECT DISTINCT course_id FROM learners
WHERE (last_seen_at >= :since AND last_seen_at < :until)
   OR (last_activity_at >= :since AND last_activity_at < :until)
""")


# The tables in the order `apply` first writes them (rebuild locks them in this order too).
APPLY_ORDER = (
    "courses", "learners", "submissions", "answers", "latest_attempts", "video_progress", "videos"
)  # fmt: skip


def _ordered(rows: dict[Any, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in key order: replicas applying batches at once lock rows in the same order, so
    they wait for each other instead of deadlocking."""
    return [rows[k] for k in sorted(rows)]


async def apply(conn: AsyncConnection, ch: Changes, cutoff: datetime) -> list[Row[Any]]:
    """Write one decoded batch and refresh the counters of the courses it touched; returns
    (course_id, instructor_id) of the refreshed courses."""
    await _UPSERT_COURSE.run(conn, [
        {**r, "created_at": r["created_at"] or r["info_at"]} for r in _ordered(ch.courses)
    ])  # fmt: skip
    placeholders: dict[UUID, dict[str, Any]] = {}
    for r in _ordered(ch.enrollments) + list(ch.completions.values()):
        placeholders.setdefault(r["course_id"], {
            "course_id": r["course_id"], "instructor_id": r["instructor_id"],
            "at": r.get("enroll_at") or r["at"],
        })  # fmt: skip
    await _PLACEHOLDER_COURSE.run(conn, _ordered(placeholders))
    await _UPSERT_ENROLLMENT.run(conn, _ordered(ch.enrollments))
    await _COMPLETE.run(conn, _ordered(ch.completions))
    await _ACTIVITY.run(conn, [
        {**r, "progress_percent": r["progress_percent"] or 0.0} for r in _ordered(ch.activity)
    ])  # fmt: skip
    await _SUBMISSION.run(conn, _ordered(ch.submissions))
    await _ANSWER.run(conn, _ordered(ch.answers))
    await _ATTEMPT.run(conn, _ordered(ch.attempts))
    if ch.attempts:
        keys = sorted({(r["course_id"], r["user_id"]) for r in ch.attempts.values()})
        await conn.execute(
            _FAILING, {"courses": [k[0] for k in keys], "users": [k[1] for k in keys]}
        )
    await _VIDEO_PROGRESS.run(conn, _ordered(ch.progress))
    await _VIDEO.run(conn, _ordered(ch.videos))
    return await refresh(conn, sorted(ch.touched_courses), cutoff)


async def refresh(
    conn: AsyncConnection, course_ids: list[UUID], cutoff: datetime
) -> list[Row[Any]]:
    if not course_ids:
        return []
    rows = list((await conn.execute(_REFRESH, {"ids": course_ids, "cutoff": cutoff})).all())
    await conn.execute(_STORE_ENTRIES, {
        "ids": [r[0] for r in rows], "entries": [stats_entry(r[2:]) for r in rows]
    })  # fmt: skip
    return rows


async def crossed_idle_line(conn: AsyncConnection, since: datetime, until: datetime) -> list[UUID]:
    """Courses with a learner whose last activity moved past the idle line between two
    cutoffs: only their active/at-risk counters can have changed with the clock."""
    result = await conn.execute(_CROSSED, {"since": since, "until": until})
    return [r[0] for r in result]


async def all_course_ids(conn: AsyncConnection) -> list[UUID]:
    return [r[0] for r in await conn.execute(text("SELECT course_id FROM courses"))]
