"""The SQL of quizzes and attempts (submissions: svc_quiz.submission_repository; the two
hold every statement of svc_quiz). Functions take a connection, so the caller decides what
runs in one transaction (commit at the RPC boundary)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh import tracing

IN_PROGRESS = pb.ATTEMPT_STATE_IN_PROGRESS
SUBMITTED = pb.ATTEMPT_STATE_SUBMITTED
EXPIRED = pb.ATTEMPT_STATE_EXPIRED
PENDING = pb.GRADING_STATUS_PENDING
NEEDS_MANUAL = pb.GRADING_STATUS_NEEDS_MANUAL_GRADING
GRADED = pb.GRADING_STATUS_GRADED
REGRADING = pb.GRADING_STATUS_REGRADING
FAILED = pb.GRADING_STATUS_FAILED
JOB_SUBJECT = "quizgrade.jobs"

# ----- quizzes --------------------------------------------------------------------------

_INSERT_QUIZ = text(
    """
    WITH q AS (
      INSERT INTO quizzes (id, course_id, instructor_id, state, revision, due_time, create_key)
      VALUES (:id, :course_id, :instructor_id, :state, 1, :due_time, :create_key)
      ON CONFLICT ON CONSTRAINT uq_quizzes_create_key DO NOTHING
      RETURNING id
    )
    INSERT INTO quiz_versions (quiz_id, revision, definition)
    SELECT id, 1, :definition FROM q
    RETURNING quiz_id
    """
)


async def insert_quiz(conn: AsyncConnection, values: Mapping[str, Any]) -> bool:
    """Insert a new quiz and its first revision; False when the create key was used before."""
    return (await conn.execute(_INSERT_QUIZ, dict(values))).first() is not None


async def quiz_id_by_create_key(
    conn: AsyncConnection, instructor_id: str, key: str
) -> uuid.UUID | None:
    row = (
        await conn.execute(
            text("SELECT id FROM quizzes WHERE instructor_id = :i AND create_key = :k"),
            {"i": instructor_id, "k": key},
        )
    ).first()
    return row.id if row else None


_LOAD_QUIZ = """
    SELECT q.id, q.course_id, q.instructor_id, q.state, q.revision, q.created_at,
           q.updated_at, q.published_at, v.definition
    FROM quizzes q JOIN quiz_versions v ON v.quiz_id = q.id AND v.revision = q.revision
    WHERE q.id = :id
"""


async def load_quiz(conn: AsyncConnection, quiz_id: str, *, lock: bool = False) -> Row[Any] | None:
    sql = _LOAD_QUIZ + (" FOR UPDATE OF q" if lock else "")
    return (await conn.execute(text(sql), {"id": quiz_id})).first()


async def quiz_head(conn: AsyncConnection, quiz_id: str) -> Row[Any] | None:
    """The quiz's owner and current revision, without its definition."""
    sql = "SELECT id, course_id, instructor_id, state, revision FROM quizzes WHERE id = :id"
    return (await conn.execute(text(sql), {"id": quiz_id})).first()


async def definition(conn: AsyncConnection, quiz_id: str, revision: int) -> bytes | None:
    row = (
        await conn.execute(
            text("SELECT definition FROM quiz_versions WHERE quiz_id = :q AND revision = :r"),
            {"q": quiz_id, "r": revision},
        )
    ).first()
    return bytes(row.definition) if row else None


_SAVE_REVISION = text(
    """
    WITH q AS (
      UPDATE quizzes SET revision = :revision, state = :state, due_time = :due_time,
             updated_at = :now, published_at = coalesce(published_at, :published_at)
      WHERE id = :id
      RETURNING id
    )
    INSERT INTO quiz_versions (quiz_id, revision, definition)
    SELECT id, :revision, :definition FROM q
    """
)


async def save_revision(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(_SAVE_REVISION, dict(values))


async def list_quizzes(
    conn: AsyncConnection,
    course_id: str,
    published_only: bool,
    after: Sequence[Any] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    where = ["q.course_id = :course"]
    params: dict[str, Any] = {"course": course_id, "limit": limit}
    if published_only:
        where.append(f"q.state = {pb.QUIZ_STATE_PUBLISHED}")
    if after is not None:
        where.append(
            "(coalesce(q.due_time, 'infinity'::timestamptz), q.created_at, q.id)"
            " > (coalesce(CAST(:due AS timestamptz), 'infinity'::timestamptz),"
            " CAST(:created AS timestamptz), CAST(:id AS uuid))"
        )
        params.update(due=after[0], created=after[1], id=after[2])
    sql = f"""
        SELECT q.id, q.state, q.revision, q.created_at, q.updated_at, q.published_at,
               q.due_time, v.definition
        FROM quizzes q JOIN quiz_versions v ON v.quiz_id = q.id AND v.revision = q.revision
        WHERE {" AND ".join(where)}
        ORDER BY coalesce(q.due_time, 'infinity'::timestamptz), q.created_at, q.id
        LIMIT :limit
    """
    return (await conn.execute(text(sql), params)).all()


# A grading job is a StringValue message holding the submission id: tag 0x0a, length 36.
JOB_PAYLOAD = "'\\x0a24'::bytea || convert_to(s.id::text, 'UTF8')"

_MARK_REGRADING = text(
    f"""
    WITH s AS (
      UPDATE submissions SET grading_status = {REGRADING}
      WHERE quiz_id = :quiz AND grading_status = {GRADED} AND quiz_version < :version
      RETURNING id
    )
    INSERT INTO outbox (event_id, subject, payload, traceparent)
    SELECT gen_random_uuid(), '{JOB_SUBJECT}', {JOB_PAYLOAD}, CAST(:tp AS text) FROM s
    RETURNING id
    """
)


async def mark_regrading(conn: AsyncConnection, quiz_id: str, version: int) -> int:
    """Queue every graded submission of an older key for regrading; returns how many."""
    params = {"quiz": quiz_id, "version": version, "tp": tracing.current_traceparent()}
    rows = (await conn.execute(_MARK_REGRADING, params)).all()
    return len(rows)


# ----- attempts -------------------------------------------------------------------------


async def attempt_standing(conn: AsyncConnection, quiz_id: str, user_id: str) -> Row[Any]:
    """How many attempts the student started, and the one in progress (if any)."""
    sql = f"""
        SELECT count(*) AS used,
               (array_agg(id) FILTER (WHERE state = {IN_PROGRESS}))[1] AS open_id
        FROM attempts WHERE quiz_id = :q AND user_id = :u
    """
    return (await conn.execute(text(sql), {"q": quiz_id, "u": user_id})).one()


_INSERT_ATTEMPT = text(
    f"""
    INSERT INTO attempts (id, quiz_id, user_id, attempt_number, quiz_version, state, start_key,
                          shuffle_seed, started_at, deadline_at)
    SELECT :id, :quiz_id, :user_id, coalesce(max(attempt_number), 0) + 1, :quiz_version,
           {IN_PROGRESS}, :start_key, :shuffle_seed, :started_at, :deadline_at
    FROM attempts WHERE quiz_id = :quiz_id AND user_id = :user_id
    HAVING :max_attempts = 0 OR coalesce(max(attempt_number), 0) < :max_attempts
    ON CONFLICT DO NOTHING
    RETURNING attempt_number
    """
)


async def insert_attempt(conn: AsyncConnection, values: Mapping[str, Any]) -> int | None:
    """Open an attempt numbered after the student's others and return its number; None when
    the limit is reached, another attempt is open or the start key was used."""
    row = (await conn.execute(_INSERT_ATTEMPT, dict(values))).first()
    return int(row.attempt_number) if row else None


_ATTEMPT = """
    SELECT a.id, a.quiz_id, a.user_id, a.attempt_number, a.quiz_version, a.state, a.start_key,
           a.shuffle_seed, a.started_at, a.deadline_at, a.saved_answers, a.submission_id,
           q.course_id, q.instructor_id, q.revision
    FROM attempts a JOIN quizzes q ON q.id = a.quiz_id
"""


async def attempt(conn: AsyncConnection, attempt_id: str) -> Row[Any] | None:
    return (await conn.execute(text(_ATTEMPT + " WHERE a.id = :id"), {"id": attempt_id})).first()


async def open_attempt(conn: AsyncConnection, quiz_id: str, user_id: str) -> Row[Any] | None:
    sql = _ATTEMPT + f" WHERE a.quiz_id = :q AND a.user_id = :u AND a.state = {IN_PROGRESS}"
    return (await conn.execute(text(sql), {"q": quiz_id, "u": user_id})).first()


async def attempt_by_start_key(conn: AsyncConnection, user_id: str, key: str) -> Row[Any] | None:
    sql = _ATTEMPT + " WHERE a.user_id = :u AND a.start_key = :k"
    return (await conn.execute(text(sql), {"u": user_id, "k": key})).first()


async def save_answers(conn: AsyncConnection, attempt_id: str, answers: bytes) -> bool:
    sql = f"UPDATE attempts SET saved_answers = :a WHERE id = :id AND state = {IN_PROGRESS}"
    result = await conn.execute(text(sql), {"id": attempt_id, "a": answers})
    return bool(result.rowcount)


async def expired_attempts(
    conn: AsyncConnection, cutoff: datetime, limit: int
) -> Sequence[Row[Any]]:
    """Open attempts whose deadline (plus grace) passed, locked for this sweeper only."""
    sql = f"""
        SELECT a.id FROM attempts a
        WHERE a.state = {IN_PROGRESS} AND a.deadline_at < :cutoff
        ORDER BY a.deadline_at LIMIT :limit
        FOR UPDATE SKIP LOCKED
    """
    return (await conn.execute(text(sql), {"cutoff": cutoff, "limit": limit})).all()


async def expire_attempt(conn: AsyncConnection, attempt_id: str) -> None:
    sql = f"UPDATE attempts SET state = {EXPIRED} WHERE id = :id AND state = {IN_PROGRESS}"
    await conn.execute(text(sql), {"id": attempt_id})
