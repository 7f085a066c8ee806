"""Scheduling, starting, ending and reading live sessions (Postgres), with the room state
in the state Valkey kept in step (the `state` key the sequencer checks)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from elearn.events.v1 import live_events_pb2 as events
from elearn.live.v1 import live_service_pb2 as pb
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from mesh.outbox import Outbox, new_event_id
from mesh.pagination import decode_token, encode_token
from svc_live import repository as repo
from svc_live.course_access import CourseAccess
from svc_live.feed import Hub

STARTED_SUBJECT = "elearn.live.live_session_started"
ENDED_SUBJECT = "elearn.live.live_session_ended"
# An ended session's room state (history, polls, questions …) stays this long in the state
# Valkey, so late resumes still get the end event, then goes.
ENDED_ROOM_SECONDS = 24 * 3600


def to_message(row: Any, participant_count: int = 0, last_sequence: int = 0) -> pb.LiveSession:
    session = pb.LiveSession(
        session_id=str(row.id),
        course_id=str(row.course_id),
        instructor_id=str(row.instructor_id),
        title=row.title,
        description=row.description,
        state=row.state,
        max_participants=row.max_participants,
        participant_count=participant_count,
        last_sequence=last_sequence or row.last_sequence,
    )
    session.scheduled_start_time.FromDatetime(row.scheduled_start_at)
    session.create_time.FromDatetime(row.created_at)
    if row.started_at is not None:
        session.start_time.FromDatetime(row.started_at)
    if row.ended_at is not None:
        session.end_time.FromDatetime(row.ended_at)
    return session


class Sessions:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        access: CourseAccess,
        hub: Hub,
        *,
        max_participants: int,
        max_live_sessions: int,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._access = access
        self._hub = hub
        self._max_participants = max_participants
        self._max_live = max_live_sessions

    async def schedule(
        self, caller: Caller, session: pb.LiveSession, idempotency_key: str
    ) -> pb.LiveSession:
        if session.max_participants > self._max_participants:
            raise InvalidArgument(
                f"max_participants may be at most {self._max_participants}",
                violations=[("session.max_participants", f"at most {self._max_participants}")],
            )
        instructor_id = await self._access.instructor_of(session.course_id, caller)
        values = {
            "course_id": uuid.UUID(session.course_id),
            "instructor_id": uuid.UUID(instructor_id),
            "title": session.title,
            "description": session.description,
            "scheduled_start_at": session.scheduled_start_time.ToDatetime(tzinfo=UTC),
            "max_participants": session.max_participants or self._max_participants,
            "idempotency_key": f"{caller.user_id}:{idempotency_key}",
        }
        async with self._db.transaction() as conn:
            row = await repo.insert_session(conn, values)
        return to_message(row)

    async def row(self, session_id: uuid.UUID) -> Any:
        async with self._db.read() as conn:
            row = await repo.get_session(conn, session_id)
        if row is None:
            raise NotFound(f"live session {session_id} not found")
        return row

    async def message(self, row: Any) -> pb.LiveSession:
        room = self._hub.room
        sid = str(row.id)
        participants = 0
        if row.state == repo.LIVE:
            participants, _ = await room.counts(sid)
        return to_message(row, participants, await room.last_sequence(sid))

    async def get(self, caller: Caller, session_id: uuid.UUID) -> pb.LiveSession:
        row = await self.row(session_id)
        await self._access.role_in(str(row.course_id), caller)
        return await self.message(row)

    async def list(
        self, caller: Caller, course_id: uuid.UUID, state: int, size: int, token: str
    ) -> tuple[list[pb.LiveSession], str]:
        await self._access.role_in(str(course_id), caller)
        key = decode_token(token, 2)
        after = None if key is None else (datetime.fromisoformat(key[0]), uuid.UUID(key[1]))
        async with self._db.read() as conn:
            rows = await repo.list_sessions(conn, course_id, state, size, after)
        page, more = rows[:size], len(rows) > size
        next_token = ""
        if more:
            last = page[-1]
            next_token = encode_token([last.scheduled_start_at.isoformat(), str(last.id)])
        return [to_message(r) for r in page], next_token

    async def start(self, caller: Caller, session_id: uuid.UUID) -> pb.LiveSession:
        row = await self.row(session_id)
        await self._access.instructor_of(str(row.course_id), caller)
        if row.state == repo.LIVE:
            return await self.message(row)
        if row.state == repo.ENDED:
            raise FailedPrecondition("the session has ended; schedule a new one")
        async with self._db.transaction() as conn:
            live = await repo.lock_live_cap(conn)
            row = await repo.lock_session(conn, session_id)
            assert row is not None
            if row.state == repo.SCHEDULED:
                if live >= self._max_live:
                    raise ResourceExhausted(
                        f"the platform runs at most {self._max_live} live sessions at once; "
                        "end one or try later"
                    )
                row = await repo.set_state(conn, session_id, repo.LIVE)
                event_id, occurred = new_event_id()
                event = events.LiveSessionStarted(
                    event_id=event_id,
                    occur_time=occurred,
                    session_id=str(row.id),
                    course_id=str(row.course_id),
                    instructor_id=str(row.instructor_id),
                    title=row.title,
                    scheduled_start_time=to_message(row).scheduled_start_time,
                )
                await self._outbox.add(
                    conn, STARTED_SUBJECT, event_id, event, aggregate_id=str(row.id)
                )
            # Before commit: a joiner who sees LIVE in Postgres finds the room open too.
            await self._hub.room.set_state(str(session_id), "live")
        await self._hub.publish(
            str(session_id),
            pb.ServerEvent(session_state=pb.SessionStateChanged(state=pb.SESSION_STATE_LIVE)),
        )
        return await self.message(row)

    async def end(self, caller: Caller, session_id: uuid.UUID) -> pb.LiveSession:
        row = await self.row(session_id)
        await self._access.instructor_of(str(row.course_id), caller)
        if row.state == repo.ENDED:
            return await self.message(row)
        sid = str(session_id)
        room = self._hub.room
        if row.state == repo.LIVE:
            # The end event is the session's last: sequenced, then the room refuses more.
            ended = pb.ServerEvent(
                session_state=pb.SessionStateChanged(state=pb.SESSION_STATE_ENDED)
            )
            await self._hub.publish(sid, ended, force=True)
        await room.set_state(sid, "ended")
        await room.expire(sid, ENDED_ROOM_SECONDS)
        async with self._db.transaction() as conn:
            locked = await repo.lock_session(conn, session_id)
            assert locked is not None
            if locked.state == repo.ENDED:
                return await self.message(locked)
            row = await repo.set_state(conn, session_id, repo.ENDED, await room.last_sequence(sid))
            event_id, occurred = new_event_id()
            event = events.LiveSessionEnded(
                event_id=event_id,
                occur_time=occurred,
                session_id=sid,
                course_id=str(row.course_id),
                instructor_id=str(row.instructor_id),
            )
            if row.started_at is not None:
                event.start_time.FromDatetime(row.started_at)
            await self._outbox.add(conn, ENDED_SUBJECT, event_id, event, aggregate_id=sid)
        return await self.message(row)
