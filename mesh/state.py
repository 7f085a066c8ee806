"""The state Valkey role: what must not vanish under memory pressure.

Unflushed progress, presence, rate-limit buckets, login throttles, live sequence counters and
history live here. The server runs with `noeviction` and AOF `everysec`, so a full server
refuses writes (the caller sees UNAVAILABLE) instead of silently dropping a counter, and a
crash loses at most about a second of writes. Cached, recomputable data goes to `mesh.cache`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from redis.exceptions import NoScriptError

from mesh.cache import open_valkey
from mesh.config import MeshSettings


@asynccontextmanager
async def open_state(settings: MeshSettings) -> AsyncIterator[redis.Redis]:
    async with open_valkey(settings, "state_url") as client:
        yield client


class Script:
    """A Lua script run by EVALSHA, loaded again when the server does not know it (restarted,
    or flushed). Use this instead of `client.register_script`: redis-py's Script call checks
    isinstance against a typing Protocol on every call, which measured about a fifth of
    UpdateVideoProgress's handler time."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            self._sha = await self._client.script_load(self._source)
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
