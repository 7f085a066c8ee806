"""Keyset page tokens for svc_course's lists, on top of mesh.pagination's opaque encoding."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from mesh.errors import InvalidArgument
from mesh.pagination import decode_token, encode_token

T = TypeVar("T")


def _malformed() -> InvalidArgument:
    return InvalidArgument(
        "page_token is malformed; pass next_page_token from the previous page unchanged",
        violations=[("page_token", "not a token this service issued")],
    )


def time_after(token: str) -> tuple[datetime, uuid.UUID] | None:
    """The (time, id) a newest-first page continues after."""
    key = decode_token(token, 2)
    if key is None:
        return None
    try:
        return datetime.fromisoformat(key[0]), uuid.UUID(key[1])
    except (TypeError, ValueError):
        raise _malformed() from None


def time_token(at: datetime, ident: uuid.UUID) -> str:
    return encode_token([at.isoformat(), str(ident)])


def int_after(token: str) -> tuple[int, uuid.UUID] | None:
    key = decode_token(token, 2)
    if key is None:
        return None
    try:
        if not isinstance(key[0], int):
            raise TypeError
        return key[0], uuid.UUID(key[1])
    except (TypeError, ValueError):
        raise _malformed() from None


def pinned_after(token: str, pin: str, arity: int) -> list[Any] | None:
    """The sort key of a token that must belong to the same query (`pin`): a token from one
    search replayed with other filters would skip or repeat results, so it is refused."""
    key = decode_token(token, arity + 1)
    if key is None:
        return None
    if key[0] != pin:
        raise InvalidArgument(
            "page_token belongs to a different query or filters; start again without it",
            violations=[("page_token", "issued for another query")],
        )
    return key[1:]


def split_page(rows: Sequence[T], size: int) -> tuple[Sequence[T], bool]:
    """Rows of one page (the query asked for size + 1) and whether another page follows."""
    return rows[:size], len(rows) > size


__all__ = ["encode_token", "int_after", "pinned_after", "split_page", "time_after", "time_token"]
