"""svc_quiz wiring: settings, pools, the course channel, the grading queue, domain, servicer;
start and drain. The grading worker is a process of its own (svc_quiz.worker)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import grpc

from elearn.quiz.v1 import quiz_service_pb2, quiz_service_pb2_grpc
from mesh import server
from mesh.bus import connect_bus
from mesh.channels import open_channels
from mesh.db import Database
from mesh.logs import configure_logging
from mesh.outbox import Outbox
from mesh.tracing import configure_tracing
from svc_quiz.attempts import Attempts
from svc_quiz.authoring import Authoring
from svc_quiz.courses import Courses
from svc_quiz.definitions import Definitions
from svc_quiz.grades import GradeWriter
from svc_quiz.grading_queue import Admission, ensure_queue
from svc_quiz.models import SCHEMA, outbox
from svc_quiz.policy import POLICY
from svc_quiz.servicer import QuizServicer
from svc_quiz.settings import QuizSettings
from svc_quiz.submissions import Submissions

SERVICE = quiz_service_pb2.DESCRIPTOR.services_by_name["QuizService"].full_name
log = logging.getLogger("svc_quiz.server")


async def serve() -> None:
    settings = QuizSettings.load()
    settings.require("database_url", "nats_url", "jwt_public_key_file", "course_address")
    listener = configure_logging("quiz", settings.instance_name, settings.log_level)
    configure_tracing("quiz", settings)
    try:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(Database.open(settings, SCHEMA))
            bus = await stack.enter_async_context(connect_bus(settings))
            channels = await stack.enter_async_context(open_channels())
            await ensure_queue(
                bus.js, settings.grading_ack_wait_seconds, settings.grading_max_deliver
            )
            events = Outbox(outbox)
            definitions = Definitions(db)
            courses = Courses(channels, settings.course_address, settings.enrollment_cache_seconds)
            admission = Admission(
                bus.js,
                settings.admission_max_backlog,
                settings.admission_retry_seconds,
                settings.backlog_refresh_seconds,
            )
            attempts = Attempts(
                db,
                definitions,
                courses,
                admission,
                settings.deadline_grace_seconds,
                settings.quiz_cache_seconds,
            )
            grades = GradeWriter(db, definitions, events, bus)
            submissions = Submissions(
                db,
                definitions,
                attempts,
                grades,
                events,
                bus,
                settings.sync_max_questions,
                settings.group_commit_max_batch,
                settings.group_commit_linger_seconds,
            )
            stack.push_async_callback(submissions.close)
            servicer = QuizServicer(
                Authoring(db, definitions, courses, events), attempts, submissions
            )

            def register(srv: grpc.aio.Server) -> None:
                quiz_service_pb2_grpc.add_QuizServiceServicer_to_server(servicer, srv)

            async def relay() -> None:
                await events.relay(
                    db,
                    bus,
                    max_attempts=settings.outbox_max_attempts,
                    linger_seconds=settings.outbox_linger_seconds,
                )

            async def expire_attempts() -> None:
                while True:
                    try:
                        await submissions.expire_overdue()
                    except Exception:
                        log.exception("expiring overdue attempts failed; retrying")
                    await asyncio.sleep(settings.expiry_sweep_seconds)

            spec = server.ServiceSpec(
                name="quiz",
                services=[SERVICE],
                register=register,
                policy=POLICY,
                background=[relay, expire_attempts],
                bus=bus,
            )
            await server.run(settings, spec)
    finally:
        listener.stop()
