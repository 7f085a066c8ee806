"""Catalog search over Postgres full-text search, with no extra engine (M3).

A query is normalised like the documents (unaccent, the 'simple' configuration), and each word
is OR'ed with its nearest vocabulary terms by trigram similarity when the word itself is not in
the vocabulary — so "pyhton" also searches "python". The last word, the one being typed, also
matches the vocabulary terms it begins (search-as-you-type: "pyth" finds "python"); the words
before it are complete and match as typed. Words are AND'ed. Scripts written without spaces
(CJK) are tokenised as whole runs, so documents also index their character pairs (see
migration 0001), a query's CJK words match through those pairs, and a CJK query of three or
more characters also matches as a substring of the title on the trigram index.

Result pages are cached under a catalog generation that every catalog change renews (see
`Lookups.search_generation`), so a repeated search costs two cache reads and a new or changed
course is still found at once.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from elearn.course.v1 import course_service_pb2 as pb
from mesh.db import Database
from mesh.errors import InvalidArgument
from svc_course import messages
from svc_course import search_repository as repo
from svc_course.lookups import Lookups
from svc_course.paging import encode_token, pinned_after, split_page

# pg_trgm similarity between a transposition typo and its word is ~0.27 ("pyhton"/"python");
# below 0.25 the "corrections" are mostly unrelated words.
MIN_SIMILARITY = 0.25
CORRECTIONS_PER_WORD = 3
# The last word is completed from this length: a one- or two-letter prefix matches half the
# catalog.
MIN_PREFIX = 3
# Completions listed as lexemes at most; a shorter prefix with more falls back to `word:*`.
COMPLETIONS = 16


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


def build_tsquery(rows: list[tuple[str, str | None, float | None, bool]]) -> str | None:
    """A tsquery from (word, term, similarity, completes) rows (see `vocabulary`): each word
    OR'ed with close terms when it is not itself a known term, the last word also with the
    known terms it begins; words AND'ed.

    Completions are listed as plain lexemes rather than `word:*`: GIN answers a prefix by
    building a bitmap of every posting of every matching entry, while plain lexemes are ANDed
    by skipping through the posting lists — "data science testing" takes ~1 ms, not ~8 ms,
    over 100,000 courses. Only when the vocabulary has more than COMPLETIONS terms for the
    prefix does the query fall back to `word:*`."""
    nearest: dict[str, list[tuple[str, float]]] = defaultdict(list)
    completions: dict[str, list[str]] = defaultdict(list)
    for word, term, score, completes in rows:
        nearest[word]
        if term is None:
            continue
        if completes:
            completions[word].append(term)
        elif score is not None:
            nearest[word].append((term, score))
    clauses = []
    for word in sorted(nearest):
        if len(word) < 2 and not has_unspaced_script(word):
            continue
        begun = completions.get(word, [])
        if len(begun) > COMPLETIONS:
            options = [_lexeme(word) + ":*"]
        else:
            options = [_lexeme(word)] + [_lexeme(t) for t in begun if t != word]
        if has_unspaced_script(word) and len(word) > 2:
            # Documents index CJK runs as character pairs too, so a word inside a run matches.
            pairs = dict.fromkeys(word[i : i + 2] for i in range(len(word) - 1))
            options.append("(" + " & ".join(_lexeme(p) for p in pairs) + ")")
        known = any(term == word for term, _ in nearest[word])
        if not known:
            close = [t for t, s in nearest[word] if s >= MIN_SIMILARITY and t != word]
            options.extend(_lexeme(t) for t in close[:CORRECTIONS_PER_WORD] if t not in begun)
        clauses.append("(" + " | ".join(options) + ")")
    return " & ".join(clauses) or None


class Search:
    def __init__(self, db: Database, lookups: Lookups) -> None:
        self._db = db
        self._lookups = lookups

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
        page_key = hashlib.sha256(f"{pin}:{size}:{token}".encode()).hexdigest()[:32]

        async def load() -> bytes:
            filters = Filters(category, level, language)
            results, next_token = await self._search(query, filters, pin, after, size)
            reply = pb.SearchCoursesResponse(results=results, next_page_token=next_token)
            return reply.SerializeToString()

        generation = await self._lookups.search_generation()
        data = await self._lookups.cached_search(f"{generation}:{page_key}", load)
        reply = pb.SearchCoursesResponse.FromString(data)
        return list(reply.results), reply.next_page_token

    async def _search(
        self,
        query: str,
        filters: Filters,
        pin: str,
        after: list[Any] | None,
        size: int,
    ) -> tuple[list[pb.SearchCoursesResult], str]:
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
        folded = fold(query)
        # Below three characters the trigram index cannot help; character pairs cover those.
        substring = folded if has_unspaced_script(query) and len(folded) >= 3 else None
        async with self._db.read() as conn:
            known = await repo.vocabulary(
                conn, query, CORRECTIONS_PER_WORD + 1, COMPLETIONS + 1, MIN_PREFIX
            )
            tsquery = build_tsquery([(r.word, r.term, r.score, r.completes) for r in known])
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
