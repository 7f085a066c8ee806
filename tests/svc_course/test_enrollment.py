"""Enrollment against the real service: idempotency, exact capacity under 500 concurrent
students, unenroll, lists, CheckEnrollment served from cache yet never stale after a change,
and the events going out through the outbox."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import nats
import psycopg
from google.protobuf.field_mask_pb2 import FieldMask

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.events.v1 import course_events_pb2 as events
from tests.grpc_assert import fails_with
from tests.people import People, Person
from tests.svc_course.conftest import new_course


async def enroll(
    stub: CourseServiceStub, who: Person, course_id: str, key: str = ""
) -> pb.EnrollResponse:
    request = pb.EnrollRequest(course_id=course_id, idempotency_key=key)
    reply: pb.EnrollResponse = await stub.Enroll(request, metadata=who.auth)
    return reply


async def check(
    stub: CourseServiceStub, who: Person, course_id: str, user_id: str
) -> pb.CheckEnrollmentResponse:
    request = pb.CheckEnrollmentRequest(course_id=course_id, user_id=user_id)
    reply: pb.CheckEnrollmentResponse = await stub.CheckEnrollment(request, metadata=who.auth)
    return reply


async def test_enrolling_twice_returns_the_same_enrollment(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    course = await new_course(courses, people.instructor(), publish=True)
    student = people.student()
    first = await enroll(courses, student, course.course_id, key="k1")
    assert first.created and first.enrollment.state == pb.ENROLLMENT_STATE_ACTIVE
    same_key = await enroll(courses, student, course.course_id, key="k1")
    no_key = await enroll(courses, student, course.course_id)
    for again in (same_key, no_key):
        assert not again.created
        assert again.enrollment.enrollment_id == first.enrollment.enrollment_id
    racing = await asyncio.gather(*(enroll(courses, student, course.course_id) for _ in range(10)))
    assert not any(r.created for r in racing)
    row = sql.execute(
        "SELECT enrollment_count FROM courses.courses WHERE id = %s", (course.course_id,)
    ).fetchone()
    assert row == (1,)


async def test_concurrent_first_enrollments_of_one_student_take_one_seat(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    course = await new_course(courses, people.instructor(), publish=True)
    student = people.student()
    replies = await asyncio.gather(*(enroll(courses, student, course.course_id) for _ in range(8)))
    assert sum(r.created for r in replies) == 1
    assert len({r.enrollment.enrollment_id for r in replies}) == 1
    row = sql.execute(
        "SELECT enrollment_count FROM courses.courses WHERE id = %s", (course.course_id,)
    ).fetchone()
    assert row == (1,)


async def test_a_key_used_for_another_course_is_refused(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    one = await new_course(courses, teacher, publish=True)
    two = await new_course(courses, teacher, publish=True)
    student = people.student()
    await enroll(courses, student, one.course_id, key="same-key")
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        enroll(courses, student, two.course_id, key="same-key"),
        "idempotency_key",
    )


async def test_500_concurrent_students_on_capacity_100_give_exactly_100(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    course = await new_course(courses, people.instructor(), publish=True, capacity=100)
    students = [people.student() for _ in range(500)]
    outcomes = await asyncio.gather(
        *(enroll(courses, s, course.course_id) for s in students), return_exceptions=True
    )
    created = [o for o in outcomes if isinstance(o, pb.EnrollResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(created) == 100 and all(o.created for o in created)
    assert len(refused) == 400, {type(o).__name__ for o in outcomes}
    assert {e.code() for e in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert all("full" in (e.details() or "") for e in refused)
    row = sql.execute(
        "SELECT enrollment_count, (SELECT count(*) FROM courses.enrollments e"
        " WHERE e.course_id = c.id AND e.state = 'active') FROM courses.courses c WHERE id = %s",
        (course.course_id,),
    ).fetchone()
    assert row == (100, 100)


async def test_unenroll_frees_the_seat_and_reenrolling_keeps_the_id(
    courses: CourseServiceStub, people: People
) -> None:
    course = await new_course(courses, people.instructor(), publish=True, capacity=1)
    first, second = people.student(), people.student()
    taken = await enroll(courses, first, course.course_id)
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION, enroll(courses, second, course.course_id), "full"
    )
    request = pb.UnenrollRequest(course_id=course.course_id)
    left = await courses.Unenroll(request, metadata=first.auth)
    assert left.enrollment.state == pb.ENROLLMENT_STATE_UNENROLLED
    assert left.enrollment.HasField("unenroll_time")
    again = await courses.Unenroll(request, metadata=first.auth)
    assert again.enrollment.unenroll_time == left.enrollment.unenroll_time
    assert (await enroll(courses, second, course.course_id)).created
    await courses.Unenroll(request, metadata=second.auth)
    back = await enroll(courses, first, course.course_id)
    assert back.created and back.enrollment.enrollment_id == taken.enrollment.enrollment_id
    assert back.enrollment.state == pb.ENROLLMENT_STATE_ACTIVE
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.Unenroll(request, metadata=people.student().auth),
        "not enrolled",
    )


async def test_enrolling_in_drafts_archived_or_unknown_courses_is_refused(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    draft = await new_course(courses, teacher)
    archived = await new_course(courses, teacher, publish=True)
    await courses.ArchiveCourse(
        pb.ArchiveCourseRequest(course_id=archived.course_id), metadata=teacher.auth
    )
    student = people.student()
    await fails_with(grpc.StatusCode.NOT_FOUND, enroll(courses, student, draft.course_id))
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        enroll(courses, student, archived.course_id),
        "archived",
    )
    await fails_with(grpc.StatusCode.NOT_FOUND, enroll(courses, student, str(uuid.uuid4())))
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT, enroll(courses, student, "nope"), "course_id"
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        enroll(courses, student, archived.course_id, key="k" * 129),
        "idempotency_key",
    )


async def test_archived_course_stays_visible_to_its_students(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True)
    student = people.student()
    await enroll(courses, student, course.course_id)
    await courses.ArchiveCourse(
        pb.ArchiveCourseRequest(course_id=course.course_id), metadata=teacher.auth
    )
    request = pb.GetCourseRequest(course_id=course.course_id)
    seen = await courses.GetCourse(request, metadata=student.auth)
    assert seen.course.state == pb.COURSE_STATE_ARCHIVED
    await fails_with(
        grpc.StatusCode.NOT_FOUND, courses.GetCourse(request, metadata=people.student().auth)
    )


async def test_lowering_capacity_below_enrollments_is_refused(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True, capacity=5)
    for _ in range(3):
        await enroll(courses, people.student(), course.course_id)
    change = pb.UpdateCourseRequest(
        course=pb.Course(course_id=course.course_id, capacity=2),
        update_mask=FieldMask(paths=["capacity"]),
    )
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        courses.UpdateCourse(change, metadata=teacher.auth),
        "below the 3 students",
    )
    change.course.capacity = 3
    assert (await courses.UpdateCourse(change, metadata=teacher.auth)).course.capacity == 3


async def test_lists_of_enrollments_page_newest_first(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    made = [await new_course(courses, teacher, publish=True) for _ in range(3)]
    student = people.student()
    for course in made:
        await enroll(courses, student, course.course_id)
    await courses.Unenroll(pb.UnenrollRequest(course_id=made[0].course_id), metadata=student.auth)
    first = await courses.ListMyEnrollments(
        pb.ListMyEnrollmentsRequest(page_size=1), metadata=student.auth
    )
    rest = await courses.ListMyEnrollments(
        pb.ListMyEnrollmentsRequest(page_size=1, page_token=first.next_page_token),
        metadata=student.auth,
    )
    listed = [e.course_id for e in (*first.enrollments, *rest.enrollments)]
    assert listed == [made[2].course_id, made[1].course_id]
    assert not rest.next_page_token
    gone = await courses.ListMyEnrollments(
        pb.ListMyEnrollmentsRequest(state=pb.ENROLLMENT_STATE_UNENROLLED), metadata=student.auth
    )
    assert [e.course_id for e in gone.enrollments] == [made[0].course_id]
    others = [people.student() for _ in range(3)]
    for other in others:
        await enroll(courses, other, made[1].course_id)
    roster = await courses.ListCourseEnrollments(
        pb.ListCourseEnrollmentsRequest(course_id=made[1].course_id), metadata=teacher.auth
    )
    expected = [o.user_id for o in reversed(others)] + [student.user_id]
    assert [e.user_id for e in roster.enrollments] == expected


async def test_check_enrollment_answers_and_sees_unenroll_at_once(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True)
    student = people.student()
    before = await check(courses, student, course.course_id, student.user_id)
    assert not before.enrolled and not before.HasField("enrollment")
    assert before.instructor_id == teacher.user_id
    assert before.course_state == pb.COURSE_STATE_PUBLISHED
    await enroll(courses, student, course.course_id)
    for _ in range(3):  # the first fills the cache; the next are hits
        assert (await check(courses, student, course.course_id, student.user_id)).enrolled
    await courses.Unenroll(pb.UnenrollRequest(course_id=course.course_id), metadata=student.auth)
    after = await check(courses, student, course.course_id, student.user_id)
    assert not after.enrolled
    assert after.enrollment.state == pb.ENROLLMENT_STATE_UNENROLLED
    by_teacher = await check(courses, teacher, course.course_id, student.user_id)
    assert not by_teacher.enrolled


async def test_check_enrollment_stays_right_while_checks_race_the_unenroll(
    courses: CourseServiceStub, people: People
) -> None:
    course = await new_course(courses, people.instructor(), publish=True)
    student = people.student()
    await enroll(courses, student, course.course_id)
    unenroll = courses.Unenroll(
        pb.UnenrollRequest(course_id=course.course_id), metadata=student.auth
    )
    checks = [check(courses, student, course.course_id, student.user_id) for _ in range(20)]
    await asyncio.gather(unenroll, *checks)
    # A check that read before the commit may have re-cached "enrolled"; the event-driven
    # invalidation must clear it well within a second.
    deadline = time.monotonic() + 1.0
    while (await check(courses, student, course.course_id, student.user_id)).enrolled:
        assert time.monotonic() < deadline, "a stale 'enrolled' outlived the unenroll by 1 s"
        await asyncio.sleep(0.02)


async def test_check_enrollment_bad_input(courses: CourseServiceStub, people: People) -> None:
    student = people.student()
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        check(courses, student, "x", student.user_id),
        "course_id must be a UUID",
    )
    await fails_with(
        grpc.StatusCode.NOT_FOUND, check(courses, student, str(uuid.uuid4()), student.user_id)
    )


async def test_enrollment_events_reach_jetstream(
    stack: Endpoints, courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True)
    student = people.student()
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("elearn.course.*", ordered_consumer=True)
        await enroll(courses, student, course.course_id)
        await courses.Unenroll(
            pb.UnenrollRequest(course_id=course.course_id), metadata=student.auth
        )
        wanted = {"elearn.course.enrolled", "elearn.course.unenrolled"}
        seen: dict[str, bytes] = {}
        deadline = time.monotonic() + 15
        while wanted - set(seen) and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            except (TimeoutError, nats.errors.TimeoutError):
                break
            if msg.subject in wanted:
                kind = events.Enrolled if msg.subject.endswith(".enrolled") else events.Unenrolled
                if kind.FromString(msg.data).user_id == student.user_id:
                    seen[msg.subject] = msg.data
        assert set(seen) == wanted
        enrolled = events.Enrolled.FromString(seen["elearn.course.enrolled"])
        assert enrolled.course_id == course.course_id
        assert enrolled.instructor_id == teacher.user_id and not enrolled.reactivated
    finally:
        await nc.close()
