"""A service's in-process cache of answers it asked another service or Postgres for: bounded
(least recently used out first), each entry fresh for a TTL, and concurrent misses of one key
share one load (a stampede guard), as `mesh.cache` does for the Valkey cache.

For hot per-call lookups (a quiz's enrollment check on every submission, a live join's): a hit
is a dict read and a clock read. async-lru was measured for this and not taken: it arms a loop
timer per entry for the TTL and builds a wrapper object per method call.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LocalCache(Generic[K, V]):
    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Task[V]] = {}
        self.loads = 0  # loads started (tests and benches read it)

    def __len__(self) -> int:
        return len(self._entries)

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The fresh cached value, or `load()`'s, kept for the TTL. A load that raises is not
        kept: every caller waiting on it gets the exception, and the next call loads again."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        task = self._loading.get(key)
        if task is None:
            self.loads += 1
            task = asyncio.create_task(self._load(key, load))
            self._loading[key] = task
            task.add_done_callback(partial(self._loaded, key))
        # Shielded: a caller that gives up (its deadline passed) does not cancel the load the
        # others wait on.
        return await asyncio.shield(task)

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        value = await load()
        self.put(key, value)
        return value

    def _loaded(self, key: K, task: asyncio.Task[V]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            # Marks a failure retrieved when every waiter has gone: no "never retrieved" noise.
            task.exception()
