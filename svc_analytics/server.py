"""svc_analytics wiring: settings, pools, consumers, servicer; start and drain."""

from __future__ import annotations

from contextlib import AsyncExitStack

import grpc

from elearn.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from mesh import server
from mesh.bus import connect_bus
from mesh.cache import open_cache
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.tracing import configure_tracing
from svc_analytics.dashboard import Dashboards
from svc_analytics.ingest import Ingest
from svc_analytics.models import SCHEMA
from svc_analytics.policy import POLICY
from svc_analytics.servicer import AnalyticsServicer
from svc_analytics.settings import AnalyticsSettings

SERVICE = analytics_service_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].full_name
# The dashboard page is cached as the bytes of its response and sent as they are.
PRESERIALIZED = ("ListInstructorCourseStats",)


async def serve() -> None:
    settings = AnalyticsSettings.load()
    settings.require("database_url", "cache_url", "nats_url", "jwt_public_key_file")
    listener = configure_logging("analytics", settings.instance_name, settings.log_level)
    configure_tracing("analytics", settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            cache = await stack.enter_async_context(open_cache(settings))
            bus = await stack.enter_async_context(connect_bus(settings))
            ingest = Ingest(db, cache, settings.consumer_name)
            servicer = AnalyticsServicer(Dashboards(db, cache))

            def register(srv: grpc.aio.Server) -> None:
                server.register_preserialized(
                    srv, SERVICE, analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server,
                    servicer, PRESERIALIZED,
                )  # fmt: skip

            async def consume() -> None:
                await ingest.run(
                    bus, settings.consumer_batch, pace_seconds=settings.consumer_pace_seconds
                )

            async def refresh_idle() -> None:
                await ingest.refresh_idle_forever(settings.idle_refresh_seconds)

            spec = server.ServiceSpec(
                name="analytics",
                services=[SERVICE],
                register=register,
                policy=POLICY,
                background=[consume, refresh_idle],
                bus=bus,
            )
            await server.run(settings, spec)
    finally:
        listener.stop()
