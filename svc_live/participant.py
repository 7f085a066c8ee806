"""A Join stream as a client sees it: send events, read events with a deadline. Used by the
CLI (`python -m svc_live.client`), the tests and the benchmark."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import grpc

from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1.live_service_pb2_grpc import LiveServiceStub

_ids = itertools.count(1)


class Participant:
    """One native participant: `await p.open()`, then `send`/`next_event`/`close`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        token: str,
        session_id: str,
        resume_after: int = 0,
        heartbeat_seconds: float = 0.0,
        from_oldest: bool = False,
    ) -> None:
        self._stub = LiveServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.session_id = session_id
        self._resume_after = resume_after
        self._from_oldest = from_oldest
        self._outgoing: asyncio.Queue[pb.JoinRequest | None] = asyncio.Queue()
        self._events: list[pb.ServerEvent] = []
        self._call: grpc.aio.StreamStreamCall | None = None
        self._stream: AsyncIterator[pb.JoinResponse] | None = None
        self.welcome: pb.Welcome | None = None
        # The newest session sequence seen, for resuming after a reconnect.
        self.last_sequence = resume_after
        self._heartbeat_seconds = heartbeat_seconds
        self._beats: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[pb.JoinRequest]:
        while True:
            item = await self._outgoing.get()
            if item is None:
                return
            yield item

    async def open(self, within: float = 10.0) -> pb.Welcome:
        hello = pb.Hello(
            session_id=self.session_id,
            resume_after_sequence=self._resume_after,
            from_oldest=self._from_oldest,
        )
        self._outgoing.put_nowait(pb.JoinRequest(event=pb.ClientEvent(hello=hello)))
        self._call = self._stub.Join(self._requests(), metadata=self._metadata)
        self._stream = self._call.__aiter__()
        first = await self.next_event(within)
        assert first.WhichOneof("kind") == "welcome", first
        self.welcome = first.welcome
        if not first.welcome.resumed:
            self.last_sequence = first.welcome.last_sequence
        if self._heartbeat_seconds:
            self._beats = asyncio.create_task(self._beat())
        return first.welcome

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            self._outgoing.put_nowait(
                pb.JoinRequest(event=pb.ClientEvent(heartbeat=pb.Heartbeat()))
            )

    def send(self, event: pb.ClientEvent) -> str:
        if not event.client_event_id:
            event.client_event_id = f"ce-{next(_ids)}"
        self._outgoing.put_nowait(pb.JoinRequest(event=event))
        return event.client_event_id

    async def next_event(self, within: float = 10.0) -> pb.ServerEvent:
        while not self._events:
            assert self._stream is not None
            message = await asyncio.wait_for(anext(self._stream), within)
            self._events.extend(message.events)
        event = self._events.pop(0)
        if event.sequence:
            self.last_sequence = event.sequence
        return event

    async def until(self, kinds: Sequence[str], within: float = 10.0) -> pb.ServerEvent:
        """The next event of one of `kinds`, skipping others (e.g. presence, heartbeats)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            event = await self.next_event(max(0.01, deadline - loop.time()))
            if event.WhichOneof("kind") in kinds:
                return event

    async def close(self) -> None:
        if self._beats is not None:
            self._beats.cancel()
        self._outgoing.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
