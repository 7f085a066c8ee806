"""Group commit for one-call submissions (the exam rush path, finding C1).

Concurrent SubmitQuiz calls queue their graded rows; one writer task takes everything queued
and writes it in one transaction of two set-based statements (attempts opened already
submitted together with their submissions; outbox rows), however many submissions it
carries. Each caller awaits its own outcome, and none is answered before the transaction
holding its row committed, so an acknowledged submission is never lost. Idempotency stays
with the unique indexes: a repeat of a key (in the same batch or a later one) loses at ON
CONFLICT DO NOTHING and is answered from the row that won, exactly as a lone transaction
would be. The column list of a submission is svc_quiz.submission_repository's, shared with
the insert a lone submission (with an attempt already open) goes through.
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
from svc_quiz import submission_repository as srepo
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


_ATTEMPT_ARRAYS = {
    "start_key": "text",
    "shuffle_seed": "int",
    "started_at": "timestamptz",
    "max_attempts": "int",
}
_INPUT = {**srepo.SUBMISSION_ARRAYS, **_ATTEMPT_ARRAYS}
_INPUT_COLUMNS = ", ".join(_INPUT)
_INPUT_ARRAYS = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in _INPUT.items())
_SUBMISSION_VALUES = ", ".join(
    "a.attempt_number" if c == "attempt_number" else f"i.{c}" for c in srepo.SUBMISSION_ARRAYS
)

# One statement per batch: each attempt is opened already SUBMITTED (it closes in the same
# transaction anyway, and writing the final row at once spares an UPDATE that would rewrite
# every index of attempts), numbered after the student's earlier ones and within the quiz's
# limit, then its submission goes in with that number. Data-modifying CTEs share one
# snapshot, so the submission takes its attempt number from `a`'s RETURNING. The open-attempt
# check stands in for uq_attempts_open, which a row never IN_PROGRESS does not enter: a
# one-call submission is refused while the student has an attempt open.
_INSERT_BATCH = text(
    f"""
    WITH i AS (
      SELECT * FROM unnest({_INPUT_ARRAYS}) AS i({_INPUT_COLUMNS})
    ), a AS (
      INSERT INTO attempts (id, quiz_id, user_id, attempt_number, quiz_version, state,
                            start_key, shuffle_seed, started_at, deadline_at, submission_id)
      SELECT i.attempt_id, i.quiz_id, i.user_id, c.n + 1, i.quiz_version, {SUBMITTED},
             i.start_key, i.shuffle_seed, i.started_at, NULL, i.id
      FROM i CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM attempts o WHERE o.quiz_id = i.quiz_id AND o.user_id = i.user_id
      ) c
      WHERE (i.max_attempts = 0 OR c.n < i.max_attempts)
        AND NOT EXISTS (
          SELECT 1 FROM attempts o
          WHERE o.quiz_id = i.quiz_id AND o.user_id = i.user_id AND o.state = {IN_PROGRESS}
        )
      ON CONFLICT DO NOTHING
      RETURNING id, attempt_number
    ), s AS (
      INSERT INTO submissions ({srepo.SUBMISSION_COLUMNS_NEW})
      SELECT {_SUBMISSION_VALUES} FROM i JOIN a ON a.id = i.attempt_id
      ON CONFLICT DO NOTHING
      RETURNING id
    )
    SELECT a.id, a.attempt_number, s.id IS NOT NULL AS written
    FROM a JOIN i ON i.attempt_id = a.id LEFT JOIN s ON s.id = i.id
    """
)

# An attempt whose submission lost to an earlier key goes again: a lone transaction would
# have rolled it back.
_DROP_ATTEMPTS = text("DELETE FROM attempts WHERE id = ANY(CAST(:ids AS uuid[]))")


async def write_batch(
    conn: AsyncConnection, batch: list[Pending], outbox: Outbox, events: EventRows
) -> list[bool]:
    """Write a batch inside the caller's transaction; per item, whether it was written."""
    params = srepo.columns([p.values for p in batch], srepo.SUBMISSION_ARRAYS)
    params.update(srepo.columns([p.attempt for p in batch], _ATTEMPT_ARRAYS))
    result = await conn.execute(_INSERT_BATCH, params)
    opened = {row.id: row for row in result}
    done = []
    lost = []
    for p in batch:
        row = opened.get(p.values["attempt_id"])
        if row is None:
            continue
        if row.written:
            p.values["attempt_number"] = row.attempt_number
            done.append(p)
        else:
            lost.append(row.id)
    if lost:
        await conn.execute(_DROP_ATTEMPTS, {"ids": lost})
    await outbox.add_many(conn, events(done))
    written = {p.values["id"] for p in done}
    return [p.values["id"] in written for p in batch]
