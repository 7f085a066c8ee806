"""The transcoding work queue: a JetStream stream with work-queue retention, bounded.

The bound that callers see is the slot counter in Postgres (reserved at StartVideoUpload); the
stream's own max_msgs is a backstop at the same size. Jobs are de-duplicated by upload id
(Nats-Msg-Id), so a retried CompleteVideoUpload never queues a job twice.
"""

from __future__ import annotations

import json

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from mesh import tracing

JOB_STREAM = "TRANSCODE_JOBS"
JOB_SUBJECT = "jobs.transcode"
DEAD_LETTER_SUBJECT = "jobs.transcode_dead"
DEAD_LETTER_STREAM = "TRANSCODE_DEAD"
DUPLICATE_WINDOW_SECONDS = 600.0
DEAD_LETTER_RETENTION_SECONDS = 30 * 24 * 3600.0


async def ensure_job_stream(js: JetStreamContext, limit: int) -> None:
    config = StreamConfig(
        name=JOB_STREAM,
        subjects=[JOB_SUBJECT],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_msgs=limit,
        discard=DiscardPolicy.NEW,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    dead = StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=[DEAD_LETTER_SUBJECT],
        storage=StorageType.FILE,
        max_age=DEAD_LETTER_RETENTION_SECONDS,
    )
    for stream in (config, dead):
        try:
            await js.add_stream(stream)
        except BadRequestError:
            await js.update_stream(stream)


class TranscodeQueue:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def enqueue(self, video_id: str, upload_id: str) -> None:
        body = json.dumps({"video_id": video_id, "upload_id": upload_id}).encode()
        headers = {"Nats-Msg-Id": upload_id}
        # The transcoder continues the upload's trace when it is sampled (mesh.tracing).
        with tracing.publish_span(JOB_SUBJECT, None, headers):
            await self._js.publish(JOB_SUBJECT, body, headers=headers)
