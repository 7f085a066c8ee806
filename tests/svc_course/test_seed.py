"""`python -m svc_course.seed` against the real database: the rows it reports exist, the
counters match them, and the seeded catalog is searchable at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import psycopg

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from svc_course.seed import parse, plan


def test_seed_arguments_are_checked() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "svc_course.seed", "--courses", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--courses must be at least 1" in done.stderr


async def test_seed_makes_consistent_searchable_rows(
    stack: Endpoints, sql: psycopg.Connection, courses: CourseServiceStub
) -> None:
    started = sql.execute("SELECT now()").fetchone()
    argv = [sys.executable, "-m", "svc_course.seed", "--instructors", "3", "--courses", "40",
            "--videos-per-course", "2", "--students", "10", "--enrollments", "60",
            "--published", "1", "--seed", "99", "--quiet"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, "DATABASE_URL": stack.database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    stdout = out.decode()
    assert "seeded 40 courses, 80 videos, 60 enrollments" in stdout
    # The same arguments plan the same rows, so the check covers exactly what this run made.
    seeded = [row["id"] for row in plan(parse(argv[3:]))["courses"]]
    mismatched = sql.execute(
        """
        SELECT count(*) FROM courses.courses c
        WHERE c.id = ANY(%s)
          AND (c.video_count <> (SELECT count(*) FROM courses.videos v WHERE v.course_id = c.id)
           OR c.total_duration_seconds <> (SELECT coalesce(sum(duration_seconds), 0)
                                           FROM courses.videos v WHERE v.course_id = c.id)
           OR c.enrollment_count <> (SELECT count(*) FROM courses.enrollments e
                                     WHERE e.course_id = c.id AND e.state = 'active'))
        """,
        (seeded,),
    ).fetchone()
    assert mismatched == (0,)
    # The planner knows the new rows at once: the seed analyzed the tables it filled.
    analyzed = sql.execute(
        "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = 'courses'"
        " AND relname IN ('courses', 'videos', 'enrollments', 'search_terms')"
        " AND last_analyze >= %s",
        started,
    ).fetchone()
    assert analyzed == (4,)
    present = sql.execute("SELECT count(*) FROM courses.courses WHERE id = ANY(%s)", (seeded,))
    assert present.fetchone() == (40,)
    example = stdout.split("e.g. course ", 1)[1]
    course_id, title = example.split(" ", 1)
    title = title.strip().removeprefix("(").removesuffix(")").strip("'\"")
    got = await courses.GetCourse(pb.GetCourseRequest(course_id=course_id))
    assert got.course.title == title and got.course.state == pb.COURSE_STATE_PUBLISHED
    found = await courses.SearchCourses(pb.SearchCoursesRequest(query=title, page_size=50))
    assert course_id in [r.course.course_id for r in found.results]
