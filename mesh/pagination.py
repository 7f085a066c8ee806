"""Opaque page tokens for keyset pagination.

A token is the url-safe base64 of the last row's sort key, so a page costs an index range
scan however deep the client goes (no OFFSET). A malformed token is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mesh.errors import InvalidArgument

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(
            "page_size must not be negative", violations=[("page_size", "must be >= 0")]
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_token(token: str, arity: int) -> list[Any] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidArgument(
            "page_token is malformed; pass next_page_token from the previous page unchanged",
            violations=[("page_token", "not a token this service issued")],
        )
    return key
