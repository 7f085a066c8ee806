"""How the group commit gathers its batches and what one row costs it: a batch waits for company
until its oldest submission has waited the linger, also when the writer is busy (back-to-back
batches carried ~2 submissions each under load), and a student's attempt number is read from
the top of the index, not by counting every earlier attempt."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg
import pytest

from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from mesh.db import Database
from mesh.outbox import Outbox
from svc_quiz import group_commit_sql
from svc_quiz.group_commit import GroupCommit, Pending, statement_params, write_one_statement
from svc_quiz.models import outbox
from tests.svc_quiz.conftest import Classroom, choice, new_quiz
from tests.svc_quiz.group_commit_rows import pending

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


class _RecordingCommit(GroupCommit):
    """Records each batch's size and start; `slow` stands for a round trip that long."""

    def __init__(self, db: Database, linger: float, slow: float = 0.0) -> None:
        super().__init__(db, Outbox(outbox), linger_seconds=linger)
        self.batches: list[list[Pending]] = []
        self.started: list[float] = []
        self._slow = slow

    async def _write(self, batch: list[Pending]) -> None:
        self.batches.append(batch)
        self.started.append(asyncio.get_running_loop().time())
        if self._slow:
            await asyncio.sleep(self._slow)
        await super()._write(batch)


async def _submit(commit: GroupCommit, quiz: Any, key: str) -> bool:
    p = pending(quiz, str(uuid.uuid4()), key)
    return await commit.submit(p.attempt, p.values, p.event)


@SESSION_LOOP
async def test_a_lingering_writer_puts_submissions_a_moment_apart_in_one_batch(
    quizzes: QuizServiceStub, classroom: Classroom, db: Database
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    commit = _RecordingCommit(db, linger=0.5)
    try:
        first = asyncio.create_task(_submit(commit, quiz, "first"))
        # The scenario, not a synchronisation: the second student submits 50 ms after the
        # first, well within the linger.
        await asyncio.sleep(0.05)
        second = asyncio.create_task(_submit(commit, quiz, "second"))
        assert await asyncio.gather(first, second) == [True, True]
    finally:
        await commit.close()
    assert [len(b) for b in commit.batches] == [2]


@SESSION_LOOP
async def test_a_busy_writer_still_lets_the_next_batch_gather_for_the_linger(
    quizzes: QuizServiceStub, classroom: Classroom, db: Database
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    linger = 0.3
    # Each write takes 0.15 s, so B arrives while A's batch is being written. Written back to
    # back, B would go alone the moment A's batch is done, and C alone after it.
    commit = _RecordingCommit(db, linger=linger, slow=0.15)
    try:
        a = asyncio.create_task(_submit(commit, quiz, "a"))
        await asyncio.sleep(linger + 0.05)  # the scenario's spacing: A's batch is in flight
        b = asyncio.create_task(_submit(commit, quiz, "b"))
        await asyncio.sleep(0.15)  # C arrives 0.15 s after B, within B's linger
        c = asyncio.create_task(_submit(commit, quiz, "c"))
        assert await asyncio.gather(a, b, c) == [True, True, True]
    finally:
        await commit.close()
    keys = [[p.values["idempotency_key"] for p in batch] for batch in commit.batches]
    assert keys == [["a"], ["b", "c"]]
    # B's batch went when B had waited the linger, not later (on C's schedule).
    b_queued = commit.batches[1][0].queued_at
    assert b_queued + linger <= commit.started[1] < commit.batches[1][1].queued_at + linger


def _index_scans(plan: dict[str, Any], index: str) -> list[dict[str, Any]]:
    found = [plan] if plan.get("Index Name") == index else []
    for child in plan.get("Plans", []):
        found += _index_scans(child, index)
    return found


@SESSION_LOOP
async def test_the_attempt_number_is_read_from_the_top_of_the_index(
    quizzes: QuizServiceStub, classroom: Classroom, db: Database, sql: psycopg.Connection
) -> None:
    # Counting a student's earlier attempts read all of them for every submission: a practice
    # quiz with unlimited attempts made each one dearer than the last.
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    user = str(uuid.uuid4())
    for n in range(30):
        assert await write_one_statement(db, [pending(quiz, user, f"k{n}")]) == [True]
    batch = [pending(quiz, user, "k30")]
    with sql.transaction(force_rollback=True):
        sql.execute("SET LOCAL search_path TO quizzes")
        (explained,) = sql.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + group_commit_sql.ONE_STATEMENT,
            statement_params(batch),
        ).fetchone()
        numbers = sql.execute(
            "SELECT max(attempt_number) FROM quizzes.attempts WHERE user_id = %s", (user,)
        ).fetchone()
    assert numbers == (31,)
    plan = (explained if isinstance(explained, list) else json.loads(explained))[0]["Plan"]
    scans = _index_scans(plan, "uq_attempts_number")
    assert scans, "the number comes from the (quiz, student, number) index"
    assert all(s["Actual Rows"] <= 1 for s in scans), scans
