"""svc_live wiring: settings, pools, domain, servicer; start and drain."""

from __future__ import annotations

from contextlib import AsyncExitStack

import grpc

from elearn.live.v1 import live_service_pb2, live_service_pb2_grpc
from mesh import server
from mesh.bus import connect_bus
from mesh.channels import Channels
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.outbox import Outbox
from mesh.state import open_state
from mesh.tracing import configure_tracing
from svc_live.actions import Actions
from svc_live.course_access import CourseAccess
from svc_live.feed import Hub
from svc_live.models import SCHEMA, outbox
from svc_live.names import DisplayNames
from svc_live.participation import Participation
from svc_live.policy import POLICY
from svc_live.room import Room
from svc_live.servicer import LiveServicer
from svc_live.sessions import Sessions
from svc_live.settings import LiveSettings

SERVICE = live_service_pb2.DESCRIPTOR.services_by_name["LiveService"].full_name
# Stream messages are written as the bytes svc_live.wire built once per event.
PRESERIALIZED = ("Join", "Subscribe")


def register_live(servicer: LiveServicer, srv: grpc.aio.Server) -> None:
    server.register_preserialized(
        srv, SERVICE, live_service_pb2_grpc.add_LiveServiceServicer_to_server, servicer,
        PRESERIALIZED,
    )  # fmt: skip


async def serve() -> None:
    settings = LiveSettings.load()
    settings.require(
        "database_url", "state_url", "nats_url", "jwt_public_key_file", "course_address"
    )
    listener = configure_logging("live", settings.instance_name, settings.log_level)
    configure_tracing("live", settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            state = await stack.enter_async_context(open_state(settings))
            bus = await stack.enter_async_context(connect_bus(settings))
            channels = Channels()
            stack.push_async_callback(channels.close)
            access = CourseAccess(
                channels.get(settings.course_address), settings.enrollment_cache_seconds
            )
            events = Outbox(outbox)
            hub = Hub(bus.nc, Room(state, settings.history_size))
            sessions = Sessions(
                db,
                events,
                access,
                hub,
                max_participants=settings.max_participants,
                max_live_sessions=settings.max_live_sessions,
            )
            names = DisplayNames(
                channels.get(settings.user_address) if settings.user_address else None,
                settings.display_name_cache_seconds,
            )
            participation = Participation(sessions, access, Actions(hub, settings), settings, names)
            servicer = LiveServicer(sessions, participation)

            async def relay() -> None:
                await events.relay(db, bus, max_attempts=settings.outbox_max_attempts)

            async def ticker() -> None:
                await participation.tick_forever()

            async def write_turns() -> None:
                await participation.turns.watch()

            async def drain_streams() -> None:
                participation.drain()

            spec = server.ServiceSpec(
                name="live",
                services=[SERVICE],
                register=lambda srv: register_live(servicer, srv),
                policy=POLICY,
                background=[relay, ticker, write_turns],
                bus=bus,
                on_shutdown=[drain_streams],
                # The instructors' Sends: at 4,000 streams a pod accepted them one at a time
                # more slowly than 40 a second came (mesh.acceptors).
                hot_methods=[f"/{SERVICE}/Send"],
            )
            await server.run(settings, spec)
    finally:
        listener.stop()
