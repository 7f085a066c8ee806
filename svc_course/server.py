"""svc_course wiring: settings, pools, domain, servicer; start and drain."""

from __future__ import annotations

from contextlib import AsyncExitStack

import grpc

from elearn.course.v1 import course_service_pb2, course_service_pb2_grpc
from mesh import server
from mesh.bus import connect_bus
from mesh.cache import open_cache
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.objectstore import open_objectstore
from mesh.outbox import Outbox
from mesh.state import open_state
from mesh.tracing import configure_tracing
from svc_course import cache_events
from svc_course.catalog import Catalog
from svc_course.enrollment import Enrollments
from svc_course.lookups import Lookups
from svc_course.models import SCHEMA, outbox
from svc_course.playback import Playback
from svc_course.policy import POLICY
from svc_course.progress import Progress
from svc_course.search import Search
from svc_course.servicer import CourseServicer
from svc_course.settings import CourseSettings
from svc_course.transcode_queue import TranscodeQueue, ensure_job_stream
from svc_course.transcode_status import TranscodeStatus
from svc_course.upload_sweeper import sweep_uploads
from svc_course.uploads import Uploads
from svc_course.videos import Videos

SERVICE = course_service_pb2.DESCRIPTOR.services_by_name["CourseService"].full_name


async def serve() -> None:
    settings = CourseSettings.load()
    settings.require(
        "database_url", "cache_url", "state_url", "nats_url", "jwt_public_key_file", "s3_url"
    )
    listener = configure_logging("course", settings.instance_name, settings.log_level)
    configure_tracing("course", settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            cache = await stack.enter_async_context(open_cache(settings))
            state = await stack.enter_async_context(open_state(settings))
            bus = await stack.enter_async_context(connect_bus(settings))
            store = await stack.enter_async_context(open_objectstore(settings))
            await ensure_job_stream(bus.js, settings.transcode_queue_limit)
            events = Outbox(outbox)
            # Its samples are written behind by the progress-flusher worker process.
            progress = Progress(db=db, state=state, settings=settings)
            lookups = Lookups(db, cache, settings)
            uploads = Uploads(db, lookups, store, TranscodeQueue(bus.js), settings)
            servicer = CourseServicer(
                Catalog(db, lookups, events),
                Videos(db, lookups),
                Search(db, lookups),
                Enrollments(db, lookups, events, on_unenroll=progress.forget_enrollment),
                progress,
                uploads,
                TranscodeStatus(db, lookups, bus.nc),
                Playback(lookups, store, settings),
            )

            def register(srv: grpc.aio.Server) -> None:
                course_service_pb2_grpc.add_CourseServiceServicer_to_server(servicer, srv)

            async def relay() -> None:
                await events.relay(db, bus, max_attempts=settings.outbox_max_attempts)

            async def sweep() -> None:
                await sweep_uploads(uploads, settings)

            async def invalidate_cache() -> None:
                await cache_events.consume(bus, lookups)

            spec = server.ServiceSpec(
                name="course",
                services=[SERVICE],
                register=register,
                policy=POLICY,
                background=[
                    relay,
                    invalidate_cache,
                    sweep,
                ],
                bus=bus,
                # Valkey-served, the platform's busiest calls (mesh.acceptors): about a tenth
                # less CPU per progress update than accepting one call at a time.
                hot_methods=[f"/{SERVICE}/UpdateVideoProgress", f"/{SERVICE}/CheckEnrollment"],
            )
            await server.run(settings, spec)
    finally:
        listener.stop()
