"""The cache helper against real Valkey (issue 10 items 8-9): a cancelled stampede leader does
not fail its followers, and invalidation after a committed write survives a cache outage."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis.asyncio as redis
from prometheus_client import REGISTRY

from devstack.stack import Endpoints
from mesh.cache import Cache, CacheKind
from mesh.local_cache import NearCache


@pytest_asyncio.fixture
async def cache(stack: Endpoints) -> AsyncIterator[Cache]:
    client = redis.Redis.from_url(stack.cache_url)
    try:
        yield Cache(client)
    finally:
        await client.aclose()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def misses(kind: CacheKind) -> float:
    labels = {"kind": kind.name, "outcome": "miss"}
    return REGISTRY.get_sample_value("cache_requests_total", labels) or 0.0


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.01)  # polling a condition under a deadline
    assert condition(), "condition not reached in time"


async def test_cancelled_leader_does_not_fail_its_followers(cache: Cache) -> None:
    kind = CacheKind(f"guard-{uuid.uuid4().hex[:8]}", 60)
    started, release = asyncio.Event(), asyncio.Event()
    loads = 0

    async def load() -> bytes:
        nonlocal loads
        loads += 1
        started.set()
        await release.wait()
        return b"the value"

    leader = asyncio.create_task(cache.get_or_load(kind, "k", load))
    await asyncio.wait_for(started.wait(), 5)
    followers = [asyncio.create_task(cache.get_or_load(kind, "k", load)) for _ in range(3)]
    # Each caller counts its miss right before it starts waiting on the shared load.
    await wait_for(lambda: misses(kind) == 4)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    release.set()
    assert await asyncio.gather(*followers) == [b"the value"] * 3
    assert loads == 1, "followers shared the leader's load"
    assert await cache.get_or_load(kind, "k", load) == b"the value", "the value was cached"
    assert loads == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached(cache: Cache) -> None:
    kind = CacheKind(f"guard-{uuid.uuid4().hex[:8]}", 60)
    release = asyncio.Event()

    async def broken() -> bytes:
        await release.wait()
        raise LookupError("the database said no")

    waiters = [asyncio.create_task(cache.get_or_load(kind, "k", broken)) for _ in range(3)]
    await wait_for(lambda: misses(kind) == 3)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)

    async def fixed() -> bytes:
        return b"recovered"

    assert await cache.get_or_load(kind, "k", fixed) == b"recovered"


async def test_invalidation_survives_a_cache_outage() -> None:
    # Nothing listens on this port: the cache server is down.
    client = redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.5)
    kind = CacheKind(f"gone-{uuid.uuid4().hex[:8]}", 60)
    labels = {"kind": kind.name}
    try:
        await Cache(client).invalidate(kind, "a", "b")
    finally:
        await client.aclose()
    assert REGISTRY.get_sample_value("cache_invalidation_failures_total", labels) == 1.0


async def test_invalidation_drops_the_entry(cache: Cache) -> None:
    kind = CacheKind(f"inv-{uuid.uuid4().hex[:8]}", 60)

    async def first() -> bytes:
        return b"old"

    async def second() -> bytes:
        return b"new"

    assert await cache.get_or_load(kind, "k", first) == b"old"
    await cache.invalidate(kind, "k")
    assert await cache.get_or_load(kind, "k", second) == b"new"


async def test_near_cache_serves_hits_from_memory_until_its_ttl(stack: Endpoints) -> None:
    client = redis.Redis.from_url(stack.cache_url)
    kind = CacheKind(f"near-{uuid.uuid4().hex[:8]}", 60, local_ttl_seconds=0.3)
    try:
        cache = Cache(client)

        async def load() -> bytes:
            return b"v1"

        assert await cache.get_or_load(kind, "k", load) == b"v1"
        # A change in Valkey that this process did not make is not seen while the local copy
        # lives (that is the round trip saved), and is seen once it expires.
        await client.set(kind.key("k"), b"v2", ex=60)
        assert await cache.get_or_load(kind, "k", load) == b"v1"
        deadline = time.monotonic() + 2.0
        while await cache.get_or_load(kind, "k", load) != b"v2":
            assert time.monotonic() < deadline, "the local copy outlived its TTL"
            await asyncio.sleep(0.02)  # polling a condition under a deadline
    finally:
        await client.aclose()


async def test_invalidation_drops_the_near_copy_too(cache: Cache) -> None:
    kind = CacheKind(f"near-inv-{uuid.uuid4().hex[:8]}", 60, local_ttl_seconds=60)

    async def first() -> bytes:
        return b"old"

    async def second() -> bytes:
        return b"new"

    assert await cache.get_or_load(kind, "k", first) == b"old"
    await cache.invalidate(kind, "k")
    assert await cache.get_or_load(kind, "k", second) == b"new"


def test_near_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    near = NearCache(2)
    near.put("a", b"1", 60)
    near.put("b", b"2", 60)
    assert near.get("a") == (True, b"1")  # "a" is now the most recent
    near.put("c", b"3", 60)
    assert near.get("b") == (False, None)
    assert near.get("a") == (True, b"1")
    assert near.get("c") == (True, b"3")
