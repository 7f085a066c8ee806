"""Catalog search over Postgres full-text search, with no extra engine (M3).

A query is normalised like the documents (unaccent, the 'simple' configuration), and each word
becomes `word:*` (a prefix, for search-as-you-type) OR'ed with its nearest vocabulary terms by
trigram similarity when the word itself is not in the vocabulary — so "pyhton" also searches
"python". Words are AND'ed. Scripts written without spaces (CJK) are tokenised as whole runs,
so such queries also match as a substring of the title on the trigram index.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from collections import defaultdict
from datetime import datetime
from typing import NamedTuple, TypeVar

from elearn.course.v1 import course_service_pb2 as pb
from mesh.db import Database
from mesh.errors import InvalidArgument
from svc_course import messages
from svc_course import search_repository as repo
from svc_course.paging import encode_token, pinned_after, split_page

# pg_trgm similarity between a transposition typo and its word is ~0.27 ("pyhton"/"python");
# below 0.25 the "corrections" are mostly unrelated words.
MIN_SIMILARITY = 0.25
CORRECTIONS_PER_WORD = 3
# Prefix matching from this length: a one- or two-letter prefix matches half the catalog.
MIN_PREFIX = 3


def has_unspaced_script(text: str) -> bool:
    """True for CJK ideographs, kana and Hangul, which are written without spaces."""
    for ch in text:
        o = ord(ch)
        if 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF:
            return True
        if 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F:
            return True
    return False


def fold(text: str) -> str:
    """Lower case without accents, as `search_title` holds titles."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def build_tsquery(candidates: list[tuple[str, str | None, float | None]]) -> str | None:
    """A tsquery from (word, nearest term, similarity) rows: each word as a prefix, OR'ed with
    close terms when the word is not itself a known term; words AND'ed."""
    nearest: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for word, term, score in candidates:
        nearest[word]
        if term is not None and score is not None:
            nearest[word].append((term, score))
    clauses = []
    for word in sorted(nearest):
        if len(word) < 2 and not has_unspaced_script(word):
            continue
        options = [_lexeme(word) + (":*" if len(word) >= MIN_PREFIX else "")]
        known = any(term == word for term, _ in nearest[word])
        if not known:
            close = [t for t, s in nearest[word] if s >= MIN_SIMILARITY and t != word]
            options.extend(_lexeme(t) for t in close[:CORRECTIONS_PER_WORD])
        clauses.append("(" + " | ".join(options) + ")")
    return " & ".join(clauses) or None


class Search:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(
        self,
        query: str,
        category: str | None,
        level: str | None,
        language: str | None,
        size: int,
        token: str,
    ) -> tuple[list[pb.SearchCoursesResult], str]:
        fingerprint = json.dumps([query, category, level, language]).encode()
        pin = hashlib.sha256(fingerprint).hexdigest()[:16]
        after = pinned_after(token, pin, 2)
        filters = Filters(category, level, language)
        try:
            if not query:
                since = None if after is None else (datetime.fromisoformat(after[0]), after[1])
                return await self._browse(filters, size, pin, _with_uuid(since))
            below = None if after is None else (float(after[0]), after[1])
            return await self._ranked(query, filters, size, pin, _with_uuid(below))
        except (TypeError, ValueError):
            raise InvalidArgument(
                "page_token is malformed", violations=[("page_token", "not issued here")]
            ) from None

    async def _browse(
        self, filters: Filters, size: int, pin: str, after: tuple[datetime, uuid.UUID] | None
    ) -> tuple[list[pb.SearchCoursesResult], str]:
        async with self._db.read() as conn:
            rows = await repo.browse(conn, **filters._asdict(), limit=size + 1, after=after)
        page, more = split_page(rows, size)
        token = ""
        if more:
            token = encode_token([pin, page[-1].created_at.isoformat(), str(page[-1].id)])
        return [pb.SearchCoursesResult(course=messages.course(r)) for r in page], token

    async def _ranked(
        self,
        query: str,
        filters: Filters,
        size: int,
        pin: str,
        after: tuple[float, uuid.UUID] | None,
    ) -> tuple[list[pb.SearchCoursesResult], str]:
        substring = fold(query) if has_unspaced_script(query) else None
        async with self._db.read() as conn:
            nearest = await repo.nearest_terms(conn, query, CORRECTIONS_PER_WORD + 1)
            tsquery = build_tsquery([(r.word, r.term, r.score) for r in nearest])
            if tsquery is None and substring is None:
                return [], ""
            rows = await repo.search_ranked(
                conn,
                tsquery=tsquery,
                title_substring=substring,
                **filters._asdict(),
                limit=size + 1,
                after=after,
            )
        page, more = split_page(rows, size)
        token = encode_token([pin, page[-1].rank, str(page[-1].id)]) if more else ""
        return [pb.SearchCoursesResult(course=messages.course(r), rank=r.rank) for r in page], token


class Filters(NamedTuple):
    category: str | None
    level: str | None
    language: str | None


K = TypeVar("K")


def _with_uuid(key: tuple[K, str] | None) -> tuple[K, uuid.UUID] | None:
    return None if key is None else (key[0], uuid.UUID(key[1]))
