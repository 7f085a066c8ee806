"""Direct multipart uploads to object storage (M4): the service hands out presigned part URLs
and checks the result; the bytes go from the client to storage through the edge.

A queue slot is reserved at StartVideoUpload (so a full queue refuses before any byte is
sent) and released when the upload is aborted, refused, swept or its job ends. Storage calls
are never made inside a database transaction.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import Row

from elearn.course.v1 import course_service_pb2 as pb
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from mesh.objectstore import ObjectStore
from svc_course import messages
from svc_course import repository as repo
from svc_course import upload_repository as uploads_repo
from svc_course.lookups import Lookups
from svc_course.media_probe import ProbeFailed, probe
from svc_course.settings import CourseSettings
from svc_course.transcode_queue import TranscodeQueue

log = logging.getLogger("svc_course.uploads")

MIB = 1024 * 1024
S3_MAX_PARTS = 10_000
UPLOAD_STATES = {
    "open": pb.UPLOAD_STATE_OPEN,
    "completed": pb.UPLOAD_STATE_COMPLETED,
    "aborted": pb.UPLOAD_STATE_ABORTED,
}


def part_size_for(size_bytes: int, preferred: int) -> int:
    """The preferred part size, raised (in whole MiB) when the file would need more parts
    than S3 allows."""
    needed = math.ceil(size_bytes / S3_MAX_PARTS)
    return max(preferred, math.ceil(needed / MIB) * MIB)


def part_count(size_bytes: int, part_size: int) -> int:
    return max(1, math.ceil(size_bytes / part_size))


def expected_part_size(row: Row, number: int) -> int:
    count = part_count(row.size_bytes, row.part_size_bytes)
    return (
        row.part_size_bytes
        if number < count
        else row.size_bytes - row.part_size_bytes * (count - 1)
    )


def object_key(video_id: uuid.UUID, upload_id: uuid.UUID) -> str:
    """Sources live under the video, one per upload; renditions go under videos/<id>/hls/."""
    return f"videos/{video_id}/source/{upload_id}"


class Uploads:
    def __init__(
        self,
        db: Database,
        lookups: Lookups,
        store: ObjectStore,
        queue: TranscodeQueue,
        settings: CourseSettings,
    ) -> None:
        self._db = db
        self._lookups = lookups
        self._store = store
        self._queue = queue
        self._settings = settings

    def check_start(self, request: pb.StartVideoUploadRequest) -> None:
        limit = self._settings.upload_max_bytes
        problems = []
        if not 1 <= request.size_bytes <= limit:
            problems.append(("size_bytes", f"must be between 1 byte and {limit} bytes"))
        if not request.content_type.lower().startswith("video/"):
            problems.append(("content_type", "must be a video type (video/…)"))
        if not 1 <= len(request.file_name) <= 255:
            problems.append(("file_name", "must be 1 to 255 characters"))
        if not 1 <= len(request.idempotency_key) <= 128:
            problems.append(("idempotency_key", "must be 1 to 128 characters"))
        if problems:
            raise InvalidArgument("; ".join(f"{f} {p}" for f, p in problems), violations=problems)

    async def start(
        self, caller: Caller, video_id: uuid.UUID, request: pb.StartVideoUploadRequest
    ) -> pb.StartVideoUploadResponse:
        self.check_start(request)
        video = await self._managed_video(caller, video_id, "upload its videos")
        async with self._db.read() as conn:
            existing = await uploads_repo.upload_by_key(conn, video_id, request.idempotency_key)
        if existing is not None:
            if existing.size_bytes != request.size_bytes:
                raise FailedPrecondition("idempotency_key was already used for another upload")
            if existing.state != "open":
                raise FailedPrecondition(f"upload {existing.id} is {existing.state}")
            return await self._start_response(existing)
        if video.state == pb.VIDEO_STATE_PROCESSING:
            raise FailedPrecondition("the video's previous upload is still being transcoded")
        upload_id = uuid.uuid4()
        key = object_key(video_id, upload_id)
        s3_upload = await self._store.create_multipart(key, request.content_type)
        try:
            row = await self._record_start(caller, video, upload_id, key, s3_upload, request)
        except BaseException:
            # Refused (queue full, another upload open) or failed: nothing stays in storage.
            await self._store.abort_multipart(key, s3_upload)
            raise
        await self._lookups.forget_videos([str(video_id)])
        return await self._start_response(row)

    async def _record_start(
        self,
        caller: Caller,
        video: pb.Video,
        upload_id: uuid.UUID,
        key: str,
        s3_upload: str,
        request: pb.StartVideoUploadRequest,
    ) -> Row:
        video_id = uuid.UUID(video.video_id)
        async with self._db.transaction() as conn:
            locked = await repo.video_for_update(conn, video_id)
            assert locked is not None, "videos are never deleted"
            if await uploads_repo.open_upload_of(conn, video_id) is not None:
                raise FailedPrecondition(
                    "the video has an open upload; resume it (GetVideoUpload) or abort it"
                )
            row = await uploads_repo.insert_upload(
                conn,
                {
                    "id": upload_id,
                    "video_id": video_id,
                    "course_id": uuid.UUID(video.course_id),
                    "created_by": uuid.UUID(caller.user_id),
                    "idempotency_key": request.idempotency_key,
                    "object_key": key,
                    "s3_upload_id": s3_upload,
                    "file_name": request.file_name,
                    "content_type": request.content_type,
                    "size_bytes": request.size_bytes,
                    "part_size_bytes": part_size_for(
                        request.size_bytes, self._settings.upload_part_bytes
                    ),
                },
            )
            await uploads_repo.set_video_state(conn, video_id, "uploading")
            # Last before the commit: every start updates this one counter row, so its lock is
            # held only for the commit, not for the insert and the update too (150 concurrent
            # starts on a busy box otherwise queue past the pool's and the statement's timeouts).
            # A refusal rolls back the rows above with it.
            if not await uploads_repo.take_slot(conn, self._settings.transcode_queue_limit):
                raise ResourceExhausted(
                    f"the transcoding queue is full ({self._settings.transcode_queue_limit} "
                    "jobs); retry later",
                    retry_after_seconds=self._settings.transcode_queue_retry_seconds,
                )
        return row

    async def _start_response(self, row: Row) -> pb.StartVideoUploadResponse:
        count = part_count(row.size_bytes, row.part_size_bytes)
        urls, expires = await self._part_urls(row, range(1, count + 1))
        return pb.StartVideoUploadResponse(
            upload_id=str(row.id),
            part_size_bytes=row.part_size_bytes,
            parts=[pb.UploadPart(part_number=n, url=u) for n, u in urls.items()],
            expire_time=messages.timestamp(expires),
        )

    async def _part_urls(self, row: Row, numbers: Any) -> tuple[dict[int, str], datetime]:
        ttl = self._settings.upload_url_ttl_seconds
        expires = datetime.now(UTC) + timedelta(seconds=ttl)
        urls = await self._store.part_urls(row.object_key, row.s3_upload_id, numbers, ttl)
        return urls, expires

    async def get(
        self, caller: Caller, video_id: uuid.UUID, upload_id: uuid.UUID
    ) -> pb.GetVideoUploadResponse:
        row = await self._managed_upload(caller, video_id, upload_id)
        reply = pb.GetVideoUploadResponse(
            upload_id=str(row.id),
            state=UPLOAD_STATES[row.state],  # type: ignore[arg-type]
            part_size_bytes=row.part_size_bytes,
            size_bytes=row.size_bytes,
        )
        if row.state != "open":
            return reply
        stored = {
            p.number: p
            for p in await self._store.list_parts(row.object_key, row.s3_upload_id)
            if p.size == expected_part_size(row, p.number)
        }
        missing = [
            n for n in range(1, part_count(row.size_bytes, row.part_size_bytes) + 1)
            if n not in stored
        ]  # fmt: skip
        urls, expires = await self._part_urls(row, missing)
        reply.stored_parts.extend(
            pb.StoredUploadPart(part_number=p.number, size_bytes=p.size, etag=p.etag)
            for p in sorted(stored.values(), key=lambda p: p.number)
        )
        reply.missing_parts.extend(pb.UploadPart(part_number=n, url=u) for n, u in urls.items())
        reply.expire_time.FromDatetime(expires)
        return reply

    async def complete(
        self,
        caller: Caller,
        video_id: uuid.UUID,
        upload_id: uuid.UUID,
        parts: list[tuple[int, str]],
    ) -> pb.Video:
        row = await self._managed_upload(caller, video_id, upload_id)
        if row.state == "aborted":
            raise FailedPrecondition(f"upload {upload_id} was aborted: {row.error_message}")
        if row.state == "open":
            await self._assemble(row, parts)
            await self._check_media(row)
            async with self._db.transaction() as conn:
                await uploads_repo.update_upload(
                    conn,
                    row.id,
                    state="completed",
                    job_state="queued",
                    queued_at=datetime.now(UTC),
                )
                await uploads_repo.set_video_state(conn, video_id, "processing")
            await self._lookups.forget_videos([str(video_id)])
        if row.state == "open" or row.job_state == "queued":
            # Re-publishing on a retried Complete is harmless: the queue drops the duplicate.
            await self._queue.enqueue(str(video_id), str(upload_id))
        return await self._video(video_id)

    async def _assemble(self, row: Row, parts: list[tuple[int, str]]) -> None:
        count = part_count(row.size_bytes, row.part_size_bytes)
        if not parts:
            stored = await self._store.list_parts(row.object_key, row.s3_upload_id)
            parts = [(p.number, p.etag) for p in stored]
        numbers = sorted(n for n, _ in parts)
        if numbers != list(range(1, count + 1)):
            raise FailedPrecondition(
                f"the upload needs parts 1 to {count}; got {len(numbers)} "
                "(GetVideoUpload lists the missing ones)"
            )
        try:
            await self._store.complete_multipart(row.object_key, row.s3_upload_id, sorted(parts))
        except ClientError as exc:
            raise FailedPrecondition(
                f"object storage refused to assemble the parts ({exc.response['Error']['Code']});"
                " check the ETags or resume with GetVideoUpload"
            ) from exc

    async def _check_media(self, row: Row) -> None:
        """Size and a real probe of the assembled object; a refusal removes it and frees the
        slot before the caller hears of it."""
        head = await self._store.head(row.object_key)
        problem = None
        if head is None or head.size != row.size_bytes:
            got = "nothing" if head is None else f"{head.size} bytes"
            problem = InvalidArgument(f"declared {row.size_bytes} bytes but {got} arrived")
        else:
            url = await self._store.internal_get_url(row.object_key, 600)
            try:
                await probe(url, self._settings.probe_timeout_seconds)
            except ProbeFailed as exc:
                problem = InvalidArgument(f"the file is not a readable video: {exc}")
        if problem is not None:
            await self._store.delete(row.object_key)
            await self._discard(row, problem.message)
            raise problem

    async def abort(self, caller: Caller, video_id: uuid.UUID, upload_id: uuid.UUID) -> pb.Video:
        row = await self._managed_upload(caller, video_id, upload_id)
        if row.state == "completed":
            raise FailedPrecondition(f"upload {upload_id} is complete; it cannot be aborted")
        if row.state == "open":
            await self._store.abort_multipart(row.object_key, row.s3_upload_id)
            await self._discard(row, "aborted by the instructor")
        return await self._video(video_id)

    async def sweep(self, older_than_seconds: float, limit: int = 100) -> int:
        """Abort uploads left open past the age limit; returns how many."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        async with self._db.read() as conn:
            rows = await uploads_repo.abandoned_uploads(conn, cutoff, limit)
        for row in rows:
            await self._store.abort_multipart(row.object_key, row.s3_upload_id)
            await self._discard(row, "abandoned: not completed in time")
        return len(rows)

    async def _discard(self, row: Row, reason: str) -> None:
        """Mark the upload aborted, free its slot and put the video back where it was."""
        async with self._db.transaction() as conn:
            current = await uploads_repo.upload_by_id(conn, row.id, lock=True)
            if current is None or current.state != "open":
                return
            await uploads_repo.update_upload(conn, row.id, state="aborted", error_message=reason)
            await uploads_repo.release_slot(conn, row.id)
            ready = await uploads_repo.latest_upload(conn, row.video_id)
            back = (
                "ready"
                if ready is not None and ready.job_state == "succeeded"
                else ("awaiting_upload")
            )
            await uploads_repo.set_video_state(conn, row.video_id, back)
        await self._lookups.forget_videos([str(row.video_id)])

    async def _managed_video(self, caller: Caller, video_id: uuid.UUID, action: str) -> pb.Video:
        video = await self._lookups.video(video_id)
        if video is None:
            raise NotFound(f"video {video_id} not found")
        await self._lookups.managed_course(uuid.UUID(video.course_id), caller, action)
        return video

    async def _managed_upload(
        self, caller: Caller, video_id: uuid.UUID, upload_id: uuid.UUID
    ) -> Row:
        await self._managed_video(caller, video_id, "manage its uploads")
        async with self._db.read() as conn:
            row = await uploads_repo.upload_by_id(conn, upload_id)
        if row is None or row.video_id != video_id:
            raise NotFound(f"upload {upload_id} of video {video_id} not found")
        return row

    async def _video(self, video_id: uuid.UUID) -> pb.Video:
        async with self._db.read() as conn:
            row = await repo.video_by_id(conn, video_id)
        assert row is not None, "videos are never deleted"
        return messages.video(row)
