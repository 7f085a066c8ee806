"""Pure logic of the live path: the wire format, a stream's bounded buffer, and a feed's
reordering (its history reads answered from a dict instead of Valkey)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from elearn.live.v1 import live_service_pb2 as pb
from mesh.errors import ResourceExhausted
from svc_live import wire
from svc_live.feed import SessionFeed
from svc_live.outlet import Outlet


def _event(seq: int, text: str = "") -> bytes:
    body = pb.ServerEvent(session_id="s", broadcast=pb.Broadcast(text=text or f"e{seq}"))
    return wire.sequenced(seq, body.SerializeToString())


def test_sequenced_events_carry_their_sequence_and_frames_concatenate() -> None:
    for seq in (1, 127, 128, 300, 2**40):
        assert wire.sequence_of(_event(seq)) == seq
        assert pb.ServerEvent.FromString(_event(seq)).sequence == seq
    message = wire.frame(_event(1)) + wire.frame(_event(2))
    assert [e.sequence for e in wire.decode_message(message)] == [1, 2]


def _outlet(**over: Any) -> Outlet:
    fields: dict[str, Any] = dict(max_bytes=10_000, max_events=3, slow_strikes=2, bidi=True)
    fields.update(over)
    return Outlet("s", "c", "u", **fields)


class _Written:
    """The stream's messages as Outlet.write_all writes them, read one at a time."""

    def __init__(self, outlet: Outlet) -> None:
        self._messages: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.create_task(outlet.write_all(self._write))

    async def _write(self, message: bytes) -> None:
        self._messages.put_nowait(message)

    async def next(self) -> list[pb.ServerEvent]:
        async with asyncio.timeout(5):
            return wire.decode_message(await self._messages.get())


async def test_a_full_buffer_drops_the_oldest_and_says_how_many() -> None:
    outlet = _outlet()
    for seq in range(1, 7):
        outlet.push(seq, wire.frame(_event(seq)))
    outlet.push(6, wire.frame(_event(6)))  # a repeat is never queued twice
    written = _Written(outlet)
    events = await written.next()
    written.task.cancel()
    assert events[0].notice.kind == pb.NOTICE_KIND_EVENTS_DROPPED
    assert events[0].notice.dropped_count == 3
    assert [e.sequence for e in events[1:]] == [4, 5, 6]


async def test_a_stream_that_stays_slow_is_closed() -> None:
    outlet = _outlet()
    written = _Written(outlet)
    seq = 0
    for _ in range(2):  # slow_strikes flushes that each lose events
        for _ in range(5):
            seq += 1
            outlet.push(seq, wire.frame(_event(seq)))
        events = await written.next()
    assert events[-1].notice.kind == pb.NOTICE_KIND_SLOW_CONSUMER
    with pytest.raises(ResourceExhausted):
        async with asyncio.timeout(5):
            await written.task


class _Room:
    def __init__(self, history: dict[int, bytes]) -> None:
        self.history = history

    async def history_after(self, _sid: str, after: int, upto: int | None = None) -> list[bytes]:
        top = upto if upto is not None else max(self.history)
        return [self.history[s] for s in sorted(self.history) if after < s <= top]


class _Hub:
    def __init__(self, room: _Room) -> None:
        self.room = room


async def test_a_feed_delivers_in_order_once_filling_gaps_from_history() -> None:
    history = {s: _event(s) for s in range(1, 6)}
    feed = SessionFeed(_Hub(_Room(history)), "s")  # type: ignore[arg-type]
    feed._next = 1
    outlet = _outlet(max_events=100)
    feed.add(outlet)
    feed.offer(history[3])
    feed.offer(history[2])
    async with asyncio.timeout(5):
        for _ in range(10):
            if feed._filling is None:
                break
            await feed._filling
    assert feed.delivered == 3
    feed.offer(history[2])
    feed.offer(history[4])
    feed.offer(history[5])
    written = _Written(outlet)
    events = await written.next()
    written.task.cancel()
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]


def test_a_feed_pushes_each_connections_streams_together_whatever_the_join_order() -> None:
    feed = SessionFeed(_Hub(_Room({})), "s")  # type: ignore[arg-type]
    feed._next = 1
    pushed: list[str] = []

    class _Recorder(Outlet):
        def push(self, sequence: int, data: bytes, *, last: bool = False) -> None:
            pushed.append(self.connection_id)

    joins = [("a1", "ipv4:127.0.0.1:1001"), ("b1", "ipv4:127.0.0.1:1002")]
    joins += [("a2", "ipv4:127.0.0.1:1001"), ("b2", "ipv4:127.0.0.1:1002")]
    for connection_id, peer in joins:
        fields: dict[str, Any] = dict(max_bytes=10_000, max_events=3, slow_strikes=2)
        feed.add(_Recorder("s", connection_id, "u", bidi=True, peer=peer, **fields))
    feed.offer(_event(1))
    assert pushed == ["a1", "a2", "b1", "b2"]

    assert feed.remove("a1") and feed.remove("a2")
    assert not feed.remove("a1")
    pushed.clear()
    feed.offer(_event(2))
    assert pushed == ["b1", "b2"]
    assert list(feed.outlets) == ["b1", "b2"]


def test_the_cli_turns_typed_lines_into_client_events() -> None:
    from svc_live.client import parse

    assert parse("hello") == pb.ClientEvent(chat=pb.SendChat(text="hello"))
    assert parse("/ask why?") == pb.ClientEvent(question=pb.AskQuestion(text="why?"))
    assert parse("/vote p1 2 3").poll_vote.option_ids == ["2", "3"]  # type: ignore[union-attr]
    assert parse("/unup q1").upvote.withdraw  # type: ignore[union-attr]
    poll = parse("/poll Ready? | yes | no").open_poll  # type: ignore[union-attr]
    assert (poll.question, list(poll.options)) == ("Ready?", ["yes", "no"])
    assert parse("  ") is None
    with pytest.raises(ValueError):
        parse("/nope")
