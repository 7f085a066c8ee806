"""Submissions are found by index (finding C4): by student, by quiz, by (quiz, score) and by
grading status. The repository's own statements are captured and EXPLAINed against 60,000
submissions, where a sequential scan would be the planner's choice without the index."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from svc_quiz import repository as repo
from svc_quiz import submission_repository as srepo

POPULATE = [
    """
    INSERT INTO quizzes.submissions (id, quiz_id, course_id, user_id, attempt_id,
        attempt_number, quiz_version, grading_status, idempotency_key, answers_digest, answers,
        late, late_penalty_percent, submitted_at, score, max_score, score_percent, passed,
        graded_at, grade_version)
    SELECT gen_random_uuid(), md5('xq' || (i % 200))::uuid, md5('xc' || (i % 20))::uuid,
           md5('xu' || (i % 6000))::uuid, gen_random_uuid(), 1, 1,
           CASE WHEN i % 500 = 0 THEN 1 ELSE 3 END, 'explain-' || i, '\\x00', '\\x',
           false, 0, now() - (i || ' seconds')::interval, i % 20, 20, (i % 20) * 5,
           i % 20 >= 10, now(), 1
    FROM generate_series(1, 60000) AS i
    """,
    "ANALYZE quizzes.submissions",
]


def ident(tag: str, i: int) -> str:
    return str(uuid.UUID(hashlib.md5(f"{tag}{i}".encode()).hexdigest()))


@pytest.fixture(scope="module")
def populated(sql: psycopg.Connection) -> Iterator[psycopg.Connection]:
    row = sql.execute(
        "SELECT count(*) FROM quizzes.submissions WHERE idempotency_key LIKE 'explain-%'"
    ).fetchone()
    if row is None or row[0] == 0:
        with sql.transaction():
            for statement in POPULATE:
                sql.execute(statement)  # type: ignore[arg-type]
    yield sql


class _Result:
    rowcount = 0

    def all(self) -> list[Any]:
        return []

    def first(self) -> None:
        return None

    def one(self) -> None:
        return None


class Recorder:
    """Stands in for a connection and keeps the statements a repository function issues."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, dict[str, Any]]] = []

    async def execute(self, statement: Any, params: dict[str, Any] | None = None) -> _Result:
        compiled = statement.compile(dialect=pg_dialect.dialect())
        self.statements.append((str(compiled), dict(params or {})))
        return _Result()


def plan(sql: psycopg.Connection, statement: str, params: dict[str, Any]) -> str:
    """The plan, with the service's search path (its statements name bare tables)."""
    with sql.transaction():
        sql.execute("SET LOCAL search_path TO quizzes, public")
        rows = sql.execute("EXPLAIN " + statement, params).fetchall()  # type: ignore[arg-type]
    return "\n".join(r[0] for r in rows)


async def test_my_submissions_use_the_user_index(populated: psycopg.Connection) -> None:
    rec = Recorder()
    await srepo.list_user_submissions(rec, ident("xu", 7), None, None, None, 21)  # type: ignore[arg-type]
    assert "ix_submissions_user_time" in plan(populated, *rec.statements[0])


async def test_quiz_submissions_use_the_quiz_index(populated: psycopg.Connection) -> None:
    rec = Recorder()
    await srepo.list_quiz_submissions(rec, ident("xq", 3), 0, None, 101)  # type: ignore[arg-type]
    await srepo.list_quiz_submissions(rec, ident("xq", 3), 2, None, 101)  # type: ignore[arg-type]
    assert "ix_submissions_quiz_time" in plan(populated, *rec.statements[0])
    # Filtered by a rare status, the status index is the cheaper way in; never a full scan.
    filtered = plan(populated, *rec.statements[1])
    assert "Seq Scan" not in filtered
    assert "ix_submissions_quiz_time" in filtered or "ix_submissions_status_time" in filtered


async def test_regrade_selection_uses_an_index(populated: psycopg.Connection) -> None:
    rec = Recorder()
    await repo.mark_regrading(rec, ident("xq", 3), 9)  # type: ignore[arg-type]
    text = plan(populated, *rec.statements[0])
    assert "Seq Scan on submissions" not in text
    assert "ix_submissions_quiz" in text


def test_top_scores_of_a_quiz_use_the_score_index(populated: psycopg.Connection) -> None:
    text = plan(
        populated,
        "SELECT user_id, score FROM quizzes.submissions WHERE quiz_id = %(q)s"
        " ORDER BY score DESC LIMIT 10",
        {"q": ident("xq", 5)},
    )
    assert "ix_submissions_quiz_score" in text


def test_oldest_pending_submissions_use_the_status_index(populated: psycopg.Connection) -> None:
    text = plan(
        populated,
        "SELECT id FROM quizzes.submissions WHERE grading_status = 1"
        " ORDER BY submitted_at LIMIT 100",
        {},
    )
    assert "ix_submissions_status_time" in text
