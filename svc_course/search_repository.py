"""The SQL of catalog search (kept apart from `repository` so each stays readable)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Row,
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

# Each query word with its nearest vocabulary terms by trigram distance (KNN on the GiST index
# ix_search_terms_trgm). Words are normalised exactly as the documents are: unaccent, then the
# 'simple' configuration.
_NEAREST_TERMS = text(
    """
    SELECT w.word, t.term, similarity(t.term, w.word) AS score
    FROM unnest(tsvector_to_array(to_tsvector('simple', public.unaccent(:query)))) AS w(word)
    LEFT JOIN LATERAL (
        SELECT term FROM courses.search_terms ORDER BY term <-> w.word LIMIT :per_word
    ) AS t ON true
    """
)


async def nearest_terms(conn: AsyncConnection, query: str, per_word: int) -> list[Row]:
    result = await conn.execute(_NEAREST_TERMS, {"query": query, "per_word": per_word})
    return list(result.all())


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
    float8 so a page token's rank compares exactly."""
    conditions = []
    rank: Any = literal(0.0)
    if tsquery is not None:
        query = bindparam("tsq", tsquery, type_=TSQUERY)
        conditions.append(courses.c.search_document.op("@@")(query))
        rank = rank + func.ts_rank_cd(courses.c.search_document, query)
    if title_substring is not None:
        pattern = "%" + _escape_like(title_substring) + "%"
        hit = courses.c.search_title.like(pattern, escape="\\")
        conditions.append(hit)
        rank = rank + cast(hit, Integer)
    rank = cast(rank, Float(precision=53)).label("rank")
    inner = _filters(
        select(*COURSE_COLUMNS, rank).where(or_(*conditions)), category, level, language
    )
    ranked = inner.subquery("ranked")
    stmt = select(ranked).order_by(ranked.c.rank.desc(), ranked.c.id).limit(limit)
    if after is not None:
        r, ident = after
        stmt = stmt.where(or_(ranked.c.rank < r, (ranked.c.rank == r) & (ranked.c.id > ident)))
    return list((await conn.execute(stmt)).all())


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
