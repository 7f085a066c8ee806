"""Every refusal of the course service's authorization rules, over gRPC and, for the main ones,
through the edge as JSON: only a course's instructor (or an admin) changes it, adds or edits
its videos and lists its enrollments; a student checks only their own enrollment."""

from __future__ import annotations

import uuid

import grpc
import httpx
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from tests.grpc_assert import fails_with
from tests.people import People, Person
from tests.svc_course.conftest import new_course, new_video

DENIED = grpc.StatusCode.PERMISSION_DENIED


def update(course_id: str) -> pb.UpdateCourseRequest:
    return pb.UpdateCourseRequest(
        course=pb.Course(course_id=course_id, title="Hijacked"),
        update_mask=FieldMask(paths=["title"]),
    )


def add_video(course_id: str) -> pb.CreateVideoRequest:
    return pb.CreateVideoRequest(
        course_id=course_id, video=pb.Video(title="Intruder"), idempotency_key=uuid.uuid4().hex
    )


async def test_students_cannot_create_courses(courses: CourseServiceStub, people: People) -> None:
    request = pb.CreateCourseRequest(course=pb.Course(title="x"), idempotency_key="k")
    await fails_with(
        DENIED, courses.CreateCourse(request, metadata=people.student().auth), "instructor"
    )
    await fails_with(grpc.StatusCode.UNAUTHENTICATED, courses.CreateCourse(request))


async def test_another_instructor_cannot_change_publish_or_archive(
    courses: CourseServiceStub, people: People
) -> None:
    course = await new_course(courses, people.instructor())
    other = people.instructor()
    await fails_with(DENIED, courses.UpdateCourse(update(course.course_id), metadata=other.auth))
    await fails_with(
        DENIED,
        courses.PublishCourse(
            pb.PublishCourseRequest(course_id=course.course_id), metadata=other.auth
        ),
        "instructor or an admin",
    )
    await fails_with(
        DENIED,
        courses.ArchiveCourse(
            pb.ArchiveCourseRequest(course_id=course.course_id), metadata=other.auth
        ),
    )


async def test_another_instructor_cannot_add_or_edit_videos(
    courses: CourseServiceStub, people: People
) -> None:
    owner, other = people.instructor(), people.instructor()
    course = await new_course(courses, owner)
    video = await new_video(courses, owner, course.course_id)
    await fails_with(DENIED, courses.CreateVideo(add_video(course.course_id), metadata=other.auth))
    await fails_with(
        DENIED,
        courses.UpdateVideo(
            pb.UpdateVideoRequest(
                video=pb.Video(video_id=video.video_id, duration=Duration(seconds=1)),
                update_mask=FieldMask(paths=["duration"]),
            ),
            metadata=other.auth,
        ),
    )
    await fails_with(
        DENIED, courses.CreateVideo(add_video(course.course_id), metadata=people.student().auth)
    )


async def test_only_the_instructor_or_admins_list_a_courses_enrollments(
    courses: CourseServiceStub, people: People
) -> None:
    owner = people.instructor()
    course = await new_course(courses, owner, publish=True)
    request = pb.ListCourseEnrollmentsRequest(course_id=course.course_id)
    await fails_with(
        DENIED, courses.ListCourseEnrollments(request, metadata=people.instructor().auth)
    )
    await fails_with(DENIED, courses.ListCourseEnrollments(request, metadata=people.student().auth))
    await courses.ListCourseEnrollments(request, metadata=owner.auth)
    await courses.ListCourseEnrollments(request, metadata=people.admin().auth)


async def test_a_student_checks_only_their_own_enrollment(
    courses: CourseServiceStub, people: People
) -> None:
    course = await new_course(courses, people.instructor(), publish=True)
    nosy, victim = people.student(), people.student()
    await fails_with(
        DENIED,
        courses.CheckEnrollment(
            pb.CheckEnrollmentRequest(course_id=course.course_id, user_id=victim.user_id),
            metadata=nosy.auth,
        ),
        "only their own",
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        courses.Enroll(pb.EnrollRequest(course_id=course.course_id)),
    )


async def test_admins_may_manage_any_course(courses: CourseServiceStub, people: People) -> None:
    course = await new_course(courses, people.instructor())
    admin = people.admin()
    changed = await courses.UpdateCourse(update(course.course_id), metadata=admin.auth)
    assert changed.course.title == "Hijacked"
    await courses.CreateVideo(add_video(course.course_id), metadata=admin.auth)
    published = await courses.PublishCourse(
        pb.PublishCourseRequest(course_id=course.course_id), metadata=admin.auth
    )
    assert published.course.state == pb.COURSE_STATE_PUBLISHED


def bearer(who: Person) -> dict[str, str]:
    return {"authorization": f"Bearer {who.token}"}


async def test_refusals_through_the_edge_as_json(
    stack: Endpoints, courses: CourseServiceStub, people: People
) -> None:
    owner, other, student = people.instructor(), people.instructor(), people.student()
    course = await new_course(courses, owner, publish=True)
    cid = course.course_id
    async with httpx.AsyncClient(base_url=f"http://{stack.edge}", timeout=10) as edge:
        created = await edge.post(
            "/api/courses",
            json={"course": {"title": "Mine"}, "idempotencyKey": "k"},
            headers=bearer(student),
        )
        assert created.status_code == 403 and "instructor" in created.json()["message"]
        patched = await edge.patch(
            f"/api/courses/{cid}",
            json={"course": {"title": "Hijacked"}, "updateMask": "title"},
            headers=bearer(other),
        )
        assert patched.status_code == 403, patched.text
        video = await edge.post(
            f"/api/courses/{cid}/videos",
            json={"video": {"title": "Intruder"}, "idempotencyKey": "k"},
            headers=bearer(other),
        )
        assert video.status_code == 403, video.text
        roster = await edge.get(f"/api/courses/{cid}/enrollments", headers=bearer(other))
        assert roster.status_code == 403, roster.text
        peek = await edge.get(
            f"/api/courses/{cid}/enrollments/{owner.user_id}", headers=bearer(student)
        )
        assert peek.status_code == 403, peek.text
        anonymous = await edge.post(f"/api/courses/{cid}/enroll", json={})
        assert anonymous.status_code == 401, anonymous.text
        seen = await edge.get(f"/api/courses/{cid}")
        assert seen.json()["course"]["title"] == course.title
