"""LiveService over gRPC: validate, authorize, call the domain. Errors are mapped by the mesh
interceptor, so handlers only raise. Join and Subscribe write pre-serialized stream messages
(svc_live.wire), registered with an identity serializer by svc_live.server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1 import live_service_pb2_grpc
from mesh.context import Caller, current_caller
from mesh.errors import FieldErrors, InvalidArgument, ServiceError, infrastructure_error
from mesh.pagination import page_size
from svc_live import wire
from svc_live.actions import Actor, rejected
from svc_live.outlet import Outlet
from svc_live.participation import Participation, session_uuid
from svc_live.sessions import Sessions

# How long a Join client has to send its hello.
_HELLO_SECONDS = 10.0


def _caller() -> Caller:
    caller = current_caller.get()
    assert caller is not None, "policy admits signed-in methods only with a caller"
    return caller


def _check_schedule(request: pb.ScheduleSessionRequest) -> None:
    s = request.session
    errors = FieldErrors()
    try:
        uuid.UUID(s.course_id)
    except ValueError:
        errors.add("session.course_id", "must be a UUID")
    errors.check(0 < len(s.title) <= 200, "session.title", "must be 1 to 200 characters")
    errors.check(len(s.description) <= 5000, "session.description", "at most 5,000 characters")
    errors.check(s.HasField("scheduled_start_time"), "session.scheduled_start_time", "is required")
    errors.check(s.max_participants >= 0, "session.max_participants", "must not be negative")
    errors.check(
        0 < len(request.idempotency_key) <= 128, "idempotency_key", "must be 1 to 128 characters"
    )
    errors.raise_if_any()


class LiveServicer(live_service_pb2_grpc.LiveServiceServicer):
    def __init__(self, sessions: Sessions, participation: Participation) -> None:
        self._sessions = sessions
        self._room = participation

    async def ScheduleSession(
        self, request: pb.ScheduleSessionRequest, context: ServicerContext
    ) -> pb.ScheduleSessionResponse:
        _check_schedule(request)
        session = await self._sessions.schedule(_caller(), request.session, request.idempotency_key)
        return pb.ScheduleSessionResponse(session=session)

    async def GetSession(
        self, request: pb.GetSessionRequest, context: ServicerContext
    ) -> pb.GetSessionResponse:
        session_id = session_uuid(request.session_id)
        return pb.GetSessionResponse(session=await self._sessions.get(_caller(), session_id))

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: ServicerContext
    ) -> pb.ListSessionsResponse:
        course_id = session_uuid(request.course_id, "course_id")
        size = page_size(request.page_size or 20)
        sessions, token = await self._sessions.list(
            _caller(), course_id, request.state, size, request.page_token
        )
        return pb.ListSessionsResponse(sessions=sessions, next_page_token=token)

    async def StartSession(
        self, request: pb.StartSessionRequest, context: ServicerContext
    ) -> pb.StartSessionResponse:
        session_id = session_uuid(request.session_id)
        return pb.StartSessionResponse(session=await self._sessions.start(_caller(), session_id))

    async def EndSession(
        self, request: pb.EndSessionRequest, context: ServicerContext
    ) -> pb.EndSessionResponse:
        session_id = session_uuid(request.session_id)
        return pb.EndSessionResponse(session=await self._sessions.end(_caller(), session_id))

    async def Subscribe(  # type: ignore[override]
        self, request: pb.SubscribeRequest, context: ServicerContext
    ) -> None:
        # Written with context.write, not yielded: no generator layer per message (the mesh
        # interceptor passes a coroutine handler straight to grpc).
        await self._room.stream(
            _caller(),
            request.session_id,
            request.resume_after_sequence,
            write=context.write,
            bidi=False,
            peer=context.peer(),
            from_oldest=request.from_oldest,
        )

    async def Send(self, request: pb.SendRequest, context: ServicerContext) -> pb.SendResponse:
        if not request.HasField("event"):
            raise InvalidArgument("event is required", violations=[("event", "required")])
        ack = await self._room.send(
            _caller(), request.session_id, request.connection_id, request.event
        )
        return pb.SendResponse(ack=ack)

    async def Join(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.JoinRequest], context: ServicerContext
    ) -> None:
        try:
            first = await asyncio.wait_for(anext(request_iterator), _HELLO_SECONDS)
        except (StopAsyncIteration, TimeoutError):
            raise InvalidArgument("the first message of Join must be hello") from None
        if first.event.WhichOneof("kind") != "hello":
            raise InvalidArgument("the first message of Join must be hello")
        hello = first.event.hello
        caller = _caller()
        reader: list[asyncio.Task[None]] = []

        def on_open(outlet: Outlet, actor: Actor) -> None:
            reader.append(asyncio.create_task(self._read(request_iterator, outlet, actor)))

        try:
            await self._room.stream(
                caller,
                hello.session_id,
                hello.resume_after_sequence,
                write=context.write,
                bidi=True,
                peer=context.peer(),
                from_oldest=hello.from_oldest,
                on_open=on_open,
            )
        finally:
            for task in reader:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(
        self, requests: AsyncIterator[pb.JoinRequest], outlet: Outlet, actor: Actor
    ) -> None:
        """The client's half of Join: each event is applied and answered with an Ack."""
        async for request in requests:
            event = request.event
            if event.WhichOneof("kind") == "heartbeat":
                self._room.heartbeat_local(actor.session_id, actor.connection_id)
            try:
                ack = await self._room.actions.apply(actor, event)
            except ServiceError as error:
                ack = rejected(event.client_event_id, error)
            except Exception as exc:
                mapped = infrastructure_error(exc)
                if mapped is None:
                    raise
                ack = rejected(event.client_event_id, mapped)
            outlet.send_private(wire.private(actor.session_id, ack=ack))
        # The client closed its sending half: it is leaving.
        outlet.close()
