"""The graded counters (graded_submission_count, score_sum) move by what each batch's
submission upsert changed instead of being recounted from every submission of the course:
a replayed grade moves nothing, a regrade moves the sum by its difference, and a grade that
arrives before its course's row still counts, whether or not it names the instructor (with
one, the batch makes the course's placeholder row; without, the course is recounted once a
row exists). Each state is checked against counts taken from the submissions table itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from devstack.stack import Endpoints
from elearn.events.v1 import course_events_pb2 as ce
from elearn.events.v1 import quiz_events_pb2 as qe
from mesh.db import Database
from mesh.outbox import AGGREGATE_SEQ_HEADER
from svc_analytics import repository
from svc_analytics.dashboard import idle_cutoff
from svc_analytics.events import Incoming, decode
from svc_analytics.models import SCHEMA
from svc_analytics.settings import AnalyticsSettings
from tests.svc_analytics.conftest import CORRECT, ts

T0 = datetime.now(UTC) - timedelta(hours=1)

_COUNTERS = text("""
SELECT c.graded_submission_count, c.score_sum,
       (SELECT count(*) FROM submissions s WHERE s.course_id = c.course_id),
       (SELECT coalesce(sum(score_percent), 0) FROM submissions s WHERE s.course_id = c.course_id)
FROM courses c WHERE c.course_id = :course
""")


def _grade(course: str, submission: str, version: int, score: float, instructor: str) -> Incoming:
    event = qe.SubmissionGraded(
        event_id=str(uuid.uuid4()), occur_time=ts(T0), submission_id=submission,
        quiz_id=str(uuid.uuid4()), course_id=course, user_id=str(uuid.uuid4()),
        instructor_id=instructor, attempt_number=1, grade_version=version,
        score_percent=score, passed=score >= 50,
        questions=[qe.QuestionGrade(question_id=str(uuid.uuid4()), outcome=CORRECT)],
    )  # fmt: skip
    return Incoming("elearn.quiz.submission_graded", event.SerializeToString(), {})


def _created(course: str, instructor: str) -> Incoming:
    info = ce.CourseInfo(course_id=course, instructor_id=instructor, title="Counted")
    event = ce.CourseCreated(event_id=str(uuid.uuid4()), occur_time=ts(T0), course=info)
    return Incoming("elearn.course.course_created", event.SerializeToString(),
                    {AGGREGATE_SEQ_HEADER: "1"})  # fmt: skip


def _enrolled(course: str, instructor: str) -> Incoming:
    event = ce.Enrolled(event_id=str(uuid.uuid4()), occur_time=ts(T0), course_id=course,
                        user_id=str(uuid.uuid4()), instructor_id=instructor)  # fmt: skip
    return Incoming("elearn.course.enrolled", event.SerializeToString(),
                    {AGGREGATE_SEQ_HEADER: "1"})  # fmt: skip


async def _apply(db: Database, *batch: Incoming) -> None:
    async with db.transaction_driver("test") as conn:
        await repository.apply(conn, decode(batch), idle_cutoff())


async def _counters(db: Database, course: str) -> tuple[Any, ...] | None:
    async with db.read() as conn:
        row = (await conn.execute(_COUNTERS, {"course": course})).first()
    return None if row is None else tuple(row)


async def test_graded_counters_follow_the_submissions_through_replays_and_regrades(
    stack: Endpoints,
) -> None:
    async with Database.open(AnalyticsSettings(database_url=stack.database_url), SCHEMA) as db:
        course, instructor = str(uuid.uuid4()), str(uuid.uuid4())
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        # A grade before any course event: its instructor lets the batch make the row.
        await _apply(db, _grade(course, first, 1, 40.0, instructor))
        assert await _counters(db, course) == (1, 40.0, 1, 40.0)
        await _apply(db, _created(course, instructor), _grade(course, second, 1, 70.0, instructor))
        assert await _counters(db, course) == (2, 110.0, 2, 110.0)
        # Replayed, in one batch and alone: nothing moves.
        replay = [_grade(course, first, 1, 40.0, instructor), _grade(course, second, 1, 70.0,
                                                                       instructor)]  # fmt: skip
        await _apply(db, *replay)
        await _apply(db, replay[1])
        assert await _counters(db, course) == (2, 110.0, 2, 110.0)
        # A regrade moves the sum by its difference; an older version after it moves nothing.
        await _apply(db, _grade(course, first, 3, 90.0, instructor))
        await _apply(db, _grade(course, first, 2, 10.0, instructor))
        assert await _counters(db, course) == (2, 160.0, 2, 160.0)


async def test_grades_without_an_instructor_are_counted_once_their_course_has_a_row(
    stack: Endpoints,
) -> None:
    async with Database.open(AnalyticsSettings(database_url=stack.database_url), SCHEMA) as db:
        course, instructor = str(uuid.uuid4()), str(uuid.uuid4())
        await _apply(db, _grade(course, str(uuid.uuid4()), 1, 30.0, ""))
        assert await _counters(db, course) is None  # no row to count on yet
        await _apply(db, _enrolled(course, instructor))
        assert await _counters(db, course) == (1, 30.0, 1, 30.0)
        await _apply(db, _grade(course, str(uuid.uuid4()), 1, 60.0, ""))
        assert await _counters(db, course) == (2, 90.0, 2, 90.0)


_FAILING = text("""
SELECT l.failing_quiz_count,
       (SELECT count(*) FROM latest_attempts a
        WHERE a.course_id = l.course_id AND a.user_id = l.user_id AND NOT a.passed)
FROM learners l WHERE l.course_id = :course AND l.user_id = :user
""")


def _attempt(course: str, user: str, quiz: str, attempt: int, passed: bool) -> Incoming:
    event = qe.SubmissionGraded(
        event_id=str(uuid.uuid4()), occur_time=ts(T0), submission_id=str(uuid.uuid4()),
        quiz_id=quiz, course_id=course, user_id=user, instructor_id=str(uuid.uuid4()),
        attempt_number=attempt, grade_version=1, score_percent=80.0 if passed else 20.0,
        passed=passed,
    )  # fmt: skip
    return Incoming("elearn.quiz.submission_graded", event.SerializeToString(), {})


async def test_failing_quiz_counts_follow_the_latest_attempts(stack: Endpoints) -> None:
    async with Database.open(AnalyticsSettings(database_url=stack.database_url), SCHEMA) as db:
        course, user, a, b = (str(uuid.uuid4()) for _ in range(4))

        async def failing() -> tuple[Any, ...]:
            async with db.read() as conn:
                row = (await conn.execute(_FAILING, {"course": course, "user": user})).one()
            return tuple(row)

        await _apply(db, _attempt(course, user, a, 1, False), _attempt(course, user, b, 1, True))
        assert await failing() == (1, 1)
        await _apply(db, _attempt(course, user, a, 2, True))  # passes A at last
        assert await failing() == (0, 0)
        await _apply(db, _attempt(course, user, a, 1, False))  # the old attempt, replayed
        assert await failing() == (0, 0)
        # Two quizzes change in one batch, one of them twice.
        await _apply(db, _attempt(course, user, b, 2, False), _attempt(course, user, a, 3, False),
                     _attempt(course, user, b, 3, True))  # fmt: skip
        assert await failing() == (1, 1)
