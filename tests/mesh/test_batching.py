"""mesh.batching.Coalescer: pure asyncio, no servers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mesh.batching import Coalescer


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def run(self, items: list[int]) -> Sequence[int | Exception]:
        self.batches.append(items)
        self.entered.set()
        await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_calls_of_one_turn_go_as_one_batch_and_each_gets_its_own_result() -> None:
    rec = Recorder()
    batcher: Coalescer[int, int] = Coalescer(rec.run)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
    assert rec.batches == [[0, 1, 2, 3, 4, 5]]
    assert results[0::2] == [0, 20, 40]
    assert [str(r) for r in results[1::2]] == ["odd 1", "odd 3", "odd 5"]


async def test_calls_made_while_a_batch_is_in_flight_form_the_next_one() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher: Coalescer[int, int] = Coalescer(rec.run, max_batch=3)
    first = asyncio.ensure_future(batcher.submit(0))
    await rec.entered.wait()
    later = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 4, 6, 8)]
    await asyncio.sleep(0)
    assert rec.batches == [[0]], "nothing more is sent while a batch is in flight"
    rec.gate.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [20, 40, 60, 80]
    assert rec.batches == [[0], [2, 4, 6], [8]], "queued calls go together, up to max_batch"


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(items: list[int]) -> Sequence[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("server gone")
        return items

    batcher: Coalescer[int, int] = Coalescer(flaky)
    failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in failed)
    assert await batcher.submit(3) == 3


async def test_a_caller_that_gives_up_does_not_cancel_the_batch_others_share() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher: Coalescer[int, int] = Coalescer(rec.run)
    quitter = asyncio.ensure_future(batcher.submit(2))
    stayer = asyncio.ensure_future(batcher.submit(4))
    await rec.entered.wait()
    quitter.cancel()
    rec.gate.set()
    assert await stayer == 40
    with pytest.raises(asyncio.CancelledError):
        await quitter


async def test_a_run_returning_the_wrong_number_of_results_fails_the_batch() -> None:
    async def short(items: list[int]) -> Sequence[int | Exception]:
        return items[:-1]

    batcher: Coalescer[int, int] = Coalescer(short)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_stopping_the_sender_fails_what_it_held_instead_of_leaving_callers_waiting() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher: Coalescer[int, int] = Coalescer(rec.run, max_batch=1)
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 4)]
    await rec.entered.wait()
    assert batcher._task is not None
    batcher._task.cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


def test_max_batch_must_be_positive() -> None:
    async def run(items: list[int]) -> Sequence[int | Exception]:
        return items

    with pytest.raises(ValueError):
        Coalescer(run, max_batch=0)
