"""The grading work queue on JetStream, and the backlog that exam-start admission reads.

Jobs (a StringValue holding a submission id) are written to the outbox in the transaction
that makes a submission PENDING, so a job exists exactly when the submission does; the relay
publishes them to `quizgrade.jobs`, captured by a WorkQueue stream (a job leaves the stream
when a worker acks it). The one durable pull consumer is shared by every worker replica:
explicit acks, redelivery after `ack_wait` when a worker dies, at most `max_deliver`
deliveries. A job that fails its last delivery is copied to the dead-letter subject
`quizgrade.dead` (a stream of its own, for operators) and its submission becomes FAILED.
Core NATS subject `quiz.submission.<id>` announces that a submission changed, after commit.
"""

from __future__ import annotations

import logging
import time

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from mesh.errors import ResourceExhausted
from svc_quiz.repository import JOB_SUBJECT

log = logging.getLogger("svc_quiz.grading_queue")

JOB_STREAM = "QUIZ_GRADING"
DEAD_STREAM = "QUIZ_GRADING_DEAD"
DEAD_SUBJECT = "quizgrade.dead"
CONSUMER = "graders"
DEAD_RETENTION_SECONDS = 14 * 24 * 3600.0


def changed_subject(submission_id: str) -> str:
    return f"quiz.submission.{submission_id}"


async def _add_or_update(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_queue(js: JetStreamContext, ack_wait: float, max_deliver: int) -> None:
    """Create the streams and the shared consumer (idempotent; every replica calls it)."""
    await _add_or_update(
        js,
        StreamConfig(
            name=JOB_STREAM,
            subjects=[JOB_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        ),
    )
    await _add_or_update(
        js,
        StreamConfig(
            name=DEAD_STREAM,
            subjects=[DEAD_SUBJECT],
            storage=StorageType.FILE,
            max_age=DEAD_RETENTION_SECONDS,
        ),
    )
    config = ConsumerConfig(
        durable_name=CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        filter_subject=JOB_SUBJECT,
        max_ack_pending=10_000,
    )
    try:
        await js.add_consumer(JOB_STREAM, config)
    except BadRequestError as exc:
        log.info("grading consumer exists with other settings; keeping it: %s", exc)


class Admission:
    """Sheds exam starts while the grading backlog (jobs queued or in flight) is past a bound,
    so a rush waits at the door with a retry hint instead of timing out inside the exam."""

    def __init__(
        self, js: JetStreamContext, max_backlog: int, retry_seconds: float, refresh: float
    ) -> None:
        self._js = js
        self._max = max_backlog
        self._retry = retry_seconds
        self._refresh = refresh
        self._backlog = 0
        self._read_at = float("-inf")

    async def backlog(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= self._refresh:
            self._read_at = now
            info = await self._js.consumer_info(JOB_STREAM, CONSUMER)
            self._backlog = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return self._backlog

    async def admit(self) -> None:
        backlog = await self.backlog()
        if backlog > self._max:
            raise ResourceExhausted(
                f"grading backlog is {backlog} jobs (limit {self._max}); "
                f"retry in {self._retry:g} s",
                retry_after_seconds=self._retry,
            )
