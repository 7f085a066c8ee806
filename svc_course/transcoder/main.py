"""Wiring of a transcoder worker: pools, the durable pull consumer, one job at a time, and a
graceful stop (SIGTERM lets the current job finish or hands it back unacked)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import uvloop
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig

from mesh.bus import connect_bus
from mesh.cache import open_cache
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.objectstore import open_objectstore
from mesh.outbox import Outbox
from svc_course.lookups import Lookups
from svc_course.models import SCHEMA, outbox
from svc_course.settings import CourseSettings
from svc_course.transcode_queue import JOB_STREAM, JOB_SUBJECT, ensure_job_stream
from svc_course.transcoder.jobs import JobStore
from svc_course.transcoder.worker import Transcoder

log = logging.getLogger("svc_course.transcoder")

DURABLE = "transcoders"
FETCH_WAIT_SECONDS = 5.0


async def serve() -> None:
    settings = CourseSettings.load()
    settings.require("database_url", "cache_url", "nats_url", "s3_url")
    instance = settings.instance or "transcoder-0"
    listener = configure_logging("transcoder", instance, settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = Path(settings.ready_file) if settings.ready_file else None
    if ready is not None:
        # A restarted worker is not ready until it is connected again.
        await asyncio.to_thread(ready.unlink, missing_ok=True)
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
                    ack_wait=settings.transcoder_ack_wait_seconds,
                    # One more than ours: the worker itself decides the last delivery's fate.
                    max_deliver=settings.transcoder_max_deliveries + 1,
                ),
            )
            if ready is not None:
                await asyncio.to_thread(ready.touch)
            log.info("transcoder ready")
            await _loop(sub, transcoder, stop)
    finally:
        listener.stop()


async def _loop(sub: object, transcoder: Transcoder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        fetch = asyncio.create_task(sub.fetch(1, timeout=FETCH_WAIT_SECONDS))  # type: ignore[attr-defined]
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if fetch not in done:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, NatsTimeout):
                await fetch
            break
        stopped.cancel()
        try:
            messages = fetch.result()
        except NatsTimeout:
            continue
        except Exception:
            log.exception("fetching a job failed; retrying")
            await asyncio.sleep(1.0)
            continue
        for msg in messages:
            try:
                await transcoder.handle(msg)
            except Exception:
                # Unexpected (an outage): leave the job unacked; JetStream redelivers it.
                log.exception("job handling failed")


def main() -> None:
    uvloop.run(serve())
