"""The SQL of submissions: insert, read, list, grade writes, failures and retries. Functions
take a connection, so the caller decides what runs in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh import tracing
from svc_quiz.repository import (
    FAILED,
    JOB_PAYLOAD,
    JOB_SUBJECT,
    PENDING,
    REGRADING,
    SUBMITTED,
)

SUBMISSION_COLUMNS = (
    "id, quiz_id, course_id, user_id, attempt_id, attempt_number, quiz_version, grading_status,"
    " idempotency_key, answers_digest, answers, late, late_penalty_percent, submitted_at, score,"
    " max_score, score_percent, passed, results, pending_results, graded_at, grade_version,"
    " failure_reason"
)
_QUALIFIED = ", ".join("s." + c.strip() for c in SUBMISSION_COLUMNS.split(","))
_BASIC_COLUMNS = (
    "id, quiz_id, course_id, user_id, attempt_id, attempt_number, quiz_version, grading_status,"
    " late, late_penalty_percent, submitted_at, score, max_score, score_percent, passed,"
    " graded_at, grade_version, failure_reason"
)

# A submission row's columns and their Postgres types: rows go in as one array per column
# (unnest), so one statement shape inserts one row or a group commit's hundreds.
SUBMISSION_ARRAYS = {
    "id": "uuid",
    "quiz_id": "uuid",
    "course_id": "uuid",
    "user_id": "uuid",
    "attempt_id": "uuid",
    "attempt_number": "int",
    "quiz_version": "int",
    "grading_status": "smallint",
    "idempotency_key": "text",
    "answers_digest": "bytea",
    "answers": "bytea",
    "late": "boolean",
    "late_penalty_percent": "float8",
    "submitted_at": "timestamptz",
    "score": "float8",
    "max_score": "float8",
    "score_percent": "float8",
    "passed": "boolean",
    "results": "bytea",
    "pending_results": "bytea",
    "graded_at": "timestamptz",
    "grade_version": "int",
}
SUBMISSION_COLUMNS_NEW = ", ".join(SUBMISSION_ARRAYS)
_UNNEST = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in SUBMISSION_ARRAYS.items())

# Inserts submissions and closes their attempts in one statement; a row whose key or attempt
# already has a submission is skipped (ON CONFLICT DO NOTHING), and only inserted ids return.
_INSERT_SUBMISSIONS = text(
    f"""
    WITH s AS (
      INSERT INTO submissions ({SUBMISSION_COLUMNS_NEW})
      SELECT {SUBMISSION_COLUMNS_NEW} FROM unnest({_UNNEST}) AS i({SUBMISSION_COLUMNS_NEW})
      ON CONFLICT DO NOTHING
      RETURNING id, attempt_id
    ), a AS (
      UPDATE attempts SET state = {SUBMITTED}, submission_id = s.id
      FROM s WHERE attempts.id = s.attempt_id
    )
    SELECT id FROM s
    """
)


def columns(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    """Rows as one list per column, the parameters of an unnest insert."""
    return {n: [r[n] for r in rows] for n in names}


async def insert_submissions(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> set[Any]:
    """Insert submissions and close their attempts; the ids of the rows inserted (a row is
    left out when its key or its attempt already has a submission)."""
    result = await conn.execute(_INSERT_SUBMISSIONS, columns(rows, SUBMISSION_ARRAYS))
    return {row.id for row in result}


async def insert_submission(conn: AsyncConnection, values: Mapping[str, Any]) -> bool:
    """One submission (a batch of one); False when the key or the attempt already has one."""
    return bool(await insert_submissions(conn, [values]))


async def submission_by_key(conn: AsyncConnection, user_id: str, key: str) -> Row[Any] | None:
    sql = (
        f"SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE user_id = :u AND idempotency_key = :k"
    )
    return (await conn.execute(text(sql), {"u": user_id, "k": key})).first()


async def submission(
    conn: AsyncConnection, submission_id: str, *, lock: bool = False
) -> Row[Any] | None:
    sql = f"""
        SELECT {_QUALIFIED}, q.instructor_id, q.revision
        FROM submissions s JOIN quizzes q ON q.id = s.quiz_id
        WHERE s.id = :id
    """
    if lock:
        sql += " FOR UPDATE OF s"
    return (await conn.execute(text(sql), {"id": submission_id})).first()


async def list_user_submissions(
    conn: AsyncConnection,
    user_id: str,
    quiz_id: str | None,
    course_id: str | None,
    after: Sequence[Any] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    where = ["s.user_id = :u"]
    params: dict[str, Any] = {"u": user_id, "limit": limit}
    if quiz_id:
        where.append("s.quiz_id = :q")
        params["q"] = quiz_id
    if course_id:
        where.append("s.course_id = :c")
        params["c"] = course_id
    if after is not None:
        where.append("(s.submitted_at, s.id) < (CAST(:t AS timestamptz), CAST(:i AS uuid))")
        params.update(t=after[0], i=after[1])
    sql = f"""
        SELECT {_QUALIFIED}, q.instructor_id, q.revision
        FROM submissions s JOIN quizzes q ON q.id = s.quiz_id
        WHERE {" AND ".join(where)}
        ORDER BY s.submitted_at DESC, s.id DESC LIMIT :limit
    """
    return (await conn.execute(text(sql), params)).all()


async def list_quiz_submissions(
    conn: AsyncConnection,
    quiz_id: str,
    status: int,
    after: Sequence[Any] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """The basic view (no answers, no results) for the instructor's list, oldest first."""
    where = ["quiz_id = :q"]
    params: dict[str, Any] = {"q": quiz_id, "limit": limit}
    if status:
        where.append("grading_status = :s")
        params["s"] = status
    if after is not None:
        where.append("(submitted_at, id) > (CAST(:t AS timestamptz), CAST(:i AS uuid))")
        params.update(t=after[0], i=after[1])
    sql = f"""
        SELECT {_BASIC_COLUMNS} FROM submissions WHERE {" AND ".join(where)}
        ORDER BY submitted_at, id LIMIT :limit
    """
    return (await conn.execute(text(sql), params)).all()


_FINISH_GRADE = text(
    """
    UPDATE submissions SET grading_status = :status, quiz_version = :quiz_version,
        score = CASE WHEN :final THEN :score ELSE score END,
        score_percent = CASE WHEN :final THEN :score_percent ELSE score_percent END,
        passed = CASE WHEN :final THEN :passed ELSE passed END,
        results = CASE WHEN :final THEN :results ELSE results END,
        graded_at = CASE WHEN :final THEN :graded_at ELSE graded_at END,
        grade_version = grade_version + CASE WHEN :final THEN 1 ELSE 0 END,
        max_score = :max_score, pending_results = :pending_results, failure_reason = ''
    WHERE id = :id AND grading_status = :seen_status AND grade_version = :seen_grade_version
    RETURNING grade_version
    """
)


async def finish_grade(conn: AsyncConnection, values: Mapping[str, Any]) -> int | None:
    """Write a grade only if the submission is still as the grader saw it (exactly-once grade
    under at-least-once delivery); the new grade version, or None when someone was first."""
    row = (await conn.execute(_FINISH_GRADE, dict(values))).first()
    return int(row.grade_version) if row else None


async def mark_failed(conn: AsyncConnection, submission_id: str, reason: str) -> bool:
    sql = f"""
        UPDATE submissions SET grading_status = {FAILED}, failure_reason = :r
        WHERE id = :id AND grading_status IN ({PENDING}, {REGRADING})
    """
    result = await conn.execute(text(sql), {"id": submission_id, "r": reason[:2000]})
    return bool(result.rowcount)


_RETRY = text(
    f"""
    WITH s AS (
      UPDATE submissions SET grading_status = {PENDING}, failure_reason = ''
      WHERE id = :id AND grading_status = {FAILED}
      RETURNING id
    )
    INSERT INTO outbox (event_id, subject, payload, traceparent)
    SELECT gen_random_uuid(), '{JOB_SUBJECT}', {JOB_PAYLOAD}, CAST(:tp AS text) FROM s
    RETURNING id
    """
)


async def retry_failed(conn: AsyncConnection, submission_id: str) -> bool:
    params = {"id": submission_id, "tp": tracing.current_traceparent()}
    return (await conn.execute(_RETRY, params)).first() is not None


async def claim_manual_key(conn: AsyncConnection, submission_id: str, key: str) -> bool:
    """Record a GradeSubmission key; False when it was seen before."""
    sql = """
        INSERT INTO manual_grade_keys (submission_id, idempotency_key) VALUES (:s, :k)
        ON CONFLICT DO NOTHING RETURNING 1
    """
    return (await conn.execute(text(sql), {"s": submission_id, "k": key})).first() is not None
