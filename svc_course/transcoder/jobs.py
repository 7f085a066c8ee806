"""What the transcoder records: job state and progress in Postgres (the truth), a notice on
core NATS for watchers after each change, the VideoTranscoded event through the outbox, the
video's state and probed duration, the queue slot's release and the dead-letter copy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.duration_pb2 import Duration
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from elearn.course.v1 import course_service_pb2 as pb
from elearn.events.v1 import course_events_pb2 as events
from mesh.db import Database
from mesh.outbox import Outbox, new_event_id
from svc_course import repository as repo
from svc_course import upload_repository as uploads_repo
from svc_course.lookups import Lookups
from svc_course.transcode_queue import DEAD_LETTER_SUBJECT
from svc_course.transcode_status import status_subject

SUBJECT = "elearn.course.video_transcoded"


class JobStore:
    def __init__(
        self, db: Database, outbox: Outbox, lookups: Lookups, nc: NATS, js: JetStreamContext
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._lookups = lookups
        self._nc = nc
        self._js = js

    async def start(self, upload_id: str, attempt: int) -> bool:
        """Mark the job RUNNING; False when it is finished already (a duplicate delivery)."""
        async with self._db.transaction() as conn:
            row = await uploads_repo.upload_by_id(conn, uuid.UUID(upload_id), lock=True)
            if row is None or row.job_state not in ("queued", "running"):
                return False
            await uploads_repo.update_upload(
                conn,
                row.id,
                job_state="running",
                attempt=attempt,
                started_at=datetime.now(UTC),
                progress_percent=0.0,
            )
        await self._notice(str(row.video_id))
        return True

    async def source_key(self, upload_id: str) -> str:
        async with self._db.read() as conn:
            row = await uploads_repo.upload_by_id(conn, uuid.UUID(upload_id))
        assert row is not None
        return str(row.object_key)

    async def progress(self, upload_id: str, percent: float) -> None:
        async with self._db.transaction() as conn:
            row = await uploads_repo.update_upload(
                conn, uuid.UUID(upload_id), progress_percent=percent
            )
        await self._notice(str(row.video_id))

    async def succeed(
        self, upload_id: str, duration_seconds: float, renditions: list[dict[str, Any]]
    ) -> None:
        await self._finish(upload_id, "succeeded", "", round(duration_seconds), renditions)

    async def fail(self, upload_id: str, reason: str, *, final: bool) -> None:
        if final:
            await self._finish(upload_id, "failed", reason, None, [])
            return
        async with self._db.transaction() as conn:
            row = await uploads_repo.update_upload(
                conn, uuid.UUID(upload_id), job_state="queued", error_message=reason
            )
        await self._notice(str(row.video_id))

    async def dead_letter(self, data: bytes, reason: str) -> None:
        await self._js.publish(DEAD_LETTER_SUBJECT, data, headers={"Reason": reason[:500]})

    async def _finish(
        self,
        upload_id: str,
        job_state: str,
        reason: str,
        duration: int | None,
        renditions: list[dict[str, Any]],
    ) -> None:
        async with self._db.transaction() as conn:
            row = await uploads_repo.upload_by_id(conn, uuid.UUID(upload_id), lock=True)
            assert row is not None
            before = await uploads_repo.lock_video(conn, row.video_id)
            assert before is not None, "videos are never deleted"
            await uploads_repo.update_upload(
                conn,
                row.id,
                job_state=job_state,
                error_message=reason,
                renditions=renditions,
                progress_percent=100.0 if job_state == "succeeded" else row.progress_percent,
                finished_at=datetime.now(UTC),
            )
            await uploads_repo.release_slot(conn, row.id)
            video = await uploads_repo.finish_video(
                conn, row.video_id, "ready" if job_state == "succeeded" else "failed", duration
            )
            if duration is not None and duration != before.duration_seconds:
                await repo.add_video_totals(
                    conn, row.course_id, 0, duration - before.duration_seconds
                )
            event_id, now = new_event_id()
            event = events.VideoTranscoded(
                event_id=event_id,
                occur_time=now,
                video_id=str(row.video_id),
                course_id=str(row.course_id),
                upload_id=upload_id,
                state=(
                    pb.TRANSCODING_STATE_SUCCEEDED
                    if job_state == "succeeded"
                    else pb.TRANSCODING_STATE_FAILED
                ),
                renditions=[pb.Rendition(**r) for r in renditions],
                error_message=reason,
                title=video.title,
                position=video.position,
            )
            if duration is not None:
                event.duration.CopyFrom(Duration(seconds=duration))
            await self._outbox.add(
                conn, SUBJECT, event_id, event, aggregate_id=f"video:{row.video_id}"
            )
        await self._lookups.forget_videos([str(row.video_id)])
        await self._lookups.forget_course(str(row.course_id))
        await self._notice(str(row.video_id))

    async def _notice(self, video_id: str) -> None:
        # At-most-once is enough: watchers also re-read the row every few seconds.
        await self._nc.publish(status_subject(video_id), b"")
