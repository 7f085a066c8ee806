"""Video metadata per course: create (idempotent), update by mask, read and list in course
order. Every write locks the course row first, so positions stay 1..n and the course's
video_count and total duration stay exact however many instructors' tabs write at once."""

from __future__ import annotations

import uuid
from typing import Any

from elearn.course.v1 import course_service_pb2 as pb
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import FailedPrecondition, NotFound
from svc_course import messages
from svc_course import repository as repo
from svc_course.lookups import Lookups, lock_managed_course
from svc_course.paging import encode_token, int_after, split_page


class Videos:
    def __init__(self, db: Database, lookups: Lookups) -> None:
        self._db = db
        self._lookups = lookups

    async def create(
        self, caller: Caller, course_id: uuid.UUID, values: dict[str, Any], key: str
    ) -> pb.Video:
        values = dict(values)
        async with self._db.transaction() as conn:
            course = await lock_managed_course(conn, caller, course_id, "add videos to it")
            existing = await repo.video_by_key(conn, course_id, key)
            if existing is not None:
                if existing.title != values["title"]:
                    raise FailedPrecondition(
                        "idempotency_key was already used for a different video"
                    )
                return messages.video(existing)
            position = values.pop("position", 0)
            moved: list[uuid.UUID] = []
            if position == 0 or position > course.video_count:
                position = course.video_count + 1
            else:
                moved = await repo.shift_positions(conn, course_id, position, None, +1)
            row = await repo.insert_video(conn, course_id, key, {**values, "position": position})
            await repo.add_video_totals(conn, course_id, 1, row.duration_seconds)
        await self._forget(course_id, moved)
        return messages.video(row)

    async def update(self, caller: Caller, video_id: uuid.UUID, values: dict[str, Any]) -> pb.Video:
        values = dict(values)
        async with self._db.read() as conn:
            found = await repo.video_by_id(conn, video_id)
        if found is None:
            raise NotFound(f"video {video_id} not found")
        course_id = found.course_id
        moved: list[uuid.UUID] = []
        async with self._db.transaction() as conn:
            course = await lock_managed_course(conn, caller, course_id, "change its videos")
            current = await repo.video_for_update(conn, video_id)
            assert current is not None, "videos are never deleted"
            if "position" in values:
                new, old = min(values["position"], course.video_count), current.position
                if new < old:
                    moved = await repo.shift_positions(conn, course_id, new, old - 1, +1)
                elif new > old:
                    moved = await repo.shift_positions(conn, course_id, old + 1, new, -1)
                values["position"] = new
            if "duration_seconds" in values:
                delta = values["duration_seconds"] - current.duration_seconds
                if delta:
                    await repo.add_video_totals(conn, course_id, 0, delta)
            row = await repo.update_video(conn, video_id, values)
            assert row is not None
        await self._forget(course_id, [*moved, video_id])
        return messages.video(row)

    async def get(self, caller: Caller | None, video_id: uuid.UUID) -> pb.Video:
        video = await self._lookups.video(video_id)
        if video is None:
            raise NotFound(f"video {video_id} not found")
        try:
            await self._lookups.visible_course(uuid.UUID(video.course_id), caller)
        except NotFound:
            raise NotFound(f"video {video_id} not found") from None
        return video

    async def page(
        self, caller: Caller | None, course_id: uuid.UUID, size: int, token: str
    ) -> tuple[list[pb.Video], str]:
        await self._lookups.visible_course(course_id, caller)
        async with self._db.read() as conn:
            rows = await repo.list_videos(conn, course_id, size + 1, int_after(token))
        page, more = split_page(rows, size)
        next_token = encode_token([page[-1].position, str(page[-1].id)]) if more else ""
        return [messages.video(r) for r in page], next_token

    async def _forget(self, course_id: uuid.UUID, videos: list[uuid.UUID]) -> None:
        await self._lookups.forget_course(str(course_id))
        if videos:
            await self._lookups.forget_videos([str(v) for v in videos])
