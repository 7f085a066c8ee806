"""Wiring of a transcoder worker: pools, the durable pull consumer and one job at a time, run
as a background task of the shared bootstrap, which serves gRPC health (the launcher's
readiness check) and drains on SIGTERM: the current job is cancelled and, unacked, redelivered
to another worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

import uvloop
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig

from mesh import server, tracing
from mesh.bus import connect_bus, watch_consumer
from mesh.cache import open_cache
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.objectstore import open_objectstore
from mesh.outbox import Outbox
from mesh.tracing import configure_tracing
from svc_course.lookups import Lookups
from svc_course.models import SCHEMA, outbox
from svc_course.settings import TranscoderSettings
from svc_course.transcode_queue import JOB_STREAM, JOB_SUBJECT, ensure_job_stream
from svc_course.transcoder.jobs import JobStore
from svc_course.transcoder.worker import Transcoder

log = logging.getLogger("svc_course.transcoder")

DURABLE = "transcoders"
FETCH_WAIT_SECONDS = 5.0


async def serve() -> None:
    settings = TranscoderSettings.load()
    settings.require("database_url", "cache_url", "nats_url", "s3_url")
    listener = configure_logging("transcoder", settings.instance_name, settings.log_level)
    configure_tracing("transcoder", settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            cache = await stack.enter_async_context(open_cache(settings))
            bus = await stack.enter_async_context(connect_bus(settings))
            store = await stack.enter_async_context(open_objectstore(settings))
            await ensure_job_stream(bus.js, settings.transcode_queue_limit)
            jobs = JobStore(db, Outbox(outbox), Lookups(db, cache, settings), bus.nc, bus.js)
            transcoder = Transcoder(store, jobs, settings)
            sub = await bus.js.pull_subscribe(
                JOB_SUBJECT,
                durable=DURABLE,
                stream=JOB_STREAM,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=settings.ack_wait_seconds,
                    # One more than ours: the worker itself decides the last delivery's fate.
                    max_deliver=settings.max_deliveries + 1,
                ),
            )

            async def work() -> None:
                await _loop(sub, transcoder)

            async def lag() -> None:
                # The transcoding queue's depth is this consumer's lag.
                await watch_consumer(bus, JOB_STREAM, DURABLE)

            await server.run(settings, server.worker_spec("transcoder", [work, lag], bus))
    finally:
        listener.stop()


async def _loop(sub: object, transcoder: Transcoder) -> None:
    while True:
        try:
            messages = await sub.fetch(1, timeout=FETCH_WAIT_SECONDS)  # type: ignore[attr-defined]
        except NatsTimeout:
            continue
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fetching a job failed; retrying")
            await asyncio.sleep(1.0)
            continue
        for msg in messages:
            try:
                with tracing.consumer_span("transcode", msg.subject, msg.headers):
                    await transcoder.handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Unexpected (an outage): leave the job unacked; JetStream redelivers it.
                log.exception("job handling failed")


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())
