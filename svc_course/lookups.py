"""Cached reads every area shares, and the visibility rule built on them (M1).

Cache-aside in the cache Valkey with the review's TTLs: a course for an hour, a video for a
day, an enrollment status for five minutes. Writers invalidate right after their commit; the
event consumer (`cache_events`) invalidates again when the event arrives, which closes the
window where a concurrent miss re-caches a value read just before the commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.course.v1 import course_service_pb2 as pb
from mesh.batching import Coalescer
from mesh.cache import Cache, CacheKind
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import NotFound, PermissionDenied
from svc_course import messages
from svc_course import repository as repo
from svc_course.settings import CourseSettings

log = logging.getLogger("svc_course.cache")

# Cached for "never enrolled", so a student who is not enrolled costs no query either.
_NOT_ENROLLED = b""


def enrollment_ident(course_id: str, user_id: str) -> str:
    return f"{course_id}:{user_id}"


def can_manage(caller: Caller | None, course: pb.Course) -> bool:
    return caller is not None and (caller.is_admin or caller.user_id == course.instructor_id)


async def lock_managed_course(
    conn: AsyncConnection, caller: Caller, course_id: uuid.UUID, action: str
) -> Row:
    """The course row, locked for this transaction, if the caller may manage it."""
    row = await repo.course_for_update(conn, course_id)
    if row is None:
        raise NotFound(f"course {course_id} not found")
    if not (caller.is_admin or caller.user_id == str(row.instructor_id)):
        raise PermissionDenied(f"only the course's instructor or an admin may {action}")
    return row


class Lookups:
    def __init__(self, db: Database, cache: Cache, settings: CourseSettings) -> None:
        self._db = db
        self._cache = cache
        self.courses = CacheKind(
            "course", settings.course_cache_ttl_seconds, settings.course_cache_local_seconds
        )
        self.videos = CacheKind("video", settings.video_cache_ttl_seconds)
        self.enrollments = CacheKind(
            "enrollment",
            settings.enrollment_cache_ttl_seconds,
            settings.enrollment_cache_local_seconds,
        )
        # Search pages are cached under a catalog generation: any change to what search can
        # return drops the generation, so the next search misses and a published course is
        # found at once; the TTL only bounds how long enrollment counts in results may lag.
        self.search_pages = CacheKind("search", settings.search_cache_ttl_seconds)
        self._generation = CacheKind("search-generation", 24 * 3600)
        # Enrollment misses of different students share one read: an exam's cold start asked
        # for 512 students in half a second, one SQLAlchemy read each (1.3 s of this process's
        # CPU in the first 2 s, while the quiz service waited on the answers).
        self._enrollment_reads: Coalescer[tuple[uuid.UUID, uuid.UUID], bytes] = Coalescer(
            self._read_enrollments, max_batch=500, name="enrollment-reads"
        )

    async def course(self, course_id: uuid.UUID) -> pb.Course | None:
        async def load() -> bytes | None:
            async with self._db.read() as conn:
                row = await repo.course_by_id(conn, course_id)
            return None if row is None else messages.course(row).SerializeToString()

        data = await self._cache.get_or_load(self.courses, str(course_id), load)
        return None if data is None else pb.Course.FromString(data)

    async def video(self, video_id: uuid.UUID) -> pb.Video | None:
        async def load() -> bytes | None:
            async with self._db.read() as conn:
                row = await repo.video_by_id(conn, video_id)
            return None if row is None else messages.video(row).SerializeToString()

        data = await self._cache.get_or_load(self.videos, str(video_id), load)
        return None if data is None else pb.Video.FromString(data)

    async def enrollment(self, course_id: str, user_id: str) -> pb.Enrollment | None:
        async def load() -> bytes:
            return await self._enrollment_reads.submit((uuid.UUID(course_id), uuid.UUID(user_id)))

        ident = enrollment_ident(course_id, user_id)
        data = await self._cache.get_or_load(self.enrollments, ident, load)
        return pb.Enrollment.FromString(data) if data else None

    async def _read_enrollments(self, pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> list[bytes]:
        async with self._db.read() as conn:
            rows = await repo.enrollments_of(conn, pairs)
        found = {(r.course_id, r.user_id): r for r in rows}
        return [
            messages.enrollment(row).SerializeToString()
            if (row := found.get(pair)) is not None
            else _NOT_ENROLLED
            for pair in pairs
        ]

    async def enrolled(self, course_id: str, user_id: str) -> bool:
        found = await self.enrollment(course_id, user_id)
        return found is not None and found.state in (
            pb.ENROLLMENT_STATE_ACTIVE,
            pb.ENROLLMENT_STATE_COMPLETED,
        )

    async def visible_course(self, course_id: uuid.UUID, caller: Caller | None) -> pb.Course:
        """The course if the caller may see it: published to all; archived to its enrolled
        students; every state to its instructor and admins. Otherwise NOT_FOUND, so drafts do
        not leak their existence."""
        found = await self.course(course_id)
        if found is not None:
            if found.state == pb.COURSE_STATE_PUBLISHED or can_manage(caller, found):
                return found
            if (
                found.state == pb.COURSE_STATE_ARCHIVED
                and caller is not None
                and await self.enrolled(found.course_id, caller.user_id)
            ):
                return found
        raise NotFound(f"course {course_id} not found")

    async def managed_course(self, course_id: uuid.UUID, caller: Caller, action: str) -> pb.Course:
        """The course if the caller is its instructor or an admin (PERMISSION_DENIED if not)."""
        found = await self.course(course_id)
        if found is None:
            raise NotFound(f"course {course_id} not found")
        if not can_manage(caller, found):
            raise PermissionDenied(f"only the course's instructor or an admin may {action}")
        return found

    async def search_generation(self) -> str:
        """The current catalog generation; a fresh random one after every change, so entries
        of an earlier generation (even one whose key the cache evicted) are never read."""

        async def fresh() -> bytes:
            return uuid.uuid4().hex.encode()

        data = await self._cache.get_or_load(self._generation, "catalog", fresh)
        assert data is not None
        return data.decode()

    async def cached_search(self, ident: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        data = await self._cache.get_or_load(self.search_pages, ident, load)
        assert data is not None
        return data

    async def forget_search(self) -> None:
        await self._forget(self._generation, "catalog")

    async def forget_course(self, course_id: str) -> None:
        await self._forget(self.courses, course_id)

    async def forget_videos(self, video_ids: list[str]) -> None:
        await self._forget(self.videos, *video_ids)

    async def forget_enrollments(self, pairs: list[tuple[str, str]]) -> None:
        """Drop cached statuses for (course_id, user_id) pairs."""
        await self._forget(self.enrollments, *(enrollment_ident(c, u) for c, u in pairs))

    async def forget_enrollment_and_course(self, course_id: str, user_id: str) -> None:
        """An enrollment changed: its status and its course's enrollment_count."""
        await self._forget_entries(
            [(self.enrollments, enrollment_ident(course_id, user_id)), (self.courses, course_id)]
        )

    async def _forget(self, kind: CacheKind, *idents: str) -> None:
        await self._forget_entries([(kind, i) for i in idents])

    async def _forget_entries(self, entries: list[tuple[CacheKind, str]]) -> None:
        # Runs after the commit: the write has happened, so a cache outage must not turn it
        # into an error. The event consumer invalidates again, and the TTL bounds the rest.
        try:
            await self._cache.invalidate_entries(entries)
        except (RedisError, TimeoutError):
            log.warning("cache invalidation failed", extra={"kinds": len(entries)})
