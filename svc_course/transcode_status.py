"""Transcoding status of a video's latest upload: read (GetTranscodingStatus) and watched
(WatchTranscodingStatus: the current status, then every change, published by the transcoder on
core NATS as `course.transcoding.<video_id>`)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from nats.aio.client import Client as NATS
from sqlalchemy import Row

from elearn.course.v1 import course_service_pb2 as pb
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import NotFound
from svc_course import messages
from svc_course import upload_repository as uploads_repo
from svc_course.lookups import Lookups

JOB_STATES = {
    "queued": pb.TRANSCODING_STATE_QUEUED,
    "running": pb.TRANSCODING_STATE_RUNNING,
    "succeeded": pb.TRANSCODING_STATE_SUCCEEDED,
    "failed": pb.TRANSCODING_STATE_FAILED,
}
FINAL = (pb.TRANSCODING_STATE_SUCCEEDED, pb.TRANSCODING_STATE_FAILED)
# A watcher re-reads the row this often even without a notice, so a lost notice (core NATS is
# at-most-once) delays an update at most this long.
RESYNC_SECONDS = 5.0


def status_subject(video_id: str) -> str:
    return f"course.transcoding.{video_id}"


def status_message(row: Row) -> pb.TranscodingStatus:
    status = pb.TranscodingStatus(
        video_id=str(row.video_id),
        upload_id=str(row.id),
        state=JOB_STATES.get(row.job_state or "", pb.TRANSCODING_STATE_UNSPECIFIED),  # type: ignore[arg-type]
        progress_percent=row.progress_percent,
        attempt=row.attempt,
        error_message=row.error_message if row.job_state == "failed" else "",
        renditions=[pb.Rendition(**r) for r in row.renditions],
    )
    for field, value in (
        ("queue_time", row.queued_at),
        ("start_time", row.started_at),
        ("finish_time", row.finished_at),
    ):
        if value is not None:
            getattr(status, field).CopyFrom(messages.timestamp(value))
    return status


class TranscodeStatus:
    def __init__(self, db: Database, lookups: Lookups, nc: NATS) -> None:
        self._db = db
        self._lookups = lookups
        self._nc = nc

    async def get(self, caller: Caller, video_id: uuid.UUID) -> pb.TranscodingStatus:
        video = await self._lookups.video(video_id)
        if video is None:
            raise NotFound(f"video {video_id} not found")
        await self._lookups.managed_course(uuid.UUID(video.course_id), caller, "see its jobs")
        return await self._read(video_id)

    async def _read(self, video_id: uuid.UUID) -> pb.TranscodingStatus:
        async with self._db.read() as conn:
            row = await uploads_repo.latest_upload(conn, video_id)
        if row is None or row.job_state is None:
            raise NotFound(f"video {video_id} has no completed upload")
        return status_message(row)

    async def watch(
        self, caller: Caller, video_id: uuid.UUID
    ) -> AsyncIterator[pb.TranscodingStatus]:
        current = await self.get(caller, video_id)
        changed = asyncio.Event()

        async def notice(_msg: object) -> None:
            changed.set()

        sub = await self._nc.subscribe(status_subject(str(video_id)), cb=notice)
        try:
            yield current
            while current.state not in FINAL:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), RESYNC_SECONDS)
                changed.clear()
                latest = await self._read(video_id)
                if latest != current:
                    current = latest
                    yield current
        finally:
            await sub.unsubscribe()
