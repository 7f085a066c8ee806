"""One stream's bounded send buffer (C3: a slow reader never slows the session).

The feed pushes framed events; the stream's own gRPC task drains them, concatenating whatever
accumulated into one message (coalescing when the session is busy). When the buffer passes
its byte or event bound the oldest events go, and the next message starts with an
EVENTS_DROPPED notice; a stream that keeps losing events flush after flush is closed with
SLOW_CONSUMER.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from elearn.live.v1 import live_service_pb2 as pb
from mesh.errors import ResourceExhausted, ServiceError
from svc_live import live_metrics, wire
from svc_live.turns import WriteTurns

# Where a stream stands with its writes: nothing to write, waiting for a turn, holding one.
_IDLE, _WANTED, _GRANTED = 0, 1, 2


class Outlet:
    def __init__(
        self,
        session_id: str,
        connection_id: str,
        user_id: str,
        *,
        max_bytes: int,
        max_events: int,
        slow_strikes: int,
        bidi: bool,
        turns: WriteTurns | None = None,
        peer: str = "",
    ) -> None:
        self.session_id = session_id
        # The client's connection (grpc's peer string): the feed groups its streams by it.
        self.peer = peer
        self.connection_id = connection_id
        self.user_id = user_id
        self.bidi = bidi
        self.last_heartbeat = time.monotonic()
        self.last_write = self.last_heartbeat
        # Highest sequence queued: the feed and the replay both push, and nothing at or below
        # it is queued twice.
        self.floor = 0
        self._max_bytes = max_bytes
        self._max_events = max_events
        self._slow_strikes = slow_strikes
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._private: list[bytes] = []
        self._dropped = 0
        self._strikes = 0
        # The stream's task waits on this for its turn: a bare future, set once, cheaper per
        # write than an asyncio.Event (no waiter list, no clear).
        self._waiter: asyncio.Future[None] | None = None
        # The stream's loop, looked up once: asyncio.get_running_loop() makes a getpid()
        # syscall each call in CPython 3.11 (its fork check), 5 % of a saturated pod's loop
        # thread at 9,000 streams (py-spy --native) when each turn asked for it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: ServiceError | None = None
        # Set once the stream is cut as a slow consumer: raised after its last message.
        self._fatal: ServiceError | None = None
        self._ending = False
        # While replaying history, live events wait here (unbounded only for that moment).
        self._held: list[tuple[int, bytes]] | None = None
        # The pod's write turns (svc_live.turns); without them a stream writes at once.
        self._turns = turns
        self._turn = _IDLE
        self._grant = 0
        self._retired = False

    # -- called by the feed (hot path: one call per event per stream) ----------------------

    def push(self, sequence: int, data: bytes, *, last: bool = False) -> None:
        held = self._held
        if held is not None:
            held.append((sequence, data))
            return
        if sequence <= self.floor:
            return
        self.floor = sequence
        self._queue.append(data)
        self._bytes += len(data)
        if self._bytes > self._max_bytes or len(self._queue) > self._max_events:
            self._shed()
        if last:
            self._ending = True
        if self._turn == _IDLE:
            self._signal()

    def _shed(self) -> None:
        queue = self._queue
        before = len(queue)
        while len(queue) > 1 and (self._bytes > self._max_bytes or len(queue) > self._max_events):
            self._bytes -= len(queue.popleft())
        self._dropped += before - len(queue)
        live_metrics.DROPPED.inc(before - len(queue))

    def send_private(self, data: bytes) -> None:
        self._private.append(data)
        self._signal()

    def close(self, error: ServiceError | None = None, *, notice: bytes = b"") -> None:
        """End the stream after what is queued (or at once with `error`)."""
        if notice:
            self._private.append(notice)
        self._closing = error
        self._ending = True
        self._signal()

    # -- replay -----------------------------------------------------------------------------

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        """Replay is done: queue the live events that arrived meanwhile, past the floor."""
        held, self._held = self._held or [], None
        for sequence, data in held:
            self.push(sequence, data)

    # -- called by the stream's own task -------------------------------------------------

    def quiet_for(self, now: float) -> float:
        return now - self.last_write

    def take(self) -> bytes | None:
        """The next stream message: None when nothing is queued (then `done()`, `await turn()`),
        b"" once the stream is over; raises the error the stream ends with (see `write_all`)."""
        if self._fatal is not None:
            raise self._fatal
        queue = self._queue
        if not (queue or self._private or self._ending):
            return None
        self.last_write = time.monotonic()
        if len(queue) == 1 and not (self._private or self._dropped):
            # The usual write: one event, nothing else to say (no list, no join).
            self._strikes = 0
            self._bytes = 0
            return queue.popleft()
        parts = self._private
        self._private = []
        if self._dropped:
            self._strikes += 1
            parts.insert(
                0,
                wire.notice(
                    self.session_id,
                    pb.NOTICE_KIND_EVENTS_DROPPED,
                    f"this stream fell behind and lost {self._dropped} events",
                    dropped_count=self._dropped,
                ),
            )
            self._dropped = 0
            if self._strikes >= self._slow_strikes:
                live_metrics.SLOW_CONSUMERS.inc()
                self._queue.clear()
                message = "stream too slow: it kept losing events; reconnect and resume"
                self._fatal = ResourceExhausted(message)
                return b"".join(parts) + wire.notice(
                    self.session_id,
                    pb.NOTICE_KIND_SLOW_CONSUMER,
                    message,
                    retry_after=wire.seconds(1.0),
                )
        elif self._queue:
            self._strikes = 0
        if self._queue:
            parts.extend(self._queue)
            self._queue.clear()
            self._bytes = 0
        if parts:
            return b"".join(parts)
        if self._closing is not None:
            raise self._closing
        return b""

    def _signal(self) -> None:
        if self._turn != _IDLE:
            return
        if self._turns is None:
            self.grant(1)
        else:
            self._turn = _WANTED
            self._turns.want(self)

    def grant(self, number: int) -> bool:
        """The stream's turn to write (given by the pod's WriteTurns)."""
        if self._retired:
            return False
        self._turn = _GRANTED
        self._grant = number
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return True

    def holds(self, number: int) -> bool:
        return self._grant == number

    def stalled(self, number: int) -> None:
        if self._grant == number:
            self._grant = -1

    def ready(self) -> bool:
        return bool(self._queue or self._private or self._ending or self._fatal is not None)

    @property
    def granted(self) -> bool:
        """Its turn came: `take()` now, without awaiting `turn()`."""
        return self._turn == _GRANTED

    async def turn(self) -> None:
        """Until this stream may write: it has something queued and its turn came."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        while self._turn != _GRANTED:
            self._waiter = waiter = loop.create_future()
            await waiter

    def done(self) -> None:
        """The turn's write went out (or there was nothing to write): back in line if more
        arrived meanwhile."""
        self._turn = _IDLE
        self._release()
        if self.ready():
            self._signal()

    def retire(self) -> None:
        """The stream is over: no more turns for it."""
        if self._turn == _GRANTED:
            self._release()
        self._retired = True
        self._turn = _GRANTED

    def _release(self) -> None:
        number, self._grant = self._grant, 0
        if self._turns is not None:
            self._turns.finished(number)

    async def write_all(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Write the stream's messages with `write` (the call's ctx.write) until it is over:
        the pod's hot path, one write per turn, no generator layer between it and grpc."""
        take, turn, done = self.take, self.turn, self.done
        try:
            while True:
                if not self.granted:
                    await turn()
                message = take()
                if message is None:
                    done()
                elif message:
                    await write(message)
                    done()
                else:
                    return
        finally:
            self.retire()
