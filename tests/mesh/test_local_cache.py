"""mesh.local_cache: fresh hits, expiry by TTL, the size bound, one load for concurrent misses,
failures not kept, a caller that gives up not cancelling the others' load, and refresh-ahead
(a read past an entry's refresh time reloads it in the background, at spread-out times)."""

from __future__ import annotations

import asyncio

import pytest

from mesh.local_cache import LocalCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting_load(value: str, calls: list[str]):  # type: ignore[no-untyped-def]
    async def load() -> str:
        calls.append(value)
        return value

    return load


async def test_a_fresh_entry_is_served_without_loading_and_an_expired_one_is_reloaded() -> None:
    clock = Clock()
    cache: LocalCache[str, str] = LocalCache(5.0, 10, clock=clock, refresh_window=None)
    calls: list[str] = []
    assert await cache.get_or_load("k", counting_load("v1", calls)) == "v1"
    clock.now += 4.9
    assert await cache.get_or_load("k", counting_load("v2", calls)) == "v1"
    clock.now += 0.2
    assert await cache.get_or_load("k", counting_load("v2", calls)) == "v2"
    assert calls == ["v1", "v2"]


async def test_the_least_recently_used_entry_goes_first_past_the_bound() -> None:
    cache: LocalCache[str, str] = LocalCache(60.0, 2, clock=Clock())
    calls: list[str] = []
    for key in ("a", "b"):
        await cache.get_or_load(key, counting_load(key, calls))
    cache.put("a", "a")  # used again: "b" is now the oldest
    await cache.get_or_load("c", counting_load("c", calls))
    assert len(cache) == 2
    await cache.get_or_load("a", counting_load("a-again", calls))
    await cache.get_or_load("b", counting_load("b-again", calls))
    assert calls == ["a", "b", "c", "b-again"]


async def test_concurrent_misses_of_one_key_share_one_load() -> None:
    cache: LocalCache[str, str] = LocalCache(60.0, 10, clock=Clock())
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "v"

    waiters = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(50)]
    # The tasks run in creation order, so all 50 have asked by the time the load has started
    # and this test resumes; none can have an answer before the release.
    await asyncio.wait_for(started.wait(), 5)
    assert not any(w.done() for w in waiters)
    release.set()
    assert await asyncio.gather(*waiters) == ["v"] * 50
    assert calls == 1 and cache.loads == 1


async def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    cache: LocalCache[str, str] = LocalCache(60.0, 10, clock=Clock())
    started, release = asyncio.Event(), asyncio.Event()

    async def failing() -> str:
        started.set()
        await release.wait()
        raise LookupError("not there")

    waiters = [asyncio.create_task(cache.get_or_load("k", failing)) for _ in range(3)]
    await asyncio.wait_for(started.wait(), 5)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert len(cache) == 0
    calls: list[str] = []
    assert await cache.get_or_load("k", counting_load("v", calls)) == "v"
    assert calls == ["v"]


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_load() -> None:
    cache: LocalCache[str, str] = LocalCache(60.0, 10, clock=Clock())
    started, release = asyncio.Event(), asyncio.Event()

    async def load() -> str:
        started.set()
        await release.wait()
        return "v"

    impatient = asyncio.create_task(cache.get_or_load("k", load))
    patient = asyncio.create_task(cache.get_or_load("k", load))
    await asyncio.wait_for(started.wait(), 5)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    release.set()
    assert await patient == "v"
    assert cache.loads == 1


def test_a_cache_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="room for at least one entry"):
        LocalCache(1.0, 0)


async def test_a_read_past_the_refresh_time_is_served_and_reloads_in_the_background() -> None:
    clock = Clock()
    cache: LocalCache[str, str] = LocalCache(10.0, 10, clock=clock, draw=lambda low, _: low)
    calls: list[str] = []
    reloaded = asyncio.Event()

    async def reload() -> str:
        calls.append("v2")
        reloaded.set()
        return "v2"

    assert await cache.get_or_load("k", counting_load("v1", calls)) == "v1"
    clock.now += 6.9
    assert await cache.get_or_load("k", reload) == "v1"
    assert calls == ["v1"]  # before 70 % of the TTL: a plain hit
    clock.now += 0.2
    assert await cache.get_or_load("k", reload) == "v1"  # served at once, reload started
    await asyncio.wait_for(reloaded.wait(), 5)
    clock.now += 3.0  # past the first value's expiry: the reloaded one is served
    assert await cache.get_or_load("k", reload) == "v2"
    assert calls == ["v1", "v2"]


async def test_a_failed_refresh_keeps_the_entry_until_it_expires() -> None:
    clock = Clock()
    cache: LocalCache[str, str] = LocalCache(10.0, 10, clock=clock, draw=lambda low, _: low)
    failed = asyncio.Event()

    async def broken() -> str:
        failed.set()
        raise ConnectionError("course service down")

    assert await cache.get_or_load("k", counting_load("v1", [])) == "v1"
    clock.now += 8.0
    assert await cache.get_or_load("k", broken) == "v1"
    await asyncio.wait_for(failed.wait(), 5)
    assert await cache.get_or_load("k", broken) == "v1"
    clock.now += 2.5
    with pytest.raises(ConnectionError):
        await cache.get_or_load("k", broken)


async def test_entries_loaded_together_are_refreshed_at_spread_out_times() -> None:
    clock = Clock()
    cache: LocalCache[int, int] = LocalCache(30.0, 10_000, clock=clock)

    async def load(key: int) -> int:
        return key

    for key in range(1_000):
        cache.put(key, key)
    started_at: list[int] = []
    for second in range(31):
        clock.now = 100.0 + second
        before = cache.loads
        for key in range(1_000):
            assert await cache.get_or_load(key, load, key) == key
        started_at += [second] * (cache.loads - before)
    # Each key's refresh time is drawn between 70 and 90 % of 30 s: none before 21 s, every
    # key once by 27 s, spread over those seconds instead of all at the expiry.
    assert len(started_at) == 1_000
    assert min(started_at) >= 21 and max(started_at) <= 27
    assert max(started_at.count(s) for s in set(started_at)) < 300
