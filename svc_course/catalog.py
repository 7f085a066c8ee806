"""Courses: create (idempotent), update by mask, publish, archive, read and list."""

from __future__ import annotations

import uuid
from typing import Any

from elearn.course.v1 import course_service_pb2 as pb
from elearn.events.v1 import course_events_pb2 as events
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mesh.outbox import Outbox, new_event_id
from svc_course import messages
from svc_course import repository as repo
from svc_course.lookups import Lookups, lock_managed_course
from svc_course.paging import split_page, time_after, time_token

_STATE_EVENTS = {
    "published": ("elearn.course.course_published", events.CoursePublished),
    "archived": ("elearn.course.course_archived", events.CourseArchived),
}


class Catalog:
    def __init__(self, db: Database, lookups: Lookups, outbox: Outbox) -> None:
        self._db = db
        self._lookups = lookups
        self._outbox = outbox

    async def create(self, caller: Caller, values: dict[str, Any], key: str) -> pb.Course:
        instructor = uuid.UUID(caller.user_id)
        async with self._db.transaction() as conn:
            row = await repo.insert_course(conn, instructor, key, values)
            if row is None:
                existing = await repo.course_by_key(conn, instructor, key)
                assert existing is not None, "the conflicting insert has committed"
                if existing.title != values["title"]:
                    raise FailedPrecondition(
                        "idempotency_key was already used for a different course"
                    )
                return messages.course(existing)
            course = messages.course(row)
            event_id, occurred = new_event_id()
            event = events.CourseCreated(
                event_id=event_id, occur_time=occurred, course=messages.course_info(course)
            )
            await self._outbox.add(
                conn, "elearn.course.course_created", event_id, event,
                aggregate_id=f"course:{course.course_id}",
            )  # fmt: skip
        self._outbox.notify()
        return course

    async def get(self, caller: Caller | None, course_id: uuid.UUID) -> pb.Course:
        return await self._lookups.visible_course(course_id, caller)

    async def update(
        self, caller: Caller, course_id: uuid.UUID, values: dict[str, Any]
    ) -> pb.Course:
        async with self._db.transaction() as conn:
            row = await lock_managed_course(conn, caller, course_id, "change it")
            capacity = values.get("capacity")
            if capacity and capacity < row.enrollment_count:
                raise FailedPrecondition(
                    f"capacity {capacity} is below the {row.enrollment_count} students enrolled"
                )
            updated = await repo.update_course(conn, course_id, values)
            assert updated is not None
            course = messages.course(updated)
            event_id, occurred = new_event_id()
            event = events.CourseUpdated(
                event_id=event_id,
                occur_time=occurred,
                course=messages.course_info(course),
                changed_fields=sorted(values),
            )
            await self._outbox.add(
                conn, "elearn.course.course_updated", event_id, event,
                aggregate_id=f"course:{course.course_id}",
            )  # fmt: skip
        self._outbox.notify()
        await self._lookups.forget_course(course.course_id)
        if course.state == pb.COURSE_STATE_PUBLISHED:
            await self._lookups.forget_search()
        return course

    async def set_state(self, caller: Caller, course_id: uuid.UUID, state: str) -> pb.Course:
        """Publish or archive. Repeating the current state changes nothing and emits nothing."""
        action = "publish it" if state == "published" else "archive it"
        async with self._db.transaction() as conn:
            row = await lock_managed_course(conn, caller, course_id, action)
            if row.state == state:
                return messages.course(row)
            if state == "published" and row.state == "archived":
                raise FailedPrecondition("an archived course cannot be published again")
            updated = await repo.set_course_state(conn, course_id, state)
            assert updated is not None
            course = messages.course(updated)
            subject, kind = _STATE_EVENTS[state]
            event_id, occurred = new_event_id()
            event = kind(
                event_id=event_id, occur_time=occurred, course=messages.course_info(course)
            )
            await self._outbox.add(
                conn, subject, event_id, event, aggregate_id=f"course:{course.course_id}"
            )
        self._outbox.notify()
        await self._lookups.forget_course(course.course_id)
        await self._lookups.forget_search()
        return course

    async def list_by_instructor(
        self,
        caller: Caller | None,
        instructor_id: uuid.UUID | None,
        state: str | None,
        size: int,
        token: str,
    ) -> tuple[list[pb.Course], str]:
        if instructor_id is None:
            if caller is None:
                raise InvalidArgument(
                    "instructor_id is required unless signed in",
                    violations=[("instructor_id", "is required")],
                )
            instructor_id = uuid.UUID(caller.user_id)
        owner = caller is not None and (caller.is_admin or caller.user_id == str(instructor_id))
        states: tuple[str, ...] | None = (state,) if state else None
        if not owner:
            if state not in (None, "published"):
                raise PermissionDenied(
                    "only the instructor and admins may list courses that are not published"
                )
            states = ("published",)
        async with self._db.read() as conn:
            rows = await repo.list_instructor_courses(
                conn, instructor_id, states, size + 1, time_after(token)
            )
        page, more = split_page(rows, size)
        next_token = time_token(page[-1].created_at, page[-1].id) if more else ""
        return [messages.course(r) for r in page], next_token
