"""The state Valkey role: what must not vanish under memory pressure.

Unflushed progress, presence, rate-limit buckets, login throttles, live sequence counters and
history live here. The server runs with `noeviction` and AOF `everysec`, so a full server
refuses writes (the caller sees UNAVAILABLE) instead of silently dropping a counter, and a
crash loses at most about a second of writes. Cached, recomputable data goes to `mesh.cache`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis

from mesh.cache import Script, open_valkey
from mesh.config import MeshSettings

# Script is shared with the cache role (it lives in mesh.cache); state users import it here.
__all__ = ["Script", "open_state"]


@asynccontextmanager
async def open_state(settings: MeshSettings) -> AsyncIterator[redis.Redis]:
    async with open_valkey(settings, "state_url") as client:
        yield client
