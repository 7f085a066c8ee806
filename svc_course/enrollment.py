"""Enrollment: enroll (idempotent, capacity exact under concurrency), unenroll, lists, and
CheckEnrollment — the platform's hot internal call, answered from cache.

Capacity: the seat is taken by one conditional UPDATE of the course row in the same
transaction as the enrollment row (`repo.take_seat`); Postgres re-evaluates its condition after
each concurrent writer commits, so N seats give exactly N enrollments without a lock held
across round trips, and a full course fails fast with FAILED_PRECONDITION.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import NoReturn

import psycopg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.course.v1 import course_service_pb2 as pb
from elearn.events.v1 import course_events_pb2 as events
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import FailedPrecondition, NotFound, PermissionDenied
from mesh.outbox import Outbox, new_event_id
from svc_course import messages
from svc_course import repository as repo
from svc_course.lookups import Lookups, can_manage
from svc_course.paging import split_page, time_after, time_token


class _AlreadyHolding(Exception):
    """A concurrent Enroll of the same student won: roll back and report theirs."""


class Enrollments:
    def __init__(
        self,
        db: Database,
        lookups: Lookups,
        outbox: Outbox,
        on_unenroll: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._lookups = lookups
        self._outbox = outbox
        # (user id, course id) -> drop what other areas trust about the enrollment (progress
        # keeps an "enrolled" mark in the state Valkey so its hot path needs no query).
        self._on_unenroll = on_unenroll

    async def enroll(
        self, caller: Caller, course_id: uuid.UUID, key: str | None
    ) -> tuple[pb.Enrollment, bool]:
        """The enrollment and whether this call created (or reactivated) it."""
        user_id = uuid.UUID(caller.user_id)
        async with self._db.read() as conn:
            existing = await repo.enrollment_of(conn, user_id, course_id)
            keyed = await repo.enrollment_by_key(conn, user_id, key) if key else None
        if keyed is not None and keyed.course_id != course_id:
            raise _key_reused()
        if existing is not None and existing.state in messages.HOLDING:
            return messages.enrollment(existing), False
        try:
            async with self._db.transaction() as conn:
                row = await repo.start_enrollment(conn, user_id, course_id, key)
                if row is None:
                    raise _AlreadyHolding
                seat = await repo.take_seat(conn, course_id)
                if seat is None:
                    await self._refuse_seat(conn, caller, course_id)
                enrollment = messages.enrollment(row)
                event_id, occurred = new_event_id()
                event = events.Enrolled(
                    event_id=event_id,
                    occur_time=occurred,
                    enrollment_id=enrollment.enrollment_id,
                    course_id=enrollment.course_id,
                    instructor_id=str(seat.instructor_id),
                    user_id=enrollment.user_id,
                    reactivated=not row.inserted,
                )
                await self._outbox.add(
                    conn, "elearn.course.enrolled", event_id, event,
                    aggregate_id=f"enrollment:{enrollment.enrollment_id}",
                )  # fmt: skip
        except _AlreadyHolding:
            async with self._db.read() as conn:
                existing = await repo.enrollment_of(conn, user_id, course_id)
            assert existing is not None
            return messages.enrollment(existing), False
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
            if constraint == "uq_enrollments_user_key":
                raise _key_reused() from None
            if isinstance(exc.orig, psycopg.errors.ForeignKeyViolation):
                raise NotFound(f"course {course_id} not found") from None
            raise
        self._outbox.notify()
        await self._forget(enrollment.course_id, enrollment.user_id)
        if self._on_unenroll is not None:
            await self._on_unenroll(enrollment.user_id, enrollment.course_id)
        return enrollment, True

    @staticmethod
    async def _refuse_seat(conn: AsyncConnection, caller: Caller, course_id: uuid.UUID) -> NoReturn:
        """Say why no seat was taken (raising rolls the enrollment back)."""
        row = await repo.course_by_id(conn, course_id)
        if row is None or (row.state == "draft" and not can_manage(caller, messages.course(row))):
            raise NotFound(f"course {course_id} not found")
        if row.state == "draft":
            raise FailedPrecondition("the course is a draft; publish it before enrolling")
        if row.state == "archived":
            raise FailedPrecondition("the course is archived and closed to new enrollments")
        raise FailedPrecondition(
            f"the course is full: all {row.capacity} seats are taken; "
            "a seat frees up when a student unenrolls"
        )

    async def unenroll(self, caller: Caller, course_id: uuid.UUID) -> pb.Enrollment:
        user_id = uuid.UUID(caller.user_id)
        async with self._db.transaction() as conn:
            row = await repo.end_enrollment(conn, user_id, course_id)
            if row is None:
                existing = await repo.enrollment_of(conn, user_id, course_id)
                if existing is None:
                    raise NotFound(f"you are not enrolled in course {course_id}")
                return messages.enrollment(existing)
            course = await repo.free_seat(conn, course_id)
            assert course is not None
            enrollment = messages.enrollment(row)
            event_id, occurred = new_event_id()
            event = events.Unenrolled(
                event_id=event_id,
                occur_time=occurred,
                enrollment_id=enrollment.enrollment_id,
                course_id=enrollment.course_id,
                instructor_id=str(course.instructor_id),
                user_id=enrollment.user_id,
            )
            await self._outbox.add(
                conn, "elearn.course.unenrolled", event_id, event,
                aggregate_id=f"enrollment:{enrollment.enrollment_id}",
            )  # fmt: skip
        self._outbox.notify()
        await self._forget(enrollment.course_id, enrollment.user_id)
        if self._on_unenroll is not None:
            await self._on_unenroll(enrollment.user_id, enrollment.course_id)
        return enrollment

    async def _forget(self, course_id: str, user_id: str) -> None:
        await self._lookups.forget_enrollments([(course_id, user_id)])
        # The course's enrollment_count changed.
        await self._lookups.forget_course(course_id)

    async def list_mine(
        self, caller: Caller, states: tuple[str, ...], size: int, token: str
    ) -> tuple[list[pb.Enrollment], str]:
        async with self._db.read() as conn:
            rows = await repo.list_enrollments(
                conn,
                user_id=uuid.UUID(caller.user_id),
                states=states,
                limit=size + 1,
                after=time_after(token),
            )
        return _page(rows, size)

    async def list_course(
        self, caller: Caller, course_id: uuid.UUID, states: tuple[str, ...], size: int, token: str
    ) -> tuple[list[pb.Enrollment], str]:
        await self._lookups.managed_course(course_id, caller, "list its enrollments")
        async with self._db.read() as conn:
            rows = await repo.list_enrollments(
                conn, course_id=course_id, states=states, limit=size + 1, after=time_after(token)
            )
        return _page(rows, size)

    async def check(
        self, caller: Caller, course_id: uuid.UUID, user_id: uuid.UUID
    ) -> pb.CheckEnrollmentResponse:
        """Two cache reads on the hot path: the course (1 h) and the status (5 min)."""
        course = await self._lookups.course(course_id)
        manager = course is not None and can_manage(caller, course)
        if course is None or (course.state == pb.COURSE_STATE_DRAFT and not manager):
            raise NotFound(f"course {course_id} not found")
        if caller.user_id != str(user_id) and not manager:
            raise PermissionDenied(
                "a student may check only their own enrollment; "
                "the course's instructor and admins may check anyone"
            )
        enrollment = await self._lookups.enrollment(course.course_id, str(user_id))
        return pb.CheckEnrollmentResponse(
            enrolled=enrollment is not None and enrollment.state != pb.ENROLLMENT_STATE_UNENROLLED,
            enrollment=enrollment,
            instructor_id=course.instructor_id,
            course_state=course.state,
        )


def _key_reused() -> FailedPrecondition:
    return FailedPrecondition(
        "idempotency_key was already used to enroll in another course",
        violations=[("idempotency_key", "already used for another course")],
    )


def _page(rows: list, size: int) -> tuple[list[pb.Enrollment], str]:  # type: ignore[type-arg]
    page, more = split_page(rows, size)
    token = time_token(page[-1].enrolled_at, page[-1].id) if more else ""
    return [messages.enrollment(r) for r in page], token
