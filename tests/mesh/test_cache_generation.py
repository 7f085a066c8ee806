"""Groups of cache entries retired together by a generation bump (mesh.cache
`get_or_load_in_generation`, `bump`) against real Valkey: a bump retires every entry of its
group and no other, a load that raced a bump is never served after it, and a cache outage
falls back to the loader."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
import redis.asyncio as redis

from devstack.stack import Endpoints
from mesh.cache import Cache, CacheKind


@pytest_asyncio.fixture
async def cache(stack: Endpoints) -> AsyncIterator[Cache]:
    client = redis.Redis.from_url(stack.cache_url)
    try:
        yield Cache(client)
    finally:
        await client.aclose()


class Loader:
    """Returns the next value of `values` and counts its calls."""

    def __init__(self, *values: bytes) -> None:
        self.values = list(values)
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        return self.values.pop(0)


async def test_a_bump_retires_every_entry_of_its_group_and_no_other(cache: Cache) -> None:
    kind = CacheKind(f"gen-{uuid.uuid4().hex[:8]}", 60)
    a, b, other = Loader(b"a1", b"a2"), Loader(b"b1", b"b2"), Loader(b"o1", b"o2")
    assert await cache.get_or_load_in_generation(kind, "g", "a", a) == b"a1"
    assert await cache.get_or_load_in_generation(kind, "g", "b", b) == b"b1"
    assert await cache.get_or_load_in_generation(kind, "h", "a", other) == b"o1"
    assert await cache.get_or_load_in_generation(kind, "g", "a", a) == b"a1"
    assert a.calls == 1

    await cache.bump(kind, "g")
    assert await cache.get_or_load_in_generation(kind, "g", "a", a) == b"a2"
    assert await cache.get_or_load_in_generation(kind, "g", "b", b) == b"b2"
    assert await cache.get_or_load_in_generation(kind, "h", "a", other) == b"o1"
    assert (a.calls, b.calls, other.calls) == (2, 2, 1)


async def test_a_load_that_raced_a_bump_is_not_served_after_it(cache: Cache) -> None:
    kind = CacheKind(f"race-{uuid.uuid4().hex[:8]}", 60)

    async def stale() -> bytes:
        # The figures change (and the group is bumped) while this load runs.
        await cache.bump(kind, "g")
        return b"stale"

    fresh = Loader(b"fresh")
    assert await cache.get_or_load_in_generation(kind, "g", "page", stale) == b"stale"
    assert await cache.get_or_load_in_generation(kind, "g", "page", fresh) == b"fresh"
    assert fresh.calls == 1


async def test_a_cache_outage_falls_back_to_the_loader() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # Nothing listens on the port once the socket is closed: the cache server is down.
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    kind = CacheKind(f"down-{uuid.uuid4().hex[:8]}", 60)
    try:
        load = Loader(b"one", b"two")
        assert await Cache(client).get_or_load_in_generation(kind, "g", "k", load) == b"one"
        assert await Cache(client).get_or_load_in_generation(kind, "g", "k", load) == b"two"
    finally:
        await client.aclose()
