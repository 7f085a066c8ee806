"""Group commit for one-call submissions (the exam rush path, finding C1).

Concurrent SubmitQuiz calls queue their graded rows; one writer task takes everything queued
and writes it in one transaction of three set-based statements (attempts, submissions that
close them, outbox rows), however many submissions it carries. Each caller awaits its own
outcome, and none is answered before the transaction holding its row committed, so an
acknowledged submission is never lost. Idempotency stays with the unique indexes: a repeat
of a key (in the same batch or a later one) loses at ON CONFLICT DO NOTHING and is answered
from the row that won, exactly as a lone transaction would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh import tracing
from mesh.db import Database
from mesh.outbox import BatchEvent, Outbox
from svc_quiz.repository import IN_PROGRESS, SUBMITTED

log = logging.getLogger("svc_quiz.group_commit")


@dataclass(slots=True)
class Pending:
    """One submission waiting for its batch: the attempt to open and the submission values
    (attempt_number is filled in by the batch)."""

    attempt: dict[str, Any]
    values: dict[str, Any]
    quiz: pb.Quiz
    instructor_id: str
    future: asyncio.Future[bool]
    # The caller's trace: the batch is written by one task, but each event continues the
    # trace of the request that caused it.
    traceparent: str | None = None


# Outbox rows of a batch, for the inserted submissions.
EventRows = Callable[[list[Pending]], list[BatchEvent]]


class GroupCommit:
    def __init__(
        self, db: Database, outbox: Outbox, events: EventRows, max_batch: int = 500
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._events = events
        self._max = max_batch
        self._queue: list[Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.after_commit: Callable[[], None] = lambda: None

    async def submit(
        self,
        attempt: dict[str, Any],
        values: dict[str, Any],
        quiz: pb.Quiz,
        instructor_id: str,
    ) -> bool:
        """Queue one submission and wait for its batch's commit; True when it was written,
        False when its attempt or key met an earlier row (the caller answers from that)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        parent = tracing.current_traceparent()
        self._queue.append(Pending(attempt, values, quiz, instructor_id, future, parent))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="quiz-group-commit")
        # Shielded: a caller that gives up does not cancel a write others share.
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._write(batch)

    async def _write(self, batch: list[Pending]) -> None:
        try:
            async with self._db.transaction() as conn:
                written = await write_batch(conn, batch, self._outbox, self._events)
        except Exception as exc:  # every caller of the batch gets the failure
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.after_commit()
        for p, ok in zip(batch, written, strict=True):
            if not p.future.done():
                p.future.set_result(ok)


_INSERT_ATTEMPTS = text(
    f"""
    INSERT INTO attempts (id, quiz_id, user_id, attempt_number, quiz_version, state, start_key,
                          shuffle_seed, started_at, deadline_at)
    SELECT i.id, i.quiz_id, i.user_id, c.n + 1, i.quiz_version, {IN_PROGRESS}, i.start_key,
           i.shuffle_seed, i.started_at, NULL
    FROM unnest(CAST(:id AS uuid[]), CAST(:quiz_id AS uuid[]), CAST(:user_id AS uuid[]),
                CAST(:quiz_version AS int[]), CAST(:start_key AS text[]),
                CAST(:shuffle_seed AS int[]), CAST(:started_at AS timestamptz[]),
                CAST(:max_attempts AS int[]))
         AS i(id, quiz_id, user_id, quiz_version, start_key, shuffle_seed, started_at,
              max_attempts)
    CROSS JOIN LATERAL (
      SELECT count(*) AS n FROM attempts a WHERE a.quiz_id = i.quiz_id AND a.user_id = i.user_id
    ) c
    WHERE i.max_attempts = 0 OR c.n < i.max_attempts
    ON CONFLICT DO NOTHING
    RETURNING id, attempt_number
    """
)

_SUBMISSION_ARRAYS = {
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
_COLUMNS = ", ".join(_SUBMISSION_ARRAYS)
_UNNEST = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in _SUBMISSION_ARRAYS.items())

# Submissions of the attempts just opened; each closes its attempt in the same statement.
_INSERT_SUBMISSIONS = text(
    f"""
    WITH s AS (
      INSERT INTO submissions ({_COLUMNS})
      SELECT {_COLUMNS} FROM unnest({_UNNEST}) AS i({_COLUMNS})
      ON CONFLICT DO NOTHING
      RETURNING id, attempt_id
    ), a AS (
      UPDATE attempts SET state = {SUBMITTED}, submission_id = s.id
      FROM s WHERE attempts.id = s.attempt_id
    )
    SELECT id FROM s
    """
)

# An attempt whose submission lost to an earlier key goes again: a lone transaction would
# have rolled it back.
_DROP_ATTEMPTS = text("DELETE FROM attempts WHERE id = ANY(CAST(:ids AS uuid[]))")

_ATTEMPT_ARRAYS = (
    "id", "quiz_id", "user_id", "quiz_version", "start_key", "shuffle_seed", "started_at",
    "max_attempts",
)  # fmt: skip


def _columns(rows: list[dict[str, Any]], names: Any) -> dict[str, list[Any]]:
    return {n: [r[n] for r in rows] for n in names}


async def write_batch(
    conn: AsyncConnection, batch: list[Pending], outbox: Outbox, events: EventRows
) -> list[bool]:
    """Write a batch inside the caller's transaction; per item, whether it was written."""
    attempts = [p.attempt for p in batch]
    opened = await conn.execute(_INSERT_ATTEMPTS, _columns(attempts, _ATTEMPT_ARRAYS))
    numbers = {row.id: row.attempt_number for row in opened}
    numbered = [p for p in batch if p.attempt["id"] in numbers]
    for p in numbered:
        p.values["attempt_number"] = numbers[p.attempt["id"]]
    inserted: set[Any] = set()
    if numbered:
        rows = [p.values for p in numbered]
        result = await conn.execute(_INSERT_SUBMISSIONS, _columns(rows, _SUBMISSION_ARRAYS))
        inserted = {row.id for row in result}
    lost = [p.attempt["id"] for p in numbered if p.values["id"] not in inserted]
    if lost:
        await conn.execute(_DROP_ATTEMPTS, {"ids": lost})
    done = [p for p in numbered if p.values["id"] in inserted]
    await outbox.add_many(conn, events(done))
    return [p.values["id"] in inserted for p in batch]
