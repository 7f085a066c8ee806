"""Coalescing concurrent calls into one round trip (group commit, for any backend).

A hot path whose calls each cost one round trip (an EVALSHA per progress update) pays the
client's per-command machinery (pool checkout, packing, a write, a wake-up on the reply) once
per call. `Coalescer` queues the calls made while a batch is in flight and sends them as the
next batch, so under load a batch carries everything that arrived during the previous one and
the per-command cost is paid once per batch; a lone call goes out on the next loop turn. Each
caller awaits its own result, and a caller that gives up does not cancel a batch others share.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the item, beside R the result
R = TypeVar("R")

# run(items) returns one result per item, in order; an Exception in a slot is raised to that
# item's caller alone. An exception raised by run itself reaches every caller of the batch.
BatchRun = Callable[[list[I]], Awaitable[Sequence[R | Exception]]]


class Coalescer(Generic[I, R]):
    def __init__(self, run: BatchRun[I, R], *, max_batch: int = 256, name: str = "batch") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self._max = max_batch
        self._name = name
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # sent so far; tests and benches read it

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=self._name)
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Wait for what is queued to be sent."""
        while self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._send(batch)
        finally:
            self._task = None
            # Cancelled (the loop is closing): nobody will send what is left, so say so rather
            # than leave its callers waiting for ever.
            left, self._queue = self._queue, []
            _fail(left, ConnectionError(f"{self._name}: stopped before this call was sent"))

    async def _send(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        self.batches += 1
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self._name}: {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            _fail(batch, ConnectionError(f"{self._name}: stopped while this call was in flight"))
            raise
        except Exception as exc:
            _fail(batch, exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _fail(batch: list[tuple[I, asyncio.Future[R]]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
