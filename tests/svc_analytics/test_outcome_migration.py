"""Migration 0003: the per-answer rows become each submission's outcome arrays, and back.

Runs on a database of its own on the stack's Postgres, so the running analytics service's
schema is never touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic import command
from psycopg import sql

from devstack.stack import Endpoints
from mesh.db import libpq_url
from mesh.migrate import alembic_config

BEFORE = "0002_stats_entry"


@pytest.fixture
def scratch_url(stack: Endpoints) -> Iterator[str]:
    name = f"analytics_migration_{uuid.uuid4().hex[:12]}"
    admin = libpq_url(stack.database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    head, _, _ = stack.database_url.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_answers_move_into_the_submission_arrays_and_back(scratch_url: str) -> None:
    config = alembic_config("analytics", scratch_url)
    assert config is not None
    command.upgrade(config, "head")
    command.downgrade(config, BEFORE)
    sub, stale_sub, course, quiz, user = (uuid.uuid4() for _ in range(5))
    q1, q2, q3 = sorted(uuid.uuid4() for _ in range(3))
    with psycopg.connect(libpq_url(scratch_url), autocommit=True) as conn:
        conn.execute("SET search_path TO analytics")
        for s, version in ((sub, 2), (stale_sub, 1)):
            conn.execute(
                "INSERT INTO submissions (submission_id, course_id, quiz_id, user_id,"
                " attempt_number, grade_version, score_percent, passed, graded_at)"
                " VALUES (%s, %s, %s, %s, 1, %s, 50, false, now())",
                [s, course, quiz, user, version],
            )
        # q3 was answered under grade 1 only: the current grade (2) no longer has it.
        rows = [(sub, q2, 1, 2, True), (sub, q1, 0, 2, False), (sub, q3, 2, 1, True),
                (stale_sub, q1, 0, 1, True)]  # fmt: skip
        for s, q, position, version, correct in rows:
            conn.execute(
                "INSERT INTO answers (submission_id, question_id, course_id, quiz_id, position,"
                " grade_version, correct) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [s, q, course, quiz, position, version, correct],
            )
    command.upgrade(config, "head")
    with psycopg.connect(libpq_url(scratch_url), autocommit=True) as conn:
        conn.execute("SET search_path TO analytics")
        got = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT submission_id, question_ids, positions, correct FROM submissions"
            )
        }
        assert got == {sub: ([q1, q2], [0, 1], [False, True]), stale_sub: ([q1], [0], [True])}
        assert conn.execute("SELECT to_regclass('analytics.answers')").fetchone() == (None,)
    # And back: the arrays become rows again.
    command.downgrade(config, BEFORE)
    with psycopg.connect(libpq_url(scratch_url), autocommit=True) as conn:
        back = conn.execute(
            "SELECT submission_id, question_id, position, correct FROM analytics.answers"
            " ORDER BY submission_id, position"
        ).fetchall()
    assert sorted(back) == sorted(
        [(sub, q1, 0, False), (sub, q2, 1, True), (stale_sub, q1, 0, True)]
    )
