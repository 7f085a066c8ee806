"""Stream writes in turns (svc_live.turns): the bound under pressure, its order, slow readers
letting go of their slots, when pressure starts and ends, and outlets taking their turns."""

from __future__ import annotations

import asyncio
import contextlib

from elearn.live.v1 import live_service_pb2 as pb
from svc_live import wire
from svc_live.outlet import Outlet
from svc_live.turns import WriteTurns


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Stream:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.number = 0
        self.gone = False
        self._log = log

    def grant(self, number: int) -> bool:
        if self.gone:
            return False
        self.number = number
        self._log.append(self.name)
        return True

    def holds(self, number: int) -> bool:
        return self.number == number

    def stalled(self, number: int) -> None:
        if self.number == number:
            self.number = -1

    def finish(self, turns: WriteTurns) -> None:
        number, self.number = self.number, 0
        turns.finished(number)


def _bounded(slots: int, clock: _Clock | None = None) -> WriteTurns:
    return WriteTurns(slots, stall_seconds=0.05, press_lag=0, clock=clock or _Clock())


def test_under_pressure_at_most_slots_write_at_once_and_the_rest_follow_in_order() -> None:
    granted: list[str] = []
    turns = _bounded(2)
    streams = {n: _Stream(n, granted) for n in "abcde"}
    for s in streams.values():
        turns.want(s)
    assert granted == ["a", "b"] and turns.in_flight == 2 and turns.waiting == 3
    streams["b"].finish(turns)
    assert granted == ["a", "b", "c"] and turns.in_flight == 2
    streams["d"].gone = True  # its stream ended while it waited: skipped, no slot used
    streams["a"].finish(turns)
    assert granted == ["a", "b", "c", "e"] and turns.in_flight == 2 and turns.waiting == 0
    streams["c"].finish(turns)
    streams["e"].finish(turns)
    assert turns.in_flight == 0


def test_a_write_stalled_on_a_slow_reader_lets_go_of_its_slot() -> None:
    clock = _Clock()
    granted: list[str] = []
    turns = _bounded(1, clock)
    slow, b, c = (_Stream(n, granted) for n in ("slow", "b", "c"))
    turns.want(slow)
    turns.want(b)
    clock.now += 0.04
    turns.want(c)
    assert granted == ["slow"], "still within stall_seconds: the slot is held"
    clock.now += 0.02
    turns.want(_Stream("d", granted))
    assert granted == ["slow", "b"] and turns.in_flight == 1
    slow.finish(turns)  # the slow write ends at last: it no longer counts, nothing is freed
    assert granted == ["slow", "b"] and turns.in_flight == 1
    b.finish(turns)
    assert granted == ["slow", "b", "c"] and turns.in_flight == 1


def test_without_pressure_every_write_starts_at_once() -> None:
    granted: list[str] = []
    turns = WriteTurns(2, press_lag=0.05)
    for n in "abcd":
        turns.want(_Stream(n, granted))
    assert granted == list("abcd") and not turns.pressed


def test_pressure_starts_with_a_late_pass_and_ends_after_a_calm_spell() -> None:
    granted: list[str] = []
    turns = WriteTurns(1, press_lag=0.05)
    turns.adapt(lag=0.02, busy=0.8, interval=0.1)
    assert not turns.pressed, "a busy loop whose passes stay short keeps writing at once"
    turns.adapt(lag=0.2, busy=0.3, interval=0.1)
    assert not turns.pressed, "late but mostly idle: the thread waited for a core"
    turns.adapt(lag=0.06, busy=0.9, interval=0.1)
    assert turns.pressed
    first, second = _Stream("a", granted), _Stream("b", granted)
    turns.want(first)
    turns.want(second)
    assert granted == ["a"]
    for _ in range(19):
        turns.adapt(lag=0.001, busy=0.2, interval=0.1)
    turns.adapt(lag=0.001, busy=0.7, interval=0.1)  # busy again: the calm spell restarts
    for _ in range(19):
        turns.adapt(lag=0.001, busy=0.2, interval=0.1)
    assert turns.pressed and granted == ["a"]
    turns.adapt(lag=0.001, busy=0.2, interval=0.1)
    assert not turns.pressed and granted == ["a", "b"], "released: the waiting one goes"


def _frame(seq: int) -> bytes:
    body = pb.ServerEvent(session_id="s", broadcast=pb.Broadcast(text=f"e{seq}"))
    return wire.frame(wire.sequenced(seq, body.SerializeToString()))


def _outlet(turns: WriteTurns, name: str) -> Outlet:
    return Outlet(
        "s", name, "u", max_bytes=10_000, max_events=10, slow_strikes=3, bidi=False, turns=turns
    )


async def test_outlets_write_in_turns_and_collect_events_while_they_wait() -> None:
    turns = _bounded(1)
    first, second = _outlet(turns, "1"), _outlet(turns, "2")
    first.push(1, _frame(1))
    second.push(1, _frame(1))
    await asyncio.wait_for(first.turn(), 1)
    waiting = asyncio.create_task(second.turn())
    await asyncio.sleep(0)
    assert not waiting.done(), "one slot: the second waits for the first's write"
    second.push(2, _frame(2))
    assert [e.sequence for e in wire.decode_message(first.take() or b"")] == [1]
    first.push(2, _frame(2))
    first.done()
    await asyncio.wait_for(waiting, 1)
    events = wire.decode_message(second.take() or b"")
    assert [e.sequence for e in events] == [1, 2], "one write carries what collected"
    second.retire()  # its stream ended mid-turn: the slot passes on
    await asyncio.wait_for(first.turn(), 1)
    assert [e.sequence for e in wire.decode_message(first.take() or b"")] == [2]


def test_writes_started_without_pressure_are_not_counted_once_it_starts() -> None:
    granted: list[str] = []
    turns = WriteTurns(1, press_lag=0.05, clock=_Clock())
    early = _Stream("early", granted)
    turns.want(early)
    assert granted == ["early"] and turns.in_flight == 0, "no pressure: no bookkeeping"
    turns.adapt(lag=0.06, busy=0.9, interval=0.1)
    b, c = _Stream("b", granted), _Stream("c", granted)
    turns.want(b)
    turns.want(c)
    assert granted == ["early", "b"] and turns.in_flight == 1
    early.finish(turns)  # uncounted: frees nothing, and the count never goes below zero
    assert granted == ["early", "b"] and turns.in_flight == 1
    b.finish(turns)
    assert granted == ["early", "b", "c"] and turns.in_flight == 1


async def test_a_turn_cancelled_while_waiting_does_not_break_the_next_grant() -> None:
    turns = _bounded(1)
    first, second = _outlet(turns, "1"), _outlet(turns, "2")
    first.push(1, _frame(1))
    second.push(1, _frame(1))
    assert first.granted and not second.granted
    waiting = asyncio.create_task(second.turn())
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert first.take() is not None
    first.done()  # the turn passes to the second, whose waiter was cancelled
    assert second.granted
    await asyncio.wait_for(second.turn(), 1)
    assert [e.sequence for e in wire.decode_message(second.take() or b"")] == [1]


def test_a_saturated_loop_is_pressed_however_short_its_passes() -> None:
    turns = WriteTurns(1, press_lag=0.05)
    turns.adapt(lag=0.0005, busy=0.99, interval=0.1)
    assert turns.pressed, "no time to spare: the Sends would wait behind the writes"
