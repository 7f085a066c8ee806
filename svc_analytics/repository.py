"""The analytics write SQL: order-insensitive merges (see models), so a batch may be applied
twice or out of order. The reads, each one statement, are in svc_analytics.reads.

A batch runs on psycopg's own connection in one pipeline (`Database.transaction_driver`): its
statements go out together and cost one round trip until the counters' refresh, whose rows
are needed to write the dashboard entries, instead of one round trip and one SQLAlchemy
execution each."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from svc_analytics.entries import stats_entry
from svc_analytics.events import Changes

Conn = psycopg.AsyncConnection[Any]

_NEWER_INFO = (
    "(excluded.info_seq, excluded.info_at) > (c.info_seq, coalesce(c.info_at, '-infinity'))"
)

# Array columns sent as one array literal built by a join, not a list psycopg dumps element
# by element in Python: their values' text (canonical UUID text, integers, True/False, a
# float's repr, NULL) never needs quoting. Text and times stay lists.
_JOINED = frozenset({"uuid", "int", "bigint", "boolean", "float8"})


@dataclass(frozen=True)
class _Bulk:
    """One statement per batch and table: the rows travel as one array per column and are
    unnested server-side (executemany would run one statement per row)."""

    sql: str
    columns: tuple[tuple[str, bool], ...]  # (name, sent as a joined literal)

    def params(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {
            c: _array_literal([r[c] for r in rows]) if joined else [r[c] for r in rows]
            for c, joined in self.columns
        }

    async def run(self, cur: psycopg.AsyncCursor[Any], rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await cur.execute(self.sql, self.params(rows))


def _array_literal(values: Sequence[Any]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _bulk(head: str, columns: str, tail: str, select: str = "t.*") -> _Bulk:
    """`columns` is "name type, …"; the statement is `head SELECT select FROM unnest(…) t tail`
    with one array parameter per column."""
    pairs = [c.split() for c in columns.split(",")]
    arrays = ", ".join(f"CAST(%({name})s AS {kind}[])" for name, kind in pairs)
    names = ", ".join(name for name, _ in pairs)
    sql = f"{head}\nSELECT {select} FROM unnest({arrays}) AS t({names})\n{tail}"
    return _Bulk(sql, tuple((name, kind in _JOINED) for name, kind in pairs))


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

# A course first seen through an enrollment or a grade: a row to hang counters on until its
# course event. The row is locked even when the WHERE leaves it unwritten (ON CONFLICT locks
# every conflicting row), which `_SUBMISSION` relies on; skipping the no-op write spares a
# dead row version per batch.
_PLACEHOLDER_COURSE = _bulk(
    "INSERT INTO courses AS c (course_id, instructor_id, created_at, updated_at)",
    "course_id uuid, instructor_id uuid, at timestamptz",
    """ON CONFLICT (course_id) DO UPDATE SET created_at = excluded.created_at
WHERE excluded.created_at < c.created_at""",
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

# A submission's outcomes arrive as its strings from events._outcomes (ids and positions
# joined by commas, 't'/'f' per question) and become its arrays here, server-side.
_SUBMISSION_ROWS = _bulk(
    "INSERT INTO submissions AS s (submission_id, course_id, quiz_id, user_id, attempt_number,"
    " grade_version, score_percent, passed, graded_at, question_ids, positions, correct)",
    "submission_id uuid, course_id uuid, quiz_id uuid, user_id uuid, attempt_number int,"
    " grade_version int, score_percent float8, passed boolean, graded_at timestamptz,"
    " question_ids text, positions text, correct text",
    """ON CONFLICT (submission_id) DO UPDATE SET
  grade_version = excluded.grade_version, score_percent = excluded.score_percent,
  passed = excluded.passed, graded_at = excluded.graded_at,
  question_ids = excluded.question_ids, positions = excluded.positions,
  correct = excluded.correct
WHERE excluded.grade_version > s.grade_version""",
    select="t.submission_id, t.course_id, t.quiz_id, t.user_id, t.attempt_number,"
    " t.grade_version, t.score_percent, t.passed, t.graded_at,"
    " string_to_array(t.question_ids, ',')::uuid[], string_to_array(t.positions, ',')::int[],"
    " string_to_array(t.correct, NULL)::boolean[]",
)

# The graded counters move by what the upsert changed (RETURNING old and new, Postgres 18): a
# new submission counts once, a regrade moves the sum by its difference, and a replayed grade
# writes no row, so it moves nothing. Recounting them from the rows instead read every
# submission of the course at each batch, a cost that grew all through an exam. The course
# row was locked at the batch's start (its placeholder upsert), so a concurrent recount
# (`refresh` with `recount`) either sees these rows or runs before they exist.
_SUBMISSION = _Bulk(
    f"""WITH up AS (
{_SUBMISSION_ROWS.sql}
RETURNING new.course_id, old.submission_id IS NULL AS added,
          new.score_percent - coalesce(old.score_percent, 0) AS moved
), d AS (
  SELECT course_id, count(*) FILTER (WHERE added) AS added, sum(moved) AS moved
  FROM up GROUP BY course_id
)
UPDATE courses c SET graded_submission_count = c.graded_submission_count + d.added,
                     score_sum = c.score_sum + d.moved
FROM d WHERE c.course_id = d.course_id""",
    _SUBMISSION_ROWS.columns,
)

_ATTEMPT_ROWS = _bulk(
    "INSERT INTO latest_attempts AS a (course_id, user_id, quiz_id, attempt_number,"
    " grade_version, passed)",
    "course_id uuid, user_id uuid, quiz_id uuid, attempt_number int, grade_version int,"
    " passed boolean",
    """ON CONFLICT (course_id, user_id, quiz_id) DO UPDATE SET
  attempt_number = excluded.attempt_number, grade_version = excluded.grade_version,
  passed = excluded.passed
WHERE (excluded.attempt_number, excluded.grade_version) > (a.attempt_number, a.grade_version)""",
)

# The latest attempts, then the failing counts of the learners whose attempts changed, in one
# statement: the count is the rows this statement wrote (`up`) plus the learner's other rows as
# its snapshot holds them. That snapshot is complete: every batch writing a learner's attempts
# first locks the learner's row (its activity upsert, which this batch's did already, earlier
# in the transaction), so no other writer of them can be uncommitted now. A replayed grade
# writes no attempt, so it recounts nothing.
_ATTEMPT = _Bulk(
    f"""WITH up AS (
{_ATTEMPT_ROWS.sql}
RETURNING a.course_id, a.user_id, a.quiz_id, a.passed
)
UPDATE learners l SET failing_quiz_count = (
  SELECT count(*) FILTER (WHERE NOT x.passed) FROM (
    SELECT o.passed FROM latest_attempts o
    WHERE o.course_id = l.course_id AND o.user_id = l.user_id
      AND NOT EXISTS (SELECT 1 FROM up WHERE up.course_id = o.course_id
                      AND up.user_id = o.user_id AND up.quiz_id = o.quiz_id)
    UNION ALL
    SELECT up.passed FROM up WHERE up.course_id = l.course_id AND up.user_id = l.user_id
  ) x)
FROM (SELECT DISTINCT course_id, user_id FROM up) t
WHERE l.course_id = t.course_id AND l.user_id = t.user_id""",
    _ATTEMPT_ROWS.columns,
)

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

# Qualified: the subquery below has a course_id too. Run on psycopg: % doubled.
_RETURNED_STATS = STATS_COLUMNS.replace("course_id::text", "c.course_id::text").replace("%", "%%")

# The learners' counters recomputed from the rows, not incremented: a replayed event cannot
# count twice, and "active" and "at risk" move with the clock. The graded counters are moved by
# `_SUBMISSION` and recounted only for the courses in `recount` (a course row the batch may have
# just created, or whose grades came without an instructor to create it; all of them when
# seeding): for the others they need not read the course's every submission.
AT_RISK = "active AND NOT completed AND (last_seen_at < :cutoff OR failing_quiz_count > 0)"
_REFRESH = f"""
UPDATE courses c SET
  enrollment_count = s.enrolled, completion_count = s.completed,
  active_learner_count = s.active_now, at_risk_learner_count = s.at_risk,
  graded_submission_count = CASE WHEN s.recount THEN s.graded
                                 ELSE c.graded_submission_count END,
  score_sum = CASE WHEN s.recount THEN s.scores ELSE c.score_sum END, updated_at = now()
FROM (
  SELECT x.course_id, coalesce(l.enrolled, 0) AS enrolled, coalesce(l.completed, 0) AS completed,
         coalesce(l.active_now, 0) AS active_now, coalesce(l.at_risk, 0) AS at_risk,
         x.recount, coalesce(g.graded, 0) AS graded, coalesce(g.score_sum, 0) AS scores
  FROM (SELECT course_id, course_id = ANY(CAST(%(recount)s AS uuid[])) AS recount
        FROM unnest(CAST(%(ids)s AS uuid[])) AS u(course_id)) AS x
  LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE active) AS enrolled,
           count(*) FILTER (WHERE active AND completed) AS completed,
           count(*) FILTER (WHERE active AND last_activity_at >= %(cutoff)s) AS active_now,
           count(*) FILTER (WHERE {AT_RISK.replace(":cutoff", "%(cutoff)s")}) AS at_risk
    FROM learners WHERE course_id = x.course_id) l ON true
  LEFT JOIN LATERAL (
    SELECT count(*) AS graded, sum(score_percent) AS score_sum
    FROM submissions WHERE course_id = x.course_id AND x.recount) g ON true
) s
WHERE c.course_id = s.course_id
RETURNING c.course_id, c.instructor_id, {_RETURNED_STATS}
"""

# Written in the refresh's transaction, after its UPDATE locked the rows: a concurrent refresh
# of the same course waits, so the entry always matches the counters committed beside it.
_STORE_ENTRIES = """
UPDATE courses c SET stats_entry = t.entry
FROM unnest(CAST(%(ids)s AS uuid[]), CAST(%(entries)s AS bytea[])) AS t(course_id, entry)
WHERE c.course_id = t.course_id
"""

# The tables in the order `apply` first writes them (rebuild locks them in this order too).
APPLY_ORDER = (
    "courses", "learners", "submissions", "latest_attempts", "video_progress", "videos"
)  # fmt: skip


def _ordered(rows: dict[Any, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in key order: replicas applying batches at once lock rows in the same order, so
    they wait for each other instead of deadlocking."""
    return [rows[k] for k in sorted(rows)]


async def apply(conn: Conn, ch: Changes, cutoff: datetime) -> list[tuple[Any, ...]]:
    """Write one decoded batch and refresh the counters of the courses it touched; returns
    rows of (course_id, instructor_id, STATS_COLUMNS…) of the refreshed courses. Pipelined:
    nothing waits for the server until the refresh's rows are read."""
    async with conn.pipeline():
        cur = conn.cursor()
        await _UPSERT_COURSE.run(cur, [
            {**r, "created_at": r["created_at"] or r["info_at"]} for r in _ordered(ch.courses)
        ])  # fmt: skip
        placeholders: dict[str, dict[str, Any]] = {}
        for r in _ordered(ch.enrollments) + list(ch.completions.values()):
            placeholders.setdefault(r["course_id"], {
                "course_id": r["course_id"], "instructor_id": r["instructor_id"],
                "at": r.get("enroll_at") or r["at"],
            })  # fmt: skip
        recount = set(ch.courses) | set(placeholders)
        for r in ch.submissions.values():
            if r["instructor_id"] is None:
                recount.add(r["course_id"])
            else:
                # Locks the course row before the counters move (see _SUBMISSION).
                placeholders.setdefault(r["course_id"], {
                    "course_id": r["course_id"], "instructor_id": r["instructor_id"],
                    "at": r["graded_at"],
                })  # fmt: skip
        await _PLACEHOLDER_COURSE.run(cur, _ordered(placeholders))
        await _UPSERT_ENROLLMENT.run(cur, _ordered(ch.enrollments))
        await _COMPLETE.run(cur, _ordered(ch.completions))
        await _ACTIVITY.run(cur, [
            {**r, "progress_percent": r["progress_percent"] or 0.0} for r in _ordered(ch.activity)
        ])  # fmt: skip
        await _SUBMISSION.run(cur, _ordered(ch.submissions))
        await _ATTEMPT.run(cur, _ordered(ch.attempts))
        await _VIDEO_PROGRESS.run(cur, _ordered(ch.progress))
        await _VIDEO.run(cur, _ordered(ch.videos))
        return await refresh(conn, sorted(ch.touched_courses), cutoff, recount)


def _literal(ids: Any) -> str:
    """A uuid[] literal of ids (UUIDs or their canonical text)."""
    return _array_literal([str(i) for i in ids])


async def refresh(
    conn: Conn, course_ids: Sequence[Any], cutoff: datetime, recount: Collection[Any] = ()
) -> list[tuple[Any, ...]]:
    """Recompute the courses' learner counters (and their graded counters for those in
    `recount`) and store their dashboard entries; returns rows of (course_id, instructor_id,
    STATS_COLUMNS…)."""
    if not course_ids:
        return []
    params = {"ids": _literal(course_ids), "recount": _literal(recount), "cutoff": cutoff}
    rows = await (await conn.execute(_REFRESH, params)).fetchall()
    await conn.execute(_STORE_ENTRIES, {
        "ids": _literal(r[0] for r in rows), "entries": [stats_entry(r[2:]) for r in rows]
    })  # fmt: skip
    return rows
