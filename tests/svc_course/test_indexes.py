"""Every query path of the course service has its index (findings C4, M2): the repository's
own statements are captured, then EXPLAINed against tens of thousands of rows, where a
sequential scan would be the planner's choice without the index."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.dialects import postgresql

from svc_course import repository as repo
from svc_course import search_repository as search_repo

FIXTURE = "explain-fixture"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma"]

# Generated in SQL: 20,000 courses (half published, 0.1 % carrying a rare word), 40,000
# enrollments of 300 students in 134 of them (2 % completed), 20,000 videos, 20,000 progress
# rows (200 viewers x 100 videos) and 20,000 vocabulary terms. Ids derive from md5(i), so the
# test can name existing rows.
POPULATE = [
    f"""
    INSERT INTO courses.courses (id, instructor_id, title, description, category, language, state)
    SELECT md5('c' || i)::uuid, md5('i' || (i % 2000))::uuid,
           'Fixture ' || (ARRAY{WORDS!r})[i % 10 + 1] || ' ' || (ARRAY{WORDS!r})[i / 10 % 10 + 1]
             || CASE WHEN i % 1000 = 0 THEN ' quasar' ELSE '' END,
           repeat('A generated description of a course, long enough to be realistic. ', 8),
           '{FIXTURE}', 'en',
           CASE WHEN i % 2 = 0 THEN 'published' ELSE 'draft' END
    FROM generate_series(1, 20000) AS i
    """,
    """
    INSERT INTO courses.enrollments (user_id, course_id, state, completed_at, enrolled_at)
    SELECT md5('u' || (i % 300))::uuid, md5('c' || (i / 300 + 1))::uuid,
           CASE WHEN i % 50 = 0 THEN 'completed' ELSE 'active' END,
           CASE WHEN i % 50 = 0 THEN now() - (i || ' seconds')::interval END,
           now() - (i || ' seconds')::interval
    FROM generate_series(1, 40000) AS i
    ON CONFLICT DO NOTHING
    """,
    """
    INSERT INTO courses.videos (course_id, title, position)
    SELECT md5('c' || (i % 2000 + 1))::uuid, 'v', i / 2000 + 1
    FROM generate_series(1, 20000) AS i
    """,
    """
    INSERT INTO courses.video_progress (user_id, video_id, course_id)
    SELECT md5('u' || (i % 200))::uuid, md5('v' || (i / 200))::uuid,
           md5('c' || (i / 2000 + 1))::uuid
    FROM generate_series(1, 20000) AS i
    """,
    """
    INSERT INTO courses.search_terms (term)
    SELECT 'zz' || md5('t' || i) FROM generate_series(1, 20000) AS i ON CONFLICT DO NOTHING
    """,
    "ANALYZE courses.courses, courses.enrollments, courses.videos, courses.video_progress,"
    " courses.search_terms",
]


def ident(tag: str, i: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"{tag}{i}".encode()).hexdigest())


@pytest.fixture(scope="module")
def populated(sql: psycopg.Connection) -> Iterator[psycopg.Connection]:
    row = sql.execute(
        "SELECT count(*) FROM courses.courses WHERE category = %s", (FIXTURE,)
    ).fetchone()
    if row is None or row[0] == 0:
        with sql.transaction():
            for statement in POPULATE:
                sql.execute(statement)  # type: ignore[arg-type]
    yield sql


class _Result:
    def first(self) -> None:
        return None

    def all(self) -> list[Any]:
        return []

    def scalars(self) -> list[Any]:
        return []


class Capture:
    """Stands in for a connection: keeps the statement a repository function would run."""

    def __init__(self) -> None:
        self.statement: Any = None
        self.params: dict[str, Any] = {}

    async def execute(self, statement: Any, params: dict[str, Any] | None = None) -> _Result:
        self.statement, self.params = statement, dict(params or {})
        return _Result()


def plan(conn: psycopg.Connection, captured: Capture) -> str:
    compiled = captured.statement.compile(
        dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True}
    )
    params = {**compiled.params, **captured.params}
    rows = conn.execute("EXPLAIN " + str(compiled), params).fetchall()  # type: ignore[arg-type]
    return "\n".join(r[0] for r in rows)


async def explain(conn: psycopg.Connection, call: Any, *args: Any, **kwargs: Any) -> str:
    captured = Capture()
    await call(captured, *args, **kwargs)
    return plan(conn, captured)


def uses(index: str, text: str) -> None:
    assert index in text, f"expected {index} in the plan:\n{text}"


async def test_enrollments_by_user_use_their_index(populated: psycopg.Connection) -> None:
    text = await explain(
        populated,
        repo.list_enrollments,
        user_id=ident("u", 7),
        states=("active", "completed"),
        limit=21,
        after=None,
    )
    uses("ix_enrollments_user_enrolled", text)


async def test_enrollments_by_course_use_their_index(populated: psycopg.Connection) -> None:
    text = await explain(
        populated,
        repo.list_enrollments,
        course_id=ident("c", 5),
        states=("active", "completed"),
        limit=101,
        after=(datetime.now(UTC), uuid.uuid4()),
    )
    uses("ix_enrollments_course_enrolled", text)


async def test_enrollment_of_user_in_course_uses_the_unique_index(
    populated: psycopg.Connection,
) -> None:
    text = await explain(populated, repo.enrollment_of, ident("u", 9), ident("c", 10))
    uses("uq_enrollments_user_course", text)


async def test_completed_enrollments_use_the_partial_index(populated: psycopg.Connection) -> None:
    since = datetime.now(UTC) - timedelta(days=1)
    text = await explain(populated, repo.completed_enrollments, ident("c", 51), since, 100)
    uses("ix_enrollments_completed", text)


async def test_videos_by_course_use_their_index(populated: psycopg.Connection) -> None:
    text = await explain(populated, repo.list_videos, ident("c", 3), 101, None)
    uses("ix_videos_course_position", text)


async def test_courses_by_instructor_use_their_index(populated: psycopg.Connection) -> None:
    text = await explain(
        populated, repo.list_instructor_courses, ident("i", 4), ("published",), 21, None
    )
    uses("ix_courses_instructor", text)


@pytest.mark.parametrize(
    ("where", "index"),
    [
        ("user_id = %(u)s AND video_id = %(v)s", "pk_video_progress"),
        ("video_id = %(v)s", "ix_video_progress_video"),
        ("user_id = %(u)s AND course_id = %(c)s", "ix_video_progress_user_course"),
    ],
)
def test_progress_lookups_use_their_indexes(
    populated: psycopg.Connection, where: str, index: str
) -> None:
    rows = populated.execute(
        "EXPLAIN SELECT * FROM courses.video_progress WHERE " + where,  # type: ignore[arg-type]
        {"u": ident("u", 11), "v": ident("v", 11), "c": ident("c", 12)},
    ).fetchall()
    uses(index, "\n".join(r[0] for r in rows))


async def test_full_text_search_uses_the_gin_index(populated: psycopg.Connection) -> None:
    text = await explain(
        populated,
        search_repo.search_ranked,
        tsquery="'quasar':*",
        title_substring=None,
        category=None,
        level=None,
        language=None,
        limit=21,
        after=None,
    )
    uses("ix_courses_search_document", text)


async def test_title_substring_search_uses_the_trigram_index(
    populated: psycopg.Connection,
) -> None:
    text = await explain(
        populated,
        search_repo.search_ranked,
        tsquery=None,
        title_substring="日本語入門",
        category=None,
        level=None,
        language=None,
        limit=21,
        after=None,
    )
    uses("ix_courses_search_title_trgm", text)


async def test_typo_correction_uses_the_trigram_knn_index(populated: psycopg.Connection) -> None:
    text = await explain(populated, search_repo.vocabulary, "pyhton", 4, 17, 3)
    uses("ix_search_terms_trgm", text)


async def test_completing_the_last_word_walks_the_vocabulary_key(
    populated: psycopg.Connection,
) -> None:
    # The fixture's 20,000 'zz…' terms: a prefix is a range on the primary key, not a scan.
    text = await explain(populated, search_repo.vocabulary, "pyhton zz12", 4, 17, 3)
    lines = text.splitlines()
    key = [i for i, line in enumerate(lines) if "search_terms_pkey" in line]
    assert key and any("Index Cond" in line and ">=" in line for line in lines[key[0] :]), text


async def test_browsing_without_query_uses_the_partial_published_index(
    populated: psycopg.Connection,
) -> None:
    text = await explain(
        populated,
        search_repo.browse,
        category=None,
        level=None,
        language=None,
        limit=21,
        after=None,
    )
    uses("ix_courses_published_created", text)


async def test_search_ranks_a_capped_candidate_set(populated: psycopg.Connection) -> None:
    # Every fixture title holds "fixture": ranking all 10,000 published matches is what made
    # broad queries slow. Rank must be computed over a LIMITed candidate set (the newest
    # RANK_CANDIDATES matches), whichever index the planner picks to find them.
    text = await explain(
        populated,
        search_repo.search_ranked,
        tsquery="'fixture':*",
        title_substring=None,
        category=None,
        level=None,
        language=None,
        limit=21,
        after=None,
    )
    nodes = [line.strip() for line in text.splitlines()]
    scan = next(i for i, line in enumerate(nodes) if "Subquery Scan on candidates" in line)
    assert nodes[scan + 1].startswith("->  Limit"), text
