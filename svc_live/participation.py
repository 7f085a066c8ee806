"""The stream core shared by Join (native, bidirectional) and Subscribe + Send (browsers):
admission (enrollment, caps, presence), the welcome snapshot, replay of missed events with no
gap and no duplicate, the live feed, and leaving. Also the pod's ticker (coalesced presence
and poll tallies, presence refresh, idle streams) and the drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from elearn.live.v1 import live_service_pb2 as pb
from mesh.context import Caller
from mesh.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from svc_live import live_metrics, wire
from svc_live import repository as repo
from svc_live.actions import Actions, Actor
from svc_live.course_access import CourseAccess
from svc_live.names import DisplayNames
from svc_live.outlet import Outlet
from svc_live.sessions import Sessions
from svc_live.settings import LiveSettings
from svc_live.turns import WriteTurns

log = logging.getLogger("svc_live.participation")
_REPLAY_CHUNK = 64 * 1024
_SESSION_CACHE_SECONDS = 2.0


def session_uuid(value: str, name: str = "session_id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be a UUID", violations=[(name, "not a UUID")]) from None


class Participation:
    def __init__(
        self,
        sessions: Sessions,
        access: CourseAccess,
        actions: Actions,
        settings: LiveSettings,
        names: DisplayNames,
    ) -> None:
        self._sessions = sessions
        self._access = access
        self.actions = actions
        self._hub = actions.hub
        self._room = self._hub.room
        self._s = settings
        live_metrics.STREAMS_LIMIT.set(settings.max_streams_per_pod)
        self.draining = False
        self._names = names
        self._rows: dict[uuid.UUID, tuple[float, Any]] = {}
        # Stream writes in turns (svc_live.turns).
        self.turns = WriteTurns(
            settings.writes_in_flight,
            settings.write_stall_seconds,
            settings.write_press_lag_seconds,
        )

    async def _live_row(self, session_id: uuid.UUID) -> Any:
        now = time.monotonic()
        hit = self._rows.get(session_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._sessions.row(session_id)
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[session_id] = (now + _SESSION_CACHE_SECONDS, row)
        return row

    async def actor(self, caller: Caller, session_id: uuid.UUID, connection_id: str) -> Actor:
        row = await self._live_row(session_id)
        role = await self._access.role_in(str(row.course_id), caller)
        name = await self._names.of(caller)
        return Actor(str(session_id), caller.user_id, role, connection_id, name)

    # -- streams ------------------------------------------------------------------------

    async def stream(
        self,
        caller: Caller,
        session_id_text: str,
        resume_after: int,
        *,
        write: Callable[[bytes], Awaitable[None]],
        bidi: bool,
        peer: str = "",
        from_oldest: bool = False,
        on_open: Callable[[Outlet, Actor], None] | None = None,
    ) -> None:
        """The stream until it ends, each message written with `write` (the call's
        ctx.write): no generator layer between a write and grpc. `peer` is the client's
        connection (ctx.peer()): the feed writes one connection's streams back to back."""
        if self.draining:
            raise Unavailable("this server is draining; reconnect to another")
        session_id = session_uuid(session_id_text, "hello.session_id" if bidi else "session_id")
        if resume_after < 0:
            raise InvalidArgument("resume_after_sequence must not be negative")
        row = await self._sessions.row(session_id)
        if row.state != repo.LIVE:
            word = "has not started" if row.state == repo.SCHEDULED else "has ended"
            raise FailedPrecondition(f"the session {word}; join while it is live")
        role = await self._access.role_in(str(row.course_id), caller)
        if self._hub.stream_count >= self._s.max_streams_per_pod:
            live_metrics.REFUSED.labels("pod_full").inc()
            raise ResourceExhausted(
                f"this server holds its limit of {self._s.max_streams_per_pod} streams; "
                "reconnect (another server will take you)"
            )
        sid = str(session_id)
        connection_id = str(uuid.uuid4())
        cap = min(row.max_participants, self._s.max_participants)
        count = await self._room.enter(
            sid, connection_id, caller.user_id, self._s.presence_ttl_seconds, cap
        )
        if count < 0:
            live_metrics.REFUSED.labels("session_full").inc()
            raise ResourceExhausted(f"the session is full ({cap} participants)")
        s = self._s
        outlet = Outlet(
            sid,
            connection_id,
            caller.user_id,
            max_bytes=s.stream_buffer_bytes,
            max_events=s.stream_buffer_events,
            slow_strikes=s.slow_consumer_strikes,
            bidi=bidi,
            turns=self.turns,
            peer=peer,
        )
        outlet.hold()
        try:
            await self._hub.attach(outlet)
        except BaseException:
            await self._room.leave(sid, connection_id)
            raise
        self.actions.dirty.presence.add(sid)
        try:
            if on_open is not None:
                name = await self._names.of(caller)
                on_open(outlet, Actor(sid, caller.user_id, role, connection_id, name))
            async for chunk in self._opening(row, role, outlet, resume_after, from_oldest):
                await write(chunk)
            outlet.release()
            await outlet.write_all(write)
        finally:
            outlet.retire()
            await self._hub.detach(outlet)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._room.leave(sid, connection_id))
            self.actions.dirty.presence.add(sid)

    async def _opening(
        self, row: Any, role: int, outlet: Outlet, resume_after: int, from_oldest: bool
    ) -> AsyncIterator[bytes]:
        sid = outlet.session_id
        snap = await self._room.snapshot(sid)
        last = snap.last_sequence
        if from_oldest:
            resume_after = max(0, await self._room.oldest_sequence(sid) - 1)
        replay = (from_oldest or resume_after > 0) and resume_after < last
        session = await self._sessions.message(row)
        welcome = pb.Welcome(
            connection_id=outlet.connection_id,
            session=session,
            role=role,  # type: ignore[arg-type]
            last_sequence=last,
            resumed=replay,
            open_polls=snap.polls,
            questions=snap.questions,
            participant_count=snap.participant_count,
            raised_hands=snap.hands,
        )
        first = wire.private(sid, welcome=welcome)
        after = resume_after
        if replay and not from_oldest:
            oldest = await self._room.oldest_sequence(sid)
            if oldest > resume_after + 1:
                first += wire.notice(
                    sid,
                    pb.NOTICE_KIND_RESUME_GAP_TOO_OLD,
                    f"events after {resume_after} are no longer kept; replay starts at {oldest}",
                    oldest_available_sequence=oldest,
                )
        yield first
        while replay and after < last:
            events = await self._room.history_after(sid, after, last, limit=500)
            if not events:
                break
            chunk: list[bytes] = []
            size = 0
            for event in events:
                data = wire.frame(event)
                chunk.append(data)
                size += len(data)
                if size >= _REPLAY_CHUNK:
                    yield b"".join(chunk)
                    chunk, size = [], 0
            if chunk:
                yield b"".join(chunk)
            after = wire.sequence_of(events[-1])
        outlet.floor = last

    # -- client events ------------------------------------------------------------------

    async def send(
        self, caller: Caller, session_id_text: str, connection_id: str, event: pb.ClientEvent
    ) -> pb.Ack:
        session_id = session_uuid(session_id_text)
        actor = await self.actor(caller, session_id, connection_id)
        if event.WhichOneof("kind") == "heartbeat":
            if not connection_id:
                raise InvalidArgument(
                    "a heartbeat needs the connection_id from the Subscribe welcome",
                    violations=[("connection_id", "required for heartbeats")],
                )
            refreshed = await self._room.refresh(
                actor.session_id, [connection_id], self._s.presence_ttl_seconds
            )
            self.heartbeat_local(actor.session_id, connection_id)
            if not refreshed:
                raise FailedPrecondition("no such connection in this session; subscribe again")
        return await self.actions.apply(actor, event)

    def heartbeat_local(self, session_id: str, connection_id: str) -> None:
        feed = self._hub.feeds.get(session_id)
        outlet = feed.outlets.get(connection_id) if feed is not None else None
        if outlet is not None:
            outlet.last_heartbeat = time.monotonic()

    # -- the pod's ticker and drain -----------------------------------------------------

    async def tick_forever(self) -> None:
        interval = self._s.presence_interval_seconds
        refresh_every = max(1, int(self._s.presence_ttl_seconds / 3 / interval))
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            try:
                await self._tick(refresh=ticks % refresh_every == 0)
            except (ServiceError, OSError, ConnectionError) as exc:
                log.warning("live ticker: %s", exc)
            except Exception as exc:  # a Valkey/NATS outage must not kill the ticker
                log.warning("live ticker failed: %r", exc)

    async def _tick(self, *, refresh: bool) -> None:
        now = time.monotonic()
        timeout = self._s.heartbeat_timeout_seconds
        for feed in list(self._hub.feeds.values()):
            sid = feed.session_id
            for outlet in list(feed.outlets.values()):
                if outlet.quiet_for(now) >= self._s.server_heartbeat_seconds:
                    beat = pb.ServerHeartbeat(last_sequence=feed.delivered)
                    outlet.send_private(wire.private(sid, heartbeat=beat))
                if outlet.bidi and now - outlet.last_heartbeat > timeout:
                    live_metrics.IDLE_CLOSED.inc()
                    outlet.close(FailedPrecondition(f"no heartbeat for {timeout:.0f} s; closed"))
            if refresh:
                await self._room.refresh(sid, list(feed.outlets), self._s.presence_ttl_seconds)
            self.actions.dirty.presence.add(sid)
            for poll_id in await self._room.polls_due(sid, time.time()):
                with contextlib.suppress(FailedPrecondition):
                    await self.actions.close_poll(sid, poll_id)
        dirty = self.actions.dirty
        sessions, dirty.presence = dirty.presence, set()
        for sid in sessions:
            counts = await self._room.counts(sid)
            if await self._room.presence_changed(sid, counts):
                presence = pb.Presence(participant_count=counts[0], raised_hand_count=counts[1])
                with contextlib.suppress(FailedPrecondition):
                    await self._hub.publish(sid, pb.ServerEvent(presence=presence))
        polls, dirty.polls = dirty.polls, set()
        for sid, pid in polls:
            poll = await self._room.poll(sid, pid)
            if poll is not None and poll.open:
                with contextlib.suppress(FailedPrecondition):
                    await self._hub.publish(sid, pb.ServerEvent(poll_tally=poll))

    def drain(self) -> None:
        """SIGTERM: refuse new joins, tell every stream to reconnect elsewhere, end them."""
        self.draining = True
        notice_text = "this server is shutting down; reconnect with your last sequence"

        def close(_feed: Any, outlet: Outlet) -> None:
            outlet.close(
                notice=wire.notice(
                    outlet.session_id,
                    pb.NOTICE_KIND_RECONNECT_ELSEWHERE,
                    notice_text,
                    retry_after=wire.seconds(0.2),
                )
            )

        self._hub.each_outlet(close)
