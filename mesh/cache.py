"""Valkey/Redis pool and cache-aside helpers (findings S2, M1).

A blocking pool bounded by config, so an exhausted pool fails in bounded time. Cache-aside
stores protobuf bytes with a TTL per kind of data; concurrent misses for one key in a process
share one load (a stampede guard), and hits and misses are exported per kind. The cache server
runs with maxmemory and allkeys-lru, so the cache can never fill Valkey; what must survive
memory pressure belongs to the state role (`mesh.state`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from mesh import metrics
from mesh.config import MeshSettings
from mesh.local_cache import NearCache, SingleFlight

log = logging.getLogger("mesh.cache")


class TimedValkey(redis.Redis):
    """A client that observes each command's round trip in `valkey_command_seconds`: one
    perf_counter pair and a cached child per command, against a ~100 µs round trip."""

    valkey_role = ""
    _children: dict[str, Any]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return await super().execute_command(*args, **options)
        finally:
            self._series(args[0]).observe(time.perf_counter() - started)

    def _series(self, command: Any) -> Any:
        children = self.__dict__.setdefault("_children", {})
        name = command.decode() if isinstance(command, bytes) else str(command)
        child = children.get(name)
        if child is None:
            child = children[name] = metrics.VALKEY_COMMAND.labels(self.valkey_role, name.upper())
        return child


@asynccontextmanager
async def open_valkey(settings: MeshSettings, role: str) -> AsyncIterator[redis.Redis]:
    """A bounded pool to the Valkey server of one role ("cache_url" or "state_url").
    Services do not call this: they take `open_cache` or `mesh.state.open_state`."""
    settings.require(role)
    pool = redis.BlockingConnectionPool.from_url(
        getattr(settings, role),
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=2,
        health_check_interval=30,
    )
    client = TimedValkey(connection_pool=pool)
    client.valkey_role = role.removesuffix("_url")
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()
        await pool.disconnect()


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


@asynccontextmanager
async def open_cache(settings: MeshSettings) -> AsyncIterator[Cache]:
    """The cache role: only data that can be recomputed goes here, since the server evicts."""
    async with open_valkey(settings, "cache_url") as client:
        yield Cache(client)


@dataclass(frozen=True)
class CacheKind:
    """One kind of cached data: its key prefix and how long an entry may live.

    `local_ttl_seconds` > 0 adds a near cache: a value read from Valkey (or loaded) is also
    kept in this process for that long, so a hot key costs no round trip. Another replica's
    invalidation does not reach it, so the local TTL is how stale a read may be after a write
    elsewhere: keep it below what the kind's readers promise (enrollment status: under 1 s).
    """

    name: str
    ttl_seconds: int
    local_ttl_seconds: float = 0.0

    def key(self, ident: str) -> str:
        return f"{self.name}:{ident}"


# Entries of all kinds together; beyond this the least recently used go first, so a scan of
# many cold keys cannot grow the process.
NEAR_CACHE_ENTRIES = 50_000


# A group's generation and one entry under it. The entry's key is built in the script, which a
# single cache server (this role's deployment) allows; `or false` keeps a missing entry in the
# reply (a Lua nil would end the table there).
_IN_GENERATION = """
local generation = redis.call('GET', KEYS[1]) or ''
return {generation, redis.call('GET', ARGV[1] .. generation .. ARGV[2]) or false}
"""


class Cache:
    def __init__(self, client: redis.Redis, *, near_entries: int = NEAR_CACHE_ENTRIES) -> None:
        self._client = client
        self._in_generation = Script(client, _IN_GENERATION)
        self._near: NearCache[str, bytes | None] = NearCache(near_entries)
        self._flight: SingleFlight[str, bytes | None] = SingleFlight()
        self._series: dict[tuple[str, str], metrics.Counter] = {}

    async def get_or_load(
        self, kind: CacheKind, ident: str, load: Callable[[], Awaitable[bytes | None]]
    ) -> bytes | None:
        """The cached bytes, or `load()`'s, cached for the kind's TTL. A cache outage falls
        back to the loader: the cache speeds reads up, it never decides whether they work."""
        key = kind.key(ident)
        if kind.local_ttl_seconds > 0:
            found, near = self._near.get(key)
            if found:
                self._count(kind, "hit")
                return near
        try:
            cached = await self._client.get(key)
        except (RedisConnectionError, RedisError, TimeoutError):
            cached = None
        if cached is not None:
            self._count(kind, "hit")
            value = cached if isinstance(cached, bytes) else cached.encode()
            if kind.local_ttl_seconds > 0:
                self._near.put(key, value, kind.local_ttl_seconds)
            return value
        return await self._miss(kind, key, load)

    async def get_or_load_in_generation(
        self,
        kind: CacheKind,
        group: str,
        ident: str,
        load: Callable[[], Awaitable[bytes | None]],
    ) -> bytes | None:
        """`get_or_load` for an entry of a group retired as a whole by `bump` (e.g. every page
        of one dashboard): the group's current generation and the entry under it are read in
        one round trip, and a loaded value is stored under the generation read, so a bump
        during the load leaves it unreachable rather than stale. No near cache: a bump
        elsewhere must retire the entry at once."""
        try:
            found = await self._in_generation(
                (kind.key(f"gen:{group}"),), (f"{kind.name}:{group}:", f":{ident}")
            )
        except (RedisError, TimeoutError, OSError):
            found = None
        if found is None:
            # No generation known: the entry goes under the '' generation, as before any bump.
            found = [b"", None]
        generation, cached = found
        if cached is not None:
            self._count(kind, "hit")
            return cached if isinstance(cached, bytes) else cached.encode()
        gen = generation.decode() if isinstance(generation, bytes) else str(generation)
        return await self._miss(kind, kind.key(f"{group}:{gen}:{ident}"), load)

    async def _miss(
        self, kind: CacheKind, key: str, load: Callable[[], Awaitable[bytes | None]]
    ) -> bytes | None:
        self._count(kind, "miss")
        return await self._flight.run(key, partial(self._load, kind, key, load))

    async def _load(
        self, kind: CacheKind, key: str, load: Callable[[], Awaitable[bytes | None]]
    ) -> bytes | None:
        value = await load()
        if value is not None:
            with contextlib.suppress(RedisError, TimeoutError):
                await self._client.set(key, value, ex=kind.ttl_seconds)
            if kind.local_ttl_seconds > 0:
                self._near.put(key, value, kind.local_ttl_seconds)
        return value

    async def invalidate(self, kind: CacheKind, *idents: str) -> None:
        """Drop entries after a committed write. Best effort: the write has succeeded, so a
        cache outage must not fail it; the entries then live until their TTL, which is why
        every kind has one. Counted and logged so a stale-read window is visible."""
        await self.invalidate_entries([(kind, i) for i in idents])

    async def invalidate_entries(self, entries: Sequence[tuple[CacheKind, str]]) -> None:
        """`invalidate` for entries of several kinds in one round trip."""
        if not entries:
            return
        keys = [kind.key(ident) for kind, ident in entries]
        for key in keys:
            self._near.drop(key)
        try:
            await self._client.delete(*keys)
        except (RedisError, TimeoutError, OSError) as exc:
            kinds = sorted({kind.name for kind, _ in entries})
            for name in kinds:
                metrics.CACHE_INVALIDATION_FAILURES.labels(name).inc()
            log.warning(
                "cache invalidation failed; entries expire within their TTL",
                extra={"kind": ",".join(kinds), "keys": len(keys), "error": type(exc).__name__},
            )

    async def bump(self, kind: CacheKind, *idents: str) -> None:
        """Start a new generation for each group, best effort like `invalidate`. The marker
        outlives the entries (ten TTLs) so an evicted marker cannot revive a stale entry."""
        if not idents:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for ident in idents:
                    pipe.set(kind.key(f"gen:{ident}"), uuid.uuid4().hex, ex=kind.ttl_seconds * 10)
                await pipe.execute()
        except (RedisError, TimeoutError, OSError) as exc:
            metrics.CACHE_INVALIDATION_FAILURES.labels(kind.name).inc()
            log.warning(
                "cache generation bump failed; entries expire within their TTL",
                extra={"kind": kind.name, "keys": len(idents), "error": type(exc).__name__},
            )

    def _count(self, kind: CacheKind, outcome: str) -> None:
        series = self._series.get((kind.name, outcome))
        if series is None:
            series = metrics.CACHE_REQUESTS.labels(kind.name, outcome)
            self._series[(kind.name, outcome)] = series
        series.inc()
