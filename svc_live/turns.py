"""Stream writes in turns: under pressure, at most `slots` stream writes in flight per pod.

Without a bound, one event for thousands of local streams starts thousands of writes at once,
and the loop's passes stay long while they complete. Everything else on the loop then waits a
long pass per step, and grpc.aio accepts a new call only every pass or two: past about 2,000
streams per pod the instructor's Sends (accepting the call, the sequencer's Valkey round
trip, the answer) fell behind for good, seconds of lag (bench.live_scale). With a few dozen
writes in flight the passes stay short and the send path prompt, and a stream waiting for its
turn keeps collecting events, so each write carries several: the cost per delivery falls
instead of the lag growing.

The bound has a price when the loop has time to spare: writes submitted together share HTTP/2
frames and syscalls, writes in turns do not (about 7 µs more per delivery at 1,000 streams). So
it applies only under pressure, which starts with an interval in which either
- a timer fired `press_lag` late while the loop's thread was busy at least `_PRESS_SHARE` of
  the time (late but idle means the thread waited for a core, as two replicas on two cores do,
  not a long pass), or
- the thread was busy `_SATURATED_SHARE` of the time, however short its passes. At 8,000
  streams a pod ran 99 % busy with timers under 1 ms late for 9-12 s until one long pass
  happened to start the bound; in runs where none came, its Sends waited 67-78 ms all run
  and p95 was 378-403 ms, against 173-198 ms bounded.
Pressure ends once the loop has been prompt (`_PROMPT`) and its thread at most `_IDLE_SHARE`
busy for `_CALM_SECONDS`. Measured on one pod: 0.33-0.40 of the thread at 1,000 streams, 0.66
once 3,000 had fallen behind; with 0.55 a pod at 3,000 was once left unbounded and fell behind.

A write that has not finished after `stall_seconds` stops counting against the bound, so a
client reading slowly (its write held on HTTP/2 flow control) cannot take a slot for long.
Under load that also lets go of healthy writes, whose completions wait behind the transport
for tens of ms: the bound is then on writes started in the last `stall_seconds`, and that is
what holds (at 3,000 streams on one pod, a 1 s stall let the Sends fall seconds behind).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from svc_live import live_metrics

_PRESS_SHARE = 0.45
_SATURATED_SHARE = 0.85
_PROMPT = 0.005
_IDLE_SHARE = 0.35
_CALM_SECONDS = 2.0
_UNBOUNDED = 1 << 30


class Turn(Protocol):
    """What WriteTurns needs of a stream (svc_live.outlet.Outlet)."""

    def grant(self, number: int) -> bool:
        """Its turn, numbered; False when the stream is gone."""
        ...

    def holds(self, number: int) -> bool:
        """Still writing under grant `number`."""
        ...

    def stalled(self, number: int) -> None:
        """Grant `number` no longer counts: its finish must not be reported."""
        ...


class WriteTurns:
    def __init__(
        self,
        slots: int,
        stall_seconds: float = 0.05,
        press_lag: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.bound = slots
        self.press_lag = press_lag
        # press_lag 0: always bounded.
        self.slots = slots if press_lag <= 0 else _UNBOUNDED
        self._calm = 0.0
        self.stall_seconds = stall_seconds
        self.in_flight = 0
        self._clock = clock
        self._ready: deque[Turn] = deque()
        # Grants in the order given: (deadline, stream, number); finished ones are dropped
        # lazily from the front.
        self._granted: deque[tuple[float, Turn, int]] = deque()
        self._number = 0

    @property
    def waiting(self) -> int:
        return len(self._ready)

    @property
    def pressed(self) -> bool:
        return self.slots != _UNBOUNDED

    def want(self, outlet: Turn) -> None:
        """`outlet` has something to write: its turn now, or when a slot frees (FIFO)."""
        if self.slots == _UNBOUNDED:
            # No pressure: the write starts now and is not counted (grant 0 is never
            # reported finished), which spares every write the bookkeeping below. Pressure
            # then bounds the writes started from that moment on.
            outlet.grant(0)
            return
        if self.in_flight >= self.slots:
            self._sweep()
        if self.in_flight < self.slots:
            self._grant(outlet)
        else:
            self._ready.append(outlet)

    def finished(self, number: int) -> None:
        """The write under grant `number` is done, or will not happen."""
        if number <= 0:
            return  # uncounted (no pressure at its grant), or stalled and let go already
        self.in_flight -= 1
        self._sweep()

    def adapt(self, lag: float, busy: float, interval: float) -> None:
        """After a watch interval whose timer fired `lag` late, the loop thread `busy` of it."""
        if self.press_lag <= 0:
            return
        if busy >= _SATURATED_SHARE or (lag >= self.press_lag and busy >= _PRESS_SHARE):
            self.slots = self.bound
            self._calm = 0.0
        elif self.pressed:
            self._calm = self._calm + interval if lag < _PROMPT and busy < _IDLE_SHARE else 0.0
            if self._calm >= _CALM_SECONDS:
                self.slots = _UNBOUNDED
                self._grant_next()
        live_metrics.WRITE_TURNS_BOUNDED.set(1 if self.pressed else 0)

    async def watch(self, interval: float = 0.1) -> None:
        """Sample the loop's lag and its thread's CPU share every `interval` (on the loop)."""
        cpu, wall = time.thread_time(), time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now_cpu, now_wall = time.thread_time(), time.monotonic()
            elapsed = max(now_wall - wall, 1e-6)
            self.adapt(elapsed - interval, (now_cpu - cpu) / elapsed, elapsed)
            cpu, wall = now_cpu, now_wall

    def _grant(self, outlet: Turn) -> None:
        self._number += 1
        if outlet.grant(self._number):
            self.in_flight += 1
            self._granted.append((self._clock() + self.stall_seconds, outlet, self._number))

    def _grant_next(self) -> None:
        ready = self._ready
        while ready and self.in_flight < self.slots:
            self._grant(ready.popleft())

    def _sweep(self) -> None:
        granted = self._granted
        now = 0.0
        while granted:
            deadline, outlet, number = granted[0]
            if outlet.holds(number):
                now = now or self._clock()
                if deadline > now:
                    break
                # Stalled on a slow reader: its slot goes to the next in line.
                outlet.stalled(number)
                self.in_flight -= 1
                live_metrics.WRITES_STALLED.inc()
            granted.popleft()
        self._grant_next()
