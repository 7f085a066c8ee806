"""Video progress (finding S1): UpdateVideoProgress, GetVideoProgress, ListVideoProgress.

An update costs one state-Valkey round trip on the hot path: the video's (course, duration)
comes from process memory, and one Lua script checks the enrollment mark, merges the sample
and marks it dirty. Postgres is asked only when the video, the enrollment mark or the
viewer's stored progress is not known yet. A flusher (`progress_flusher`, in a worker process
of its own) writes the samples behind, in batches. Reads join the Valkey copy, which holds the
newest sample whether or not it was flushed, with the Postgres row, which a state server that
lost its last writes may be behind.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import redis.asyncio as redis
from google.protobuf.duration_pb2 import Duration
from redis.exceptions import RedisError
from sqlalchemy import Row

from elearn.course.v1 import course_service_pb2 as pb
from mesh import tracing
from mesh.context import Caller, current_caller
from mesh.db import Database
from mesh.errors import (
    FailedPrecondition,
    FieldErrors,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from mesh.pagination import decode_token, encode_token
from svc_course import progress_repository as repo
from svc_course.progress_flusher import now_ms
from svc_course.progress_state import EnrollmentUnknown, NotSeeded, ProgressState, Seed, Stored
from svc_course.settings import CourseSettings

T = TypeVar("T")
MAX_LIST_PAGE = 200
DEFAULT_LIST_PAGE = 100
# Beyond this many videos the in-process cache starts over rather than grow without bound.
VIDEO_CACHE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class VideoMeta:
    course_id: str
    duration_ms: int
    expires: float


class Progress:
    def __init__(self, *, db: Database, state: redis.Redis, settings: CourseSettings) -> None:
        self._db = db
        self._state = ProgressState(state)
        self._settings = settings
        self._videos: dict[str, VideoMeta] = {}

    # -- hooks for the catalog and enrollment write paths --------------------------------

    async def forget_enrollment(self, user_id: str, course_id: str) -> None:
        """An unenroll: the viewer's next sample re-checks Postgres instead of the mark."""
        await _valkey(self._state.forget_enrollment(user_id, course_id))

    def forget_video(self, video_id: str) -> None:
        """A video's duration changed: this process re-reads it on the next sample."""
        self._videos.pop(video_id, None)

    # -- RPCs ------------------------------------------------------------------------------

    async def update(
        self, request: pb.UpdateVideoProgressRequest
    ) -> pb.UpdateVideoProgressResponse:
        caller = _caller()
        video_id = _uuid(request.video_id, "video_id")
        errors = FieldErrors()
        position = _millis(request.position, "position", errors)
        watched = _millis(request.watched, "watched", errors)
        errors.raise_if_any()
        video = await self._video(video_id)
        if video.duration_ms <= 0:
            raise FailedPrecondition("the video's duration is not known yet; try again later")
        errors.check(position <= video.duration_ms, "position", "must not exceed the duration")
        errors.check(watched <= video.duration_ms, "watched", "must not exceed the duration")
        errors.raise_if_any()
        now = now_ms()
        client_time = now
        if request.HasField("client_time"):
            # A player clock ahead of ours would pin `position` to its future samples.
            client_time = max(0, min(request.client_time.ToMilliseconds(), now))
        stored = await self._apply(
            caller.user_id, video_id, video, position, watched, client_time, now
        )
        traceparent = tracing.current_traceparent()
        if traceparent is not None:
            # Sampled: the flush that writes this sample, in the flusher's process, goes on
            # with this trace. Unsampled updates (nearly all) pay nothing for it; a trace
            # that cannot be kept never fails an update already stored.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self._state.remember_trace(caller.user_id, video_id, traceparent)
        return pb.UpdateVideoProgressResponse(
            progress=_message(caller.user_id, video_id, video, stored)
        )

    async def get(self, request: pb.GetVideoProgressRequest) -> pb.GetVideoProgressResponse:
        caller = _caller()
        video_id = _uuid(request.video_id, "video_id")
        user_id = _uuid(request.user_id, "user_id") if request.user_id else caller.user_id
        video = await self._video(video_id)
        if user_id != caller.user_id and not caller.is_admin:
            async with self._db.read() as conn:
                owner = await repo.instructor(conn, uuid.UUID(video.course_id))
            if owner is None or str(owner) != caller.user_id:
                raise PermissionDenied(
                    "only the viewer, the course's instructor or an admin may read this progress"
                )
        newest = (await _valkey(self._state.read_many([(user_id, video_id)])))[0]
        # Postgres too, not only when Valkey has nothing: a state server restarted from its
        # AOF may have lost its last second while the flusher had already committed those
        # samples, and a read must never show less than one before it did.
        async with self._db.read() as conn:
            row = await repo.progress_row(conn, uuid.UUID(user_id), uuid.UUID(video_id))
        stored = _merge(newest, None if row is None else _from_row(row))
        return pb.GetVideoProgressResponse(progress=_message(user_id, video_id, video, stored))

    async def list(self, request: pb.ListVideoProgressRequest) -> pb.ListVideoProgressResponse:
        caller = _caller()
        course_id = _uuid(request.course_id, "course_id")
        if request.page_size < 0:
            raise InvalidArgument(
                "page_size must not be negative", violations=[("page_size", "must be >= 0")]
            )
        size = min(request.page_size or DEFAULT_LIST_PAGE, MAX_LIST_PAGE)
        token = decode_token(request.page_token, 1)
        offset = int(token[0]) if token and isinstance(token[0], int) else 0
        async with self._db.read() as conn:
            rows = await repo.course_progress(conn, uuid.UUID(caller.user_id), uuid.UUID(course_id))
            if not rows and await repo.video_count(conn, uuid.UUID(course_id)) is None:
                raise NotFound(f"course {course_id} does not exist")
        videos = [str(r.video_id) for r in rows]
        fresh = await _valkey(self._state.read_many([(caller.user_id, v) for v in videos]))
        played: list[pb.VideoProgress] = []
        completed = 0
        for row, video_id, newest in zip(rows, videos, fresh, strict=True):
            flushed = None if row.watched_ms is None else _from_row(row)
            stored = _merge(newest, flushed)
            if stored is None:
                continue
            completed += stored.completed_at_ms > 0
            meta = VideoMeta(course_id, row.duration_seconds * 1000, 0.0)
            played.append(_message(caller.user_id, video_id, meta, stored))
        page = played[offset : offset + size]
        more = offset + size < len(played)
        return pb.ListVideoProgressResponse(
            progress=page,
            course_progress_percent=100.0 * completed / len(rows) if rows else 0.0,
            next_page_token=encode_token([offset + size]) if more else "",
        )

    # -- internals -------------------------------------------------------------------------

    async def _video(self, video_id: str) -> VideoMeta:
        now = time.monotonic()
        meta = self._videos.get(video_id)
        if meta is not None and meta.expires > now:
            return meta
        async with self._db.read() as conn:
            row = await repo.video(conn, uuid.UUID(video_id))
        if row is None:
            raise NotFound(f"video {video_id} does not exist")
        if len(self._videos) >= VIDEO_CACHE_LIMIT:
            self._videos.clear()
        meta = VideoMeta(
            str(row.course_id),
            int(row.duration_seconds or 0) * 1000,
            now + self._settings.progress_video_cache_seconds,
        )
        self._videos[video_id] = meta
        return meta

    async def _apply(
        self,
        user_id: str,
        video_id: str,
        video: VideoMeta,
        position: int,
        watched: int,
        client_time: int,
        now: int,
    ) -> Stored:
        enrollment_ttl = 0
        # At most: enrollment unknown, then the course not seeded, then applied.
        for _ in range(3):
            try:
                return await _valkey(
                    self._state.apply(
                        user_id=user_id,
                        video_id=video_id,
                        course_id=video.course_id,
                        duration_ms=video.duration_ms,
                        position_ms=position,
                        watched_ms=watched,
                        client_time_ms=client_time,
                        now_ms=now,
                        enrollment_ttl=enrollment_ttl,
                    )
                )
            except EnrollmentUnknown:
                async with self._db.read() as conn:
                    ok = await repo.enrolled(conn, uuid.UUID(user_id), uuid.UUID(video.course_id))
                if not ok:
                    raise PermissionDenied(
                        "you are not enrolled in this video's course; enroll to save progress"
                    ) from None
                enrollment_ttl = self._settings.progress_enrollment_ttl_seconds
            except NotSeeded:
                async with self._db.read() as conn:
                    rows = await repo.viewer_course_rows(
                        conn, uuid.UUID(user_id), uuid.UUID(video.course_id)
                    )
                seeds = [Seed(str(r.video_id), _from_row(r)) for r in rows]
                await _valkey(
                    self._state.seed(
                        user_id, video.course_id, seeds, self._settings.progress_keep_seconds
                    )
                )
        raise Unavailable("progress store changed during the update; retry")


def _caller() -> Caller:
    caller = current_caller.get()
    if caller is None:
        raise Unauthenticated("sign in to record or read video progress")
    return caller


# The canonical form every client of ours sends: accepted as is, without a parse and a format.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(value: str, field: str) -> str:
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID, got {value!r}", violations=[(field, "not a UUID")]
        ) from None


def _millis(value: Duration, field: str, errors: FieldErrors) -> int:
    ms = value.seconds * 1000 + value.nanos // 1_000_000
    errors.check(ms >= 0 and value.nanos >= 0, field, "must not be negative")
    return ms


async def _valkey(call: Awaitable[T]) -> T:
    try:
        return await call
    except (RedisError, OSError, TimeoutError) as exc:
        raise Unavailable("progress store unavailable; retry shortly") from exc


def _ms(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp() * 1000)


def _from_row(row: Row) -> Stored:
    return Stored(
        position_ms=int(row.position_ms),
        watched_ms=int(row.watched_ms),
        furthest_ms=int(row.furthest_ms),
        client_time_ms=_ms(row.client_time),
        completed_at_ms=_ms(row.completed_at),
        updated_at_ms=_ms(row.updated_at),
    )


def _merge(a: Stored | None, b: Stored | None) -> Stored | None:
    """The join of two copies of one viewer's progress (see progress_state)."""
    if a is None or b is None:
        return a or b
    newest = a if a.client_time_ms >= b.client_time_ms else b
    done = [x for x in (a.completed_at_ms, b.completed_at_ms) if x]
    return Stored(
        position_ms=newest.position_ms,
        watched_ms=max(a.watched_ms, b.watched_ms),
        furthest_ms=max(a.furthest_ms, b.furthest_ms),
        client_time_ms=newest.client_time_ms,
        completed_at_ms=min(done) if done else 0,
        updated_at_ms=max(a.updated_at_ms, b.updated_at_ms),
    )


_NOTHING = Stored(0, 0, 0, 0, 0, 0)


def _set_ms(field: Duration, ms: int) -> None:
    field.seconds = ms // 1000
    field.nanos = (ms % 1000) * 1_000_000


def _message(user_id: str, video_id: str, video: VideoMeta, s: Stored | None) -> pb.VideoProgress:
    message = pb.VideoProgress(user_id=user_id, video_id=video_id, course_id=video.course_id)
    s = s or _NOTHING
    # Set in place: a Duration built and copied in per field was a visible share of the call.
    _set_ms(message.duration, video.duration_ms)
    _set_ms(message.position, s.position_ms)
    _set_ms(message.watched, s.watched_ms)
    _set_ms(message.furthest, s.furthest_ms)
    message.completed = s.completed_at_ms > 0
    if s.client_time_ms:
        message.update_time.FromMilliseconds(s.client_time_ms)
    return message
