"""When calls may start: the measurement window, the call budget and open-loop arrivals.

Pure logic on integer nanosecond timestamps (`time.perf_counter_ns()`), so it can be tested
without a clock. A closed loop starts a call as soon as a caller is free; an open loop starts
calls at planned arrival times, whatever the server's speed, and measures each call from its
planned start — a call that waited for a free caller is charged for the wait, so a slow server
cannot hide behind a slowed-down driver (coordinated omission). `ticks` is the one clocked
piece: the fixed-rate pacer of the live runs' broadcasts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Window:
    """Warm-up from `start_ns`, then the measured part from `measure_ns` up to `end_ns`."""

    start_ns: int
    measure_ns: int
    end_ns: int

    @classmethod
    def after(cls, now_ns: int, warmup_s: float, duration_s: float) -> Window:
        measure = now_ns + round(warmup_s * NS_PER_S)
        return cls(now_ns, measure, measure + round(duration_s * NS_PER_S))

    def measured(self, t_ns: int) -> bool:
        return self.measure_ns <= t_ns < self.end_ns


class Budget:
    """Admits call starts: all of the warm-up, then up to `limit` measured calls (None: no limit),
    never at or after the end of the window."""

    def __init__(self, window: Window, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        self.window = window
        self.remaining = limit

    def claim(self, t_ns: int) -> bool:
        if t_ns >= self.window.end_ns:
            return False
        if t_ns < self.window.measure_ns or self.remaining is None:
            return True
        if self.remaining == 0:
            return False
        self.remaining -= 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0


def arrivals(
    rate: float,
    window: Window,
    *,
    poisson: bool,
    rng: random.Random,
    phase: float = 0.0,
) -> Iterator[int]:
    """Planned start times at `rate` calls/s from the window's start, all before its end.

    Fixed spacing puts call k at (k + phase) / rate; Poisson draws exponential gaps with the same
    mean, which is how independent users arrive. `phase` in [0, 1) staggers processes that share
    one fixed rate so their calls interleave instead of coinciding (Poisson needs no phase).
    """
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if not 0.0 <= phase < 1.0:
        raise ValueError("phase must be in [0, 1)")
    interval_ns = NS_PER_S / rate
    if poisson:
        t = float(window.start_ns)
        while True:
            t += rng.expovariate(1.0) * interval_ns
            if t >= window.end_ns:
                return
            yield int(t)
    k = 0
    while True:
        t_ns = window.start_ns + int((k + phase) * interval_ns)
        if t_ns >= window.end_ns:
            return
        yield t_ns
        k += 1


async def ticks(rate: float, seconds: float) -> AsyncIterator[tuple[int, int]]:
    """(1, due), (2, due) … at `rate` per second for `seconds`, each on its fixed schedule from
    the start (a late tick is not pushed back, so the pace holds whatever the loop body costs).
    `due` is the tick's planned wall-clock time in ns: a latency measured from it includes the
    time the ticking loop itself ran late, as a client's would (no coordinated omission)."""
    start = time.monotonic()
    start_ns = time.time_ns()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        due_ns = start_ns + round(n * 1e9 / rate)
        n += 1
        yield n, due_ns
