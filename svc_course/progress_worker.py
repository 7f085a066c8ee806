"""`python -m svc_course.progress_worker`: the write-behind flusher of video progress, a
process of its own (see svc_course.progress_flusher for why).

Any number may run: the claim in the state Valkey gives each sample to one flusher at a time,
and a flusher killed mid-batch leaves its claim to expire and be re-taken. It relays the
course outbox too, so its events go out without waiting for a course replica. On SIGTERM it
drains what is pending before the pools close. It serves gRPC health (and metrics) only.
"""

from __future__ import annotations

import contextlib
from contextlib import AsyncExitStack

import uvloop

from mesh import server
from mesh.bus import connect_bus
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.outbox import Outbox
from mesh.state import open_state
from mesh.tracing import configure_tracing
from svc_course.models import SCHEMA, outbox
from svc_course.progress_flusher import ProgressFlusher
from svc_course.progress_state import ProgressState
from svc_course.settings import ProgressFlusherSettings

NAME = "progress-flusher"


def flusher_for(db: Database, state: ProgressState, events: Outbox,
                settings: ProgressFlusherSettings) -> ProgressFlusher:  # fmt: skip
    return ProgressFlusher(
        db,
        state,
        events,
        interval_seconds=settings.flush_interval_seconds,
        batch_size=settings.flush_batch,
        lease_seconds=settings.flush_lease_seconds,
        keep_seconds=settings.progress_keep_seconds,
    )


async def serve() -> None:
    settings = ProgressFlusherSettings.load()
    settings.require("database_url", "state_url", "nats_url")
    listener = configure_logging(NAME, settings.instance_name, settings.log_level)
    configure_tracing(NAME, settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            state = await stack.enter_async_context(open_state(settings))
            bus = await stack.enter_async_context(connect_bus(settings))
            events = Outbox(outbox)
            flusher = flusher_for(db, ProgressState(state), events, settings)

            async def drain() -> None:
                await flusher.drain(settings.drain_seconds)

            # Registered last, so it runs first on the way out: pending samples are written
            # while the pools are still open.
            stack.push_async_callback(drain)

            async def relay() -> None:
                await events.relay(db, bus, max_attempts=settings.outbox_max_attempts)

            await server.run(settings, server.worker_spec(NAME, [flusher.run, relay], bus))
    finally:
        listener.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())
