"""`python -m svc_quiz.worker`: a grading worker, a process of its own.

Replicas share one durable pull consumer on the work queue, so each job goes to one worker at
a time; a worker that dies leaves its jobs unacknowledged and JetStream redelivers them after
`ack_wait` to another. Long jobs send in-progress signals so they are not redelivered while
still being graded. The grade itself is a conditional UPDATE, so a job graded twice writes one
grade. A job whose last delivery fails is copied to the dead-letter subject with its reason
and its submission becomes FAILED; a job whose last delivery never finished (its worker died
every time) is found through JetStream's max-deliveries advisory and handled the same way.

The worker serves only gRPC health (and metrics), so the launcher's readiness check and
Kubernetes probes treat it like any service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from contextlib import AsyncExitStack
from typing import Any

import nats.errors
import uvloop
from google.protobuf.message import DecodeError
from google.protobuf.wrappers_pb2 import StringValue
from nats.aio.msg import Msg

from mesh import server, tracing
from mesh.bus import Bus, connect_bus, watch_consumer
from mesh.db import Database
from mesh.errors import infrastructure_error
from mesh.logs import configure_logging
from mesh.outbox import Outbox
from mesh.tracing import configure_tracing
from svc_quiz.definitions import Definitions
from svc_quiz.grades import GradeWriter
from svc_quiz.grading_queue import CONSUMER, DEAD_SUBJECT, JOB_STREAM, ensure_queue
from svc_quiz.models import SCHEMA, outbox
from svc_quiz.repository import JOB_SUBJECT
from svc_quiz.settings import QuizWorkerSettings

log = logging.getLogger("svc_quiz.worker")
MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOB_STREAM}.{CONSUMER}"


class Worker:
    def __init__(self, bus: Bus, grades: GradeWriter, settings: QuizWorkerSettings) -> None:
        self._bus = bus
        self._grades = grades
        self._batch = settings.worker_batch
        self._max_deliver = settings.grading_max_deliver
        self._heartbeat = max(1.0, settings.grading_ack_wait_seconds / 3)

    async def run(self) -> None:
        psub = await self._bus.js.pull_subscribe(JOB_SUBJECT, durable=CONSUMER, stream=JOB_STREAM)
        await self._bus.nc.subscribe(MAX_DELIVERIES_ADVISORY, cb=self._on_max_deliveries)
        # The grading queue's depth is this consumer's lag.
        watcher = asyncio.create_task(watch_consumer(self._bus, JOB_STREAM, CONSUMER))
        try:
            await self._fetch_loop(psub)
        finally:
            watcher.cancel()

    async def _fetch_loop(self, psub: Any) -> None:
        while True:
            try:
                msgs = await psub.fetch(self._batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                # An idle queue; nats-py raises either kind depending on where the wait ended.
                continue
            except nats.errors.Error as exc:
                # Reconnecting or draining: jobs wait in the stream meanwhile.
                log.warning("fetching grading jobs failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            await asyncio.gather(*(self.handle(m) for m in msgs))

    async def _keep_alive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            await msg.in_progress()

    async def handle(self, msg: Msg) -> None:
        try:
            submission_id = StringValue.FromString(msg.data).value
        except DecodeError:
            log.error("dropping a grading job that is not a submission id")
            await msg.term()
            return
        heartbeat = asyncio.create_task(self._keep_alive(msg))
        try:
            with tracing.consumer_span("grade", msg.subject, msg.headers):
                await self._grades.grade_job(submission_id)
        except Exception as exc:
            heartbeat.cancel()
            await self._failed(msg, submission_id, exc)
            return
        finally:
            heartbeat.cancel()
        await msg.ack()

    async def _failed(self, msg: Msg, submission_id: str, exc: Exception) -> None:
        delivered = msg.metadata.num_delivered or 1
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if delivered < self._max_deliver:
            # An outage is nobody's fault: wait longer before the next delivery.
            base = 2.0 if infrastructure_error(exc) is not None else 0.2
            log.warning(
                "grading %s failed (delivery %d of %d): %s",
                submission_id, delivered, self._max_deliver, reason,
            )  # fmt: skip
            await msg.nak(delay=min(30.0, base * 2 ** (delivered - 1)))
            return
        await self.dead_letter(submission_id, msg.data, f"after {delivered} deliveries: {reason}")
        await msg.term()

    async def dead_letter(self, submission_id: str, data: bytes, reason: str) -> None:
        log.error("grading %s dead-lettered %s", submission_id, reason)
        await self._bus.js.publish(DEAD_SUBJECT, data, headers={"Elearn-Failure": reason})
        await self._grades.fail(submission_id, f"grading failed {reason}")

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """A job's last delivery never finished: fail its submission here (any worker may get
        the advisory; failing is conditional, so two doing it changes nothing)."""
        try:
            seq = int(json.loads(advisory.data)["stream_seq"])
            stored: Any = await self._bus.js.get_msg(JOB_STREAM, seq)
            submission_id = StringValue.FromString(stored.data).value
            await self.dead_letter(
                submission_id, stored.data, "after its last delivery never completed"
            )
            await self._bus.js.delete_msg(JOB_STREAM, seq)
        except Exception:
            log.exception("could not handle a max-deliveries advisory")


async def serve() -> None:
    settings = QuizWorkerSettings.load()
    settings.require("database_url", "nats_url")
    listener = configure_logging("quiz-worker", settings.instance_name, settings.log_level)
    configure_tracing("quiz-worker", settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            bus = await stack.enter_async_context(connect_bus(settings))
            await ensure_queue(
                bus.js, settings.grading_ack_wait_seconds, settings.grading_max_deliver
            )
            events = Outbox(outbox)
            worker = Worker(bus, GradeWriter(db, Definitions(db), events, bus), settings)

            async def relay() -> None:
                await events.relay(db, bus, max_attempts=settings.outbox_max_attempts)

            await server.run(settings, server.worker_spec("quiz-worker", [worker.run, relay], bus))
    finally:
        listener.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())
