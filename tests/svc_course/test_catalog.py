"""Courses and video metadata over gRPC against the real service: create, update by mask,
publish, archive, visibility, listing, and counters that stay right under concurrency."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc
import nats
import psycopg
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.events.v1 import course_events_pb2 as events
from tests.grpc_assert import fails_with, violated_fields
from tests.people import People
from tests.svc_course.conftest import course_fields, new_course, new_video


async def test_create_course_is_a_draft_owned_by_the_caller(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, title="  Python for Data Science ", capacity=30)
    assert course.title == "Python for Data Science"
    assert course.instructor_id == teacher.user_id
    assert course.state == pb.COURSE_STATE_DRAFT
    assert course.capacity == 30 and course.enrollment_count == 0
    assert not course.HasField("publish_time")


async def test_create_retry_with_same_key_returns_same_course(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    teacher = people.instructor()
    request = pb.CreateCourseRequest(course=course_fields(), idempotency_key=uuid.uuid4().hex)
    first, second = await asyncio.gather(
        courses.CreateCourse(request, metadata=teacher.auth),
        courses.CreateCourse(request, metadata=teacher.auth),
    )
    assert first.course.course_id == second.course.course_id
    row = sql.execute(
        "SELECT count(*) FROM courses.courses WHERE instructor_id = %s", (teacher.user_id,)
    ).fetchone()
    assert row is not None and row[0] == 1
    request.course.title = "Something else"
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        courses.CreateCourse(request, metadata=teacher.auth),
        "idempotency_key",
    )


async def test_create_course_reports_every_bad_field(
    courses: CourseServiceStub, people: People
) -> None:
    bad = pb.Course(
        title="",
        description="x" * 20_001,
        category="Not A Slug",
        tags=["ok", "t" * 41],
        language="english!",
        capacity=-1,
    )
    error = await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.CreateCourse(pb.CreateCourseRequest(course=bad), metadata=people.instructor().auth),
    )
    assert set(violated_fields(error)) == {
        "course.title",
        "course.description",
        "course.category",
        "course.tags",
        "course.language",
        "course.capacity",
        "idempotency_key",
    }


async def test_oversized_title_and_too_many_tags_are_refused(
    courses: CourseServiceStub, people: People
) -> None:
    request = pb.CreateCourseRequest(
        course=course_fields(title="t" * 201, tags=[f"tag{i}" for i in range(21)]),
        idempotency_key="k",
    )
    error = await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.CreateCourse(request, metadata=people.instructor().auth),
    )
    assert set(violated_fields(error)) == {"course.title", "course.tags"}


async def test_get_course_bad_and_unknown_ids(courses: CourseServiceStub) -> None:
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.GetCourse(pb.GetCourseRequest(course_id="not-a-uuid")),
        "course_id must be a UUID",
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.GetCourse(pb.GetCourseRequest()),
        "course_id is required",
    )
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.GetCourse(pb.GetCourseRequest(course_id=str(uuid.uuid4()))),
    )


async def test_drafts_are_visible_to_owner_and_admins_only(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    draft = await new_course(courses, teacher)
    request = pb.GetCourseRequest(course_id=draft.course_id)
    assert (await courses.GetCourse(request, metadata=teacher.auth)).course.title == draft.title
    assert (await courses.GetCourse(request, metadata=people.admin().auth)).course.course_id
    await fails_with(
        grpc.StatusCode.NOT_FOUND, courses.GetCourse(request, metadata=people.student().auth)
    )
    await fails_with(grpc.StatusCode.NOT_FOUND, courses.GetCourse(request))
    await courses.PublishCourse(
        pb.PublishCourseRequest(course_id=draft.course_id), metadata=teacher.auth
    )
    seen = await courses.GetCourse(request)
    assert seen.course.state == pb.COURSE_STATE_PUBLISHED and seen.course.HasField("publish_time")


async def test_update_changes_only_masked_fields_and_is_seen_at_once(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True)
    await courses.GetCourse(pb.GetCourseRequest(course_id=course.course_id))  # now cached
    change = pb.Course(course_id=course.course_id, title="Renamed", description="ignored")
    updated = await courses.UpdateCourse(
        pb.UpdateCourseRequest(course=change, update_mask=FieldMask(paths=["title"])),
        metadata=teacher.auth,
    )
    assert updated.course.title == "Renamed"
    assert updated.course.description == course.description
    seen = await courses.GetCourse(pb.GetCourseRequest(course_id=course.course_id))
    assert seen.course.title == "Renamed"


async def test_update_mask_must_name_known_fields(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher)
    for paths, problem in (([], "name the fields"), (["state"], "cannot change state")):
        await fails_with(
            grpc.StatusCode.INVALID_ARGUMENT,
            courses.UpdateCourse(
                pb.UpdateCourseRequest(
                    course=pb.Course(course_id=course.course_id), update_mask=FieldMask(paths=paths)
                ),
                metadata=teacher.auth,
            ),
            problem,
        )
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.UpdateCourse(
            pb.UpdateCourseRequest(
                course=pb.Course(course_id=str(uuid.uuid4()), title="x"),
                update_mask=FieldMask(paths=["title"]),
            ),
            metadata=teacher.auth,
        ),
    )


async def test_publish_and_archive_are_idempotent_and_one_way(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher, publish=True)
    again = await courses.PublishCourse(
        pb.PublishCourseRequest(course_id=course.course_id), metadata=teacher.auth
    )
    assert again.course.publish_time == course.publish_time
    archive = pb.ArchiveCourseRequest(course_id=course.course_id)
    archived = await courses.ArchiveCourse(archive, metadata=teacher.auth)
    assert archived.course.state == pb.COURSE_STATE_ARCHIVED
    twice = await courses.ArchiveCourse(archive, metadata=teacher.auth)
    assert twice.course.update_time == archived.course.update_time
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        courses.PublishCourse(
            pb.PublishCourseRequest(course_id=course.course_id), metadata=teacher.auth
        ),
        "archived",
    )
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.GetCourse(
            pb.GetCourseRequest(course_id=course.course_id), metadata=people.student().auth
        ),
    )


async def test_list_instructor_courses_pages_newest_first(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    made = [await new_course(courses, teacher, publish=i % 2 == 0) for i in range(5)]
    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = await courses.ListInstructorCourses(
            pb.ListInstructorCoursesRequest(page_size=2, page_token=token), metadata=teacher.auth
        )
        seen.extend(c.course_id for c in page.courses)
        token = page.next_page_token
        if not token:
            break
    assert seen == [c.course_id for c in reversed(made)]
    public = await courses.ListInstructorCourses(
        pb.ListInstructorCoursesRequest(instructor_id=teacher.user_id)
    )
    assert [c.course_id for c in public.courses] == [
        made[4].course_id,
        made[2].course_id,
        made[0].course_id,
    ]
    await fails_with(
        grpc.StatusCode.PERMISSION_DENIED,
        courses.ListInstructorCourses(
            pb.ListInstructorCoursesRequest(
                instructor_id=teacher.user_id, state=pb.COURSE_STATE_DRAFT
            ),
            metadata=people.student().auth,
        ),
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.ListInstructorCourses(
            pb.ListInstructorCoursesRequest(page_token="garbage!"), metadata=teacher.auth
        ),
        "page_token",
    )


async def test_videos_keep_positions_dense_and_course_totals(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher)
    a = await new_video(courses, teacher, course.course_id, seconds=100)
    b = await new_video(courses, teacher, course.course_id, seconds=200)
    first = await new_video(courses, teacher, course.course_id, seconds=50, position=1)
    listed = await courses.ListVideos(
        pb.ListVideosRequest(course_id=course.course_id), metadata=teacher.auth
    )
    assert [v.video_id for v in listed.videos] == [first.video_id, a.video_id, b.video_id]
    assert [v.position for v in listed.videos] == [1, 2, 3]
    moved = await courses.UpdateVideo(
        pb.UpdateVideoRequest(
            video=pb.Video(video_id=first.video_id, position=3, duration=Duration(seconds=80)),
            update_mask=FieldMask(paths=["position", "duration"]),
        ),
        metadata=teacher.auth,
    )
    assert moved.video.position == 3 and moved.video.duration.seconds == 80
    listed = await courses.ListVideos(
        pb.ListVideosRequest(course_id=course.course_id, page_size=2), metadata=teacher.auth
    )
    rest = await courses.ListVideos(
        pb.ListVideosRequest(
            course_id=course.course_id, page_size=2, page_token=listed.next_page_token
        ),
        metadata=teacher.auth,
    )
    order = [v.video_id for v in (*listed.videos, *rest.videos)]
    assert order == [a.video_id, b.video_id, first.video_id]
    assert not rest.next_page_token
    shifted = await courses.GetVideo(pb.GetVideoRequest(video_id=a.video_id), metadata=teacher.auth)
    assert shifted.video.position == 1, "a moved video's neighbours are not served stale"
    got = await courses.GetCourse(
        pb.GetCourseRequest(course_id=course.course_id), metadata=teacher.auth
    )
    assert got.course.video_count == 3
    assert got.course.total_duration.seconds == 100 + 200 + 80


async def test_concurrent_video_creation_keeps_counters_exact(
    courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher)
    made = await asyncio.gather(
        *(new_video(courses, teacher, course.course_id, seconds=10 + i) for i in range(20))
    )
    row = sql.execute(
        "SELECT video_count, total_duration_seconds FROM courses.courses WHERE id = %s",
        (course.course_id,),
    ).fetchone()
    assert row == (20, sum(10 + i for i in range(20)))
    positions = sql.execute(
        "SELECT position FROM courses.videos WHERE course_id = %s ORDER BY position",
        (course.course_id,),
    ).fetchall()
    assert [p[0] for p in positions] == list(range(1, 21))
    assert len({v.video_id for v in made}) == 20


async def test_video_bad_input(courses: CourseServiceStub, people: People) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher)
    error = await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.CreateVideo(
            pb.CreateVideoRequest(
                course_id=course.course_id,
                video=pb.Video(title="", duration=Duration(seconds=-5)),
            ),
            metadata=teacher.auth,
        ),
    )
    assert set(violated_fields(error)) == {"video.title", "video.duration", "idempotency_key"}
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.GetVideo(pb.GetVideoRequest(video_id=str(uuid.uuid4()))),
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.GetVideo(pb.GetVideoRequest(video_id="42")),
        "video_id must be a UUID",
    )


async def test_a_drafts_videos_are_hidden_from_students(
    courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    course = await new_course(courses, teacher)
    video = await new_video(courses, teacher, course.course_id)
    student = people.student()
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.GetVideo(pb.GetVideoRequest(video_id=video.video_id), metadata=student.auth),
    )
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        courses.ListVideos(pb.ListVideosRequest(course_id=course.course_id), metadata=student.auth),
    )


async def test_course_events_reach_jetstream(
    stack: Endpoints, courses: CourseServiceStub, people: People
) -> None:
    teacher = people.instructor()
    nc = await nats.connect(stack.nats_url)
    try:
        sub = await nc.jetstream().subscribe("elearn.course.*", ordered_consumer=True)
        course = await new_course(courses, teacher, publish=True)
        await courses.UpdateCourse(
            pb.UpdateCourseRequest(
                course=pb.Course(course_id=course.course_id, capacity=7),
                update_mask=FieldMask(paths=["capacity"]),
            ),
            metadata=teacher.auth,
        )
        kinds = {
            "elearn.course.course_created": events.CourseCreated,
            "elearn.course.course_published": events.CoursePublished,
            "elearn.course.course_updated": events.CourseUpdated,
        }
        seen: dict[str, Any] = {}
        deadline = time.monotonic() + 15
        while set(kinds) - set(seen) and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            except (TimeoutError, nats.errors.TimeoutError):
                break
            kind = kinds.get(msg.subject)
            if kind is not None:
                event = kind.FromString(msg.data)
                if event.course.course_id == course.course_id:
                    seen[msg.subject] = event
        assert set(seen) == set(kinds)
        assert seen["elearn.course.course_published"].course.state == pb.COURSE_STATE_PUBLISHED
        updated = seen["elearn.course.course_updated"]
        assert list(updated.changed_fields) == ["capacity"] and updated.course.capacity == 7
    finally:
        await nc.close()
