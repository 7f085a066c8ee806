"""The SQL of catalog search (kept apart from `repository` so each stays readable)."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Row,
    Text,
    Uuid,
    bindparam,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_course.models import courses
from svc_course.repository import COURSE_COLUMNS

# How many matches a search ranks at most (see search_ranked).
RANK_CANDIDATES = 1000

# Each query word with its nearest vocabulary terms by trigram distance (KNN on the GiST index
# ix_search_terms_trgm), and the last word (the one being typed) with the vocabulary terms it
# begins (a range on the primary key: the database collates bytewise). Words are normalised
# exactly as the documents are: unaccent, then the 'simple' configuration.
_VOCABULARY = text(
    """
    WITH w AS (
        SELECT lexeme AS word, (SELECT max(p) FROM unnest(positions) AS p) AS at
        FROM unnest(to_tsvector('simple', public.unaccent(:query)))
    )
    SELECT w.word, t.term, similarity(t.term, w.word) AS score, false AS completes
    FROM w
    LEFT JOIN LATERAL (
        SELECT term FROM courses.search_terms ORDER BY term <-> w.word LIMIT :per_word
    ) AS t ON true
    UNION ALL
    SELECT last.word, c.term, NULL, true
    FROM (SELECT word FROM w ORDER BY at DESC LIMIT 1) AS last
    CROSS JOIN LATERAL (
        SELECT term FROM courses.search_terms
        WHERE term >= last.word AND term < last.word || chr(1114111)
          AND starts_with(term, last.word)
        ORDER BY term LIMIT :completions
    ) AS c
    WHERE length(last.word) >= :min_prefix
    """
)


async def vocabulary(
    conn: AsyncConnection, query: str, per_word: int, completions: int, min_prefix: int
) -> list[Row]:
    """(word, term, score, completes) rows: each word's nearest terms (completes false, with
    their similarity), and up to `completions` terms the last word begins (completes true)."""
    params = {
        "query": query,
        "per_word": per_word,
        "completions": completions,
        "min_prefix": min_prefix,
    }
    return list((await conn.execute(_VOCABULARY, params)).all())


def _filters(stmt: Any, category: str | None, level: str | None, language: str | None) -> Any:
    stmt = stmt.where(courses.c.state == "published")
    if category is not None:
        stmt = stmt.where(courses.c.category == category)
    if level is not None:
        stmt = stmt.where(courses.c.level == level)
    if language is not None:
        stmt = stmt.where(courses.c.language == language)
    return stmt


async def search_ranked(
    conn: AsyncConnection,
    *,
    tsquery: str | None,
    title_substring: str | None,
    category: str | None,
    level: str | None,
    language: str | None,
    limit: int,
    after: tuple[float, uuid.UUID] | None,
) -> list[Row]:
    """Published courses matching the tsquery (GIN ix_courses_search_document) or containing
    the substring in their title (GIN trigram ix_courses_search_title_trgm; for scripts
    without spaces between words), by rank then id. Rank is ts_rank_cd over the weighted
    document (title A, tags B, description C), plus 1 for a title substring hit; it is cast to
    float8 so a page token's rank compares exactly.

    Only the newest RANK_CANDIDATES matches are ranked. A broad query ("learn" matches half of
    100,000 courses) otherwise ranks every match, ~75 ms of matching alone; newest first walks
    ix_courses_published_created and stops at the cap (~5 ms), while a narrow query takes the
    GIN index and ranks all its matches as before. The cap's order is total (created_at, id),
    so every page of one search ranks the same candidates."""
    stmt = _ranked_statement(
        tsquery is not None,
        title_substring is not None,
        category is not None,
        level is not None,
        language is not None,
        after is not None,
    )
    params: dict[str, Any] = {
        "tsq": tsquery,
        "category": category,
        "level": level,
        "language": language,
        "limit": limit,
    }
    if title_substring is not None:
        params["pattern"] = "%" + _escape_like(title_substring) + "%"
    if after is not None:
        params["after_rank"], params["after_id"] = after
    return list((await conn.execute(stmt, params)).all())


@functools.cache
def _ranked_statement(
    tsquery: bool, substring: bool, category: bool, level: bool, language: bool, after: bool
) -> Any:
    """One statement per shape, built once: building the nested selects per call was a third
    of a search's Python time; values come as bound parameters."""
    query = bindparam("tsq", type_=TSQUERY)
    pattern = bindparam("pattern", type_=Text)
    conditions = []
    if tsquery:
        conditions.append(courses.c.search_document.op("@@")(query))
    if substring:
        conditions.append(courses.c.search_title.like(pattern, escape="\\"))
    matches = select(*COURSE_COLUMNS, courses.c.search_document, courses.c.search_title).where(
        or_(*conditions), courses.c.state == "published"
    )
    for wanted, column in ((category, "category"), (level, "level"), (language, "language")):
        if wanted:
            matches = matches.where(courses.c[column] == bindparam(column, type_=Text))
    candidates = (
        matches.order_by(courses.c.created_at.desc(), courses.c.id.desc())
        .limit(RANK_CANDIDATES)
        .subquery("candidates")
    )
    c = candidates.c
    rank: Any = literal(0.0)
    if tsquery:
        rank = rank + func.ts_rank_cd(c.search_document, query)
    if substring:
        rank = rank + cast(c.search_title.like(pattern, escape="\\"), Integer)
    rank = cast(rank, Float(precision=53)).label("rank")
    ranked = select(*(c[col.name] for col in COURSE_COLUMNS), rank).subquery("ranked")
    stmt = (
        select(ranked)
        .order_by(ranked.c.rank.desc(), ranked.c.id)
        .limit(bindparam("limit", type_=Integer))
    )
    if after:
        r = bindparam("after_rank", type_=Float(precision=53))
        ident = bindparam("after_id", type_=Uuid)
        stmt = stmt.where(or_(ranked.c.rank < r, (ranked.c.rank == r) & (ranked.c.id > ident)))
    return stmt


async def browse(
    conn: AsyncConnection,
    *,
    category: str | None,
    level: str | None,
    language: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Row]:
    """No query text: published courses newest first (partial ix_courses_published_created)."""
    stmt = _filters(select(*COURSE_COLUMNS), category, level, language)
    if after is not None:
        stmt = stmt.where(tuple_(courses.c.created_at, courses.c.id) < tuple_(*after))
    stmt = stmt.order_by(courses.c.created_at.desc(), courses.c.id.desc()).limit(limit)
    return list((await conn.execute(stmt)).all())


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
