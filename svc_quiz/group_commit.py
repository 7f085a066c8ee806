"""Group commit for one-call submissions (the exam rush path, finding C1).

Concurrent SubmitQuiz calls queue their graded rows; one writer task takes everything queued
once the oldest has waited the linger (10 ms by default) and writes it in one statement
(attempts opened already submitted, their submissions and outbox rows:
svc_quiz.group_commit_sql), however many submissions it carries, on psycopg's own connection in
autocommit mode: one round trip per batch, binary parameters, no SQLAlchemy execution on the hot
path. Each caller awaits its own outcome, and none is answered before the statement holding its
row committed, so an acknowledged submission is never lost. Idempotency stays with the unique
indexes: a repeat of a key (in the same batch or a later one) loses at ON CONFLICT DO NOTHING
and is answered from the row that won, exactly as a lone transaction would be. An attempt number
clash (a concurrent writer, or one student twice in a batch), or a deadlock with another
replica's batch, sends the batch through the transactional path instead, which settles such rows
one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.outbox import BatchEvent, Outbox
from svc_quiz import group_commit_sql as sql
from svc_quiz import submission_repository as srepo
from svc_quiz.grades import EventRow

log = logging.getLogger("svc_quiz.group_commit")


@dataclass(slots=True)
class Pending:
    """One submission waiting for its batch: the attempt to open, the submission values
    (attempt_number is filled in by the batch) and its outbox row, if it has one."""

    attempt: dict[str, Any]
    values: dict[str, Any]
    event: EventRow | None
    future: asyncio.Future[bool]
    queued_at: float


class GroupCommit:
    def __init__(
        self, db: Database, outbox: Outbox, max_batch: int = 500, linger_seconds: float = 0.0
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._max = max_batch
        self._linger = linger_seconds
        self._queue: list[Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.after_commit: Callable[[], None] = lambda: None

    async def submit(
        self, attempt: dict[str, Any], values: dict[str, Any], event: EventRow | None
    ) -> bool:
        """Queue one submission and wait for its batch's commit; True when it was written,
        False when its attempt or key met an earlier row (the caller answers from that)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append(Pending(attempt, values, event, future, loop.time()))
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
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                # A batch waits for company until its oldest submission has waited `linger`
                # (or it is full): a batch costs a round trip and the statement's fixed work
                # whatever it carries, and the relay and the analytics consumer batch along.
                # Back-to-back batches under load carried ~2 submissions each; this way
                # a batch holds what arrives in `linger`, and no submission waits longer.
                if self._linger and len(self._queue) < self._max:
                    wait = self._queue[0].queued_at + self._linger - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._write(batch)

    async def _write(self, batch: list[Pending]) -> None:
        try:
            try:
                written = await write_one_statement(self._db, batch)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                async with self._db.transaction() as conn:
                    written = await write_batch(conn, batch, self._outbox)
        except Exception as exc:  # every caller of the batch gets the failure
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.after_commit()
        for p, ok in zip(batch, written, strict=True):
            if not p.future.done():
                p.future.set_result(ok)


def _in_lock_order(batch: list[Pending]) -> list[Pending]:
    """The batch by quiz and student: replicas writing one student's attempts at once then
    take the attempt-number locks in the same order and wait for each other instead of
    deadlocking (measured: 7 of 40 crossed pairs of 20-student batches deadlocked unsorted).
    Outcomes are matched back by id, so the order is the statement's alone."""
    return sorted(batch, key=lambda p: (str(p.values["quiz_id"]), str(p.values["user_id"])))


def statement_params(batch: list[Pending]) -> dict[str, list[Any]]:
    batch = _in_lock_order(batch)
    params = srepo.columns([p.values for p in batch], sql.SUBMISSION_INPUT)
    params.update(srepo.columns([p.attempt for p in batch], sql.ATTEMPT_ARRAYS))
    events = [p.event for p in batch]
    params["event_id"] = [uuid.UUID(e.event_id) if e else None for e in events]
    params["event_subject"] = [e.subject if e else None for e in events]
    params["event_head"] = [e.head if e else None for e in events]
    params["event_tail"] = [e.tail if e else None for e in events]
    params["event_traceparent"] = [e.traceparent if e else None for e in events]
    return params


async def write_one_statement(db: Database, batch: list[Pending]) -> list[bool]:
    """Write a batch in one autocommit statement; per item, whether it was written. Raises
    UniqueViolation (nothing written) when an attempt number was taken meanwhile."""
    async with db.write_driver("INSERT quiz group commit") as conn:
        # One round trip (a pipeline: one implicit transaction, so a failure rolls the SET
        # back too) and the statement's generic plan (see group_commit_sql.GENERIC_PLAN).
        # The settings are never prepared. psycopg prepares a statement on its fifth run, and
        # in a pipeline it counts the statement as prepared when it sends it; after a unique
        # violation the server skips the rest of the pipeline, Parse included, so every later
        # RESET on that connection failed with "prepared statement does not exist" (INTERNAL).
        async with conn.pipeline():
            await conn.execute(sql.GENERIC_PLAN, prepare=False)
            cursor = await conn.execute(sql.ONE_STATEMENT, statement_params(batch), prepare=True)
            await conn.execute(sql.DEFAULT_PLAN, prepare=False)
        numbers = dict(await cursor.fetchall())
    written = []
    for p in batch:
        number = numbers.get(p.values["id"])
        if number is not None:
            p.values["attempt_number"] = number
        written.append(number is not None)
    return written


async def write_batch(conn: AsyncConnection, batch: list[Pending], outbox: Outbox) -> list[bool]:
    """Write a batch inside the caller's transaction; per item, whether it was written."""
    ordered = _in_lock_order(batch)
    params = srepo.columns([p.values for p in ordered], srepo.SUBMISSION_ARRAYS)
    params.update(srepo.columns([p.attempt for p in ordered], sql.ATTEMPT_ARRAYS))
    result = await conn.execute(sql.INSERT_BATCH, params)
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
        await conn.execute(sql.DROP_ATTEMPTS, {"ids": lost})
    events = [
        BatchEvent(
            p.event.event_id,
            p.event.subject,
            p.event.payload(p.values["attempt_number"]),
            p.event.traceparent,
        )
        for p in done
        if p.event is not None
    ]
    await outbox.add_many(conn, events)
    written = {p.values["id"] for p in done}
    return [p.values["id"] in written for p in batch]
