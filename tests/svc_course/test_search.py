"""Catalog search against the real Postgres full-text search: weighting, typos, accents, CJK,
filters, visibility and stable pages. Each test searches inside a category of its own, so the
rows other tests add never change its results."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from tests.grpc_assert import fails_with
from tests.people import People, Person
from tests.svc_course.conftest import new_course


def own_category() -> str:
    return f"cat-{uuid.uuid4().hex[:10]}"


async def search(stub: CourseServiceStub, query: str, **filters: object) -> list[str]:
    reply = await stub.SearchCourses(pb.SearchCoursesRequest(query=query, **filters))  # type: ignore[arg-type]
    return [r.course.course_id for r in reply.results]


async def published(
    stub: CourseServiceStub, owner: Person, category: str, title: str, **over: object
) -> pb.Course:
    return await new_course(stub, owner, publish=True, category=category, title=title, **over)


async def test_a_typo_still_finds_the_course(courses: CourseServiceStub, people: People) -> None:
    category = own_category()
    course = await published(courses, people.instructor(), category, "Python for Data Science")
    await published(courses, people.instructor(), category, "Gardening for Beginners")
    for query in ("pyhton", "Pyton data", "python", "data scince"):
        assert await search(courses, query, category=category) == [course.course_id], query


async def test_the_last_word_is_completed_as_it_is_typed(
    courses: CourseServiceStub, people: People
) -> None:
    category = own_category()
    # Published a moment ago: its words are in the vocabulary completion reads at once.
    title = "Xylographomaniacs Workshop"
    course = await published(courses, people.instructor(), category, title)
    await published(courses, people.instructor(), category, "Calligraphy Workshop")
    # "xyl" and "xylo" are too far from the long word (trigram similarity under 0.25) for typo
    # correction to find it: only completion does.
    for query in ("xyl", "workshop xylo", "xylographomaniacs WORKSHOP"):
        assert await search(courses, query, category=category) == [course.course_id], query
    assert await search(courses, "xy", category=category) == []


async def test_title_outranks_tags_outranks_description(
    courses: CourseServiceStub, people: People
) -> None:
    category, teacher = own_category(), people.instructor()
    in_description = await published(
        courses, teacher, category, "Third", description="all about quokkas here"
    )
    in_tags = await published(courses, teacher, category, "Second", tags=["quokkas"])
    in_title = await published(courses, teacher, category, "Quokkas explained")
    ranked = await courses.SearchCourses(
        pb.SearchCoursesRequest(query="quokkas", category=category)
    )
    assert [r.course.course_id for r in ranked.results] == [
        in_title.course_id,
        in_tags.course_id,
        in_description.course_id,
    ]
    ranks = [r.rank for r in ranked.results]
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] > 0


async def test_accents_are_ignored_both_ways(courses: CourseServiceStub, people: People) -> None:
    category = own_category()
    cafe = await published(courses, people.instructor(), category, "Café Crème Techniques")
    resume = await published(courses, people.instructor(), category, "Resume Writing")
    assert await search(courses, "cafe creme", category=category) == [cafe.course_id]
    assert await search(courses, "CAFÉ", category=category) == [cafe.course_id]
    assert await search(courses, "résumé", category=category) == [resume.course_id]


async def test_cjk_titles_are_found_by_any_part(courses: CourseServiceStub, people: People) -> None:
    category = own_category()
    japanese = await published(courses, people.instructor(), category, "日本語入門")
    korean = await published(courses, people.instructor(), category, "한국어 문법 기초")
    chinese = await published(courses, people.instructor(), category, "汉字书写练习")
    assert await search(courses, "日本語", category=category) == [japanese.course_id]
    assert await search(courses, "入門", category=category) == [japanese.course_id]
    assert await search(courses, "語入門", category=category) == [japanese.course_id]
    assert await search(courses, "문법", category=category) == [korean.course_id]
    assert await search(courses, "书写", category=category) == [chinese.course_id]
    assert await search(courses, "书写练", category=category) == [chinese.course_id]


async def test_only_published_courses_are_found_and_at_once(
    courses: CourseServiceStub, people: People
) -> None:
    category, teacher = own_category(), people.instructor()
    draft = await new_course(courses, teacher, category=category, title="Wombat Care")
    assert await search(courses, "wombat", category=category) == []
    await courses.PublishCourse(
        pb.PublishCourseRequest(course_id=draft.course_id), metadata=teacher.auth
    )
    assert await search(courses, "wombat", category=category) == [draft.course_id]
    await courses.UpdateCourse(
        pb.UpdateCourseRequest(
            course=pb.Course(course_id=draft.course_id, title="Platypus Care"),
            update_mask=FieldMask(paths=["title"]),
        ),
        metadata=teacher.auth,
    )
    assert await search(courses, "wombat", category=category) == []
    assert await search(courses, "platypus", category=category) == [draft.course_id]
    await courses.ArchiveCourse(
        pb.ArchiveCourseRequest(course_id=draft.course_id), metadata=teacher.auth
    )
    assert await search(courses, "platypus", category=category) == []


async def test_filters_by_level_and_language(courses: CourseServiceStub, people: People) -> None:
    category, teacher = own_category(), people.instructor()
    english = await published(
        courses, teacher, category, "Rust basics", level=pb.COURSE_LEVEL_BEGINNER, language="en"
    )
    german = await published(
        courses, teacher, category, "Rust basics", level=pb.COURSE_LEVEL_ADVANCED, language="de"
    )
    assert await search(courses, "rust", category=category, language="de") == [german.course_id]
    assert await search(courses, "rust", category=category, level=pb.COURSE_LEVEL_BEGINNER) == [
        english.course_id
    ]
    newest_first = await search(courses, "", category=category)
    assert newest_first == [german.course_id, english.course_id]


async def test_pages_are_stable_and_pinned_to_their_query(
    courses: CourseServiceStub, people: People
) -> None:
    category, teacher = own_category(), people.instructor()
    made = {
        (await published(courses, teacher, category, f"Origami lesson {i}")).course_id
        for i in range(5)
    }
    seen: list[str] = []
    request = pb.SearchCoursesRequest(query="origami", category=category, page_size=2)
    for _ in range(5):
        page = await courses.SearchCourses(request)
        seen.extend(r.course.course_id for r in page.results)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert sorted(seen) == sorted(made) and len(seen) == 5
    first = await courses.SearchCourses(
        pb.SearchCoursesRequest(query="origami", category=category, page_size=2)
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.SearchCourses(
            pb.SearchCoursesRequest(
                query="origami", category=category, language="fr", page_token=first.next_page_token
            )
        ),
        "different query",
    )


async def test_search_bad_input(courses: CourseServiceStub) -> None:
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.SearchCourses(pb.SearchCoursesRequest(query="q" * 201)),
        "query",
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.SearchCourses(pb.SearchCoursesRequest(query="x", page_size=-1)),
        "page_size",
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        courses.SearchCourses(pb.SearchCoursesRequest(query="x", page_token="%%%")),
        "page_token",
    )
    # tsquery syntax in the input is data, never syntax: no error, and no words means no hits.
    odd = await courses.SearchCourses(pb.SearchCoursesRequest(query="' & | ! :* ( \\"))
    assert list(odd.results) == []
    await courses.SearchCourses(pb.SearchCoursesRequest(query="o'reilly's c++ & <->"))
