"""Every dashboard figure against the owning services' tables (issue 14 item 7): a course,
enrollments, an unenrollment and graded quiz submissions are made through the course and quiz
services' public gRPC APIs; their events flow through JetStream into the read model; the
expected figures are computed independently from the courses and quizzes schemas."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from elearn.analytics.v1 import analytics_service_pb2 as apb
from elearn.analytics.v1.analytics_service_pb2_grpc import AnalyticsServiceStub
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from tests.mesh.polling import eventually
from tests.people import Person
from tests.svc_quiz.conftest import Classroom, answer_for, choice, new_quiz

pytestmark = pytest.mark.asyncio(loop_scope="session")

_EXPECTED_SQL = """
WITH enrolled AS (
  SELECT user_id, completed_at IS NOT NULL OR state = 'completed' AS completed
  FROM courses.enrollments WHERE course_id = %(c)s AND state <> 'unenrolled'),
graded AS (
  SELECT * FROM quizzes.submissions WHERE course_id = %(c)s AND score_percent IS NOT NULL),
latest AS (
  SELECT DISTINCT ON (user_id, quiz_id) user_id, passed FROM graded
  ORDER BY user_id, quiz_id, attempt_number DESC)
SELECT
  (SELECT count(*) FROM enrolled),
  (SELECT count(*) FROM enrolled WHERE completed),
  (SELECT count(*) FROM graded),
  (SELECT coalesce(avg(score_percent), 0) FROM graded),
  (SELECT count(*) FROM enrolled e WHERE EXISTS (
     SELECT 1 FROM graded g WHERE g.user_id = e.user_id
       AND g.submitted_at >= now() - interval '7 days')),
  (SELECT count(*) FROM enrolled e WHERE NOT e.completed AND (
     EXISTS (SELECT 1 FROM latest l WHERE l.user_id = e.user_id AND NOT l.passed)
     OR NOT EXISTS (SELECT 1 FROM graded g WHERE g.user_id = e.user_id
       AND g.submitted_at >= now() - interval '7 days')))
"""


async def _answer(quizzes: QuizServiceStub, quiz: pb.Quiz, who: Person, right: list[bool]) -> None:
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
        metadata=who.auth,
    )
    await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=started.attempt.attempt_id,
            answers=[answer_for(q, r) for q, r in zip(quiz.questions, right, strict=True)],
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=who.auth,
    )


async def test_dashboard_matches_the_owning_services_tables(
    quizzes: QuizServiceStub, classroom: Classroom, analytics: AnalyticsServiceStub,
    sql: psycopg.Connection,
) -> None:  # fmt: skip
    quiz = await new_quiz(
        quizzes, classroom, [choice("a", 0), choice("b", 1)], passing_score_percent=50
    )
    s1, s2, s3, s4 = [await classroom.student() for _ in range(4)]
    await classroom.courses.Unenroll(
        course_pb.UnenrollRequest(course_id=classroom.course_id), metadata=s4.auth
    )
    await _answer(quizzes, quiz, s1, [True, True])
    await _answer(quizzes, quiz, s2, [True, False])
    await _answer(quizzes, quiz, s3, [False, False])
    room = classroom.course_id
    me = classroom.instructor

    def expected() -> tuple[object, ...]:
        row = sql.execute(_EXPECTED_SQL, {"c": room}).fetchone()
        assert row is not None
        enrolled, completed, graded, average, active, at_risk = row
        rate = completed / enrolled if enrolled else 0.0
        return (enrolled, completed, round(rate, 6), round(rate * 100, 6), graded,
                round(float(average), 6), active, at_risk)  # fmt: skip

    seen: list[tuple[object, ...]] = []

    async def matches() -> bool:
        answer = await analytics.ListInstructorCourseStats(
            apb.ListInstructorCourseStatsRequest(instructor_id=me.user_id), metadata=me.auth
        )
        row = next((c for c in answer.courses if c.course_id == room), None)
        if row is None:
            return False
        got = (row.enrollment_count, row.completion_count, round(row.completion_rate, 6),
               round(row.completion_percent, 6), row.graded_submission_count,
               round(row.average_score_percent, 6), row.active_learner_count,
               row.at_risk_learner_count)  # fmt: skip
        seen[:] = [got]
        return got == expected()

    await eventually(matches, within=30, every=0.1)
    # The data made above: 3 enrolled (one left), grades 100, 50 and 0, one failing learner.
    assert seen[0] == (3, 0, 0.0, 0.0, 3, 50.0, 3, 1)

    detail = await analytics.GetCourseAnalytics(
        apb.GetCourseAnalyticsRequest(course_id=room), metadata=me.auth
    )
    outcomes: dict[str, list[bool]] = {}
    for (blob,) in sql.execute(
        "SELECT results FROM quizzes.submissions WHERE course_id = %s", (room,)
    ):
        for r in pb.Submission.FromString(blob).results:
            outcomes.setdefault(r.question_id, []).append(r.outcome == pb.QUESTION_OUTCOME_CORRECT)
    got = {q.question_id: (q.answer_count, round(q.correct_share, 6)) for q in detail.questions}
    assert got == {k: (len(v), round(sum(v) / len(v), 6)) for k, v in outcomes.items()}
    scores = [
        float(s) for (s,) in sql.execute(
            "SELECT score_percent FROM quizzes.submissions WHERE course_id = %s", (room,))
    ]  # fmt: skip
    buckets = [0] * 10
    for s in scores:
        buckets[min(int(s // 10), 9)] += 1
    assert [b.count for b in detail.score_distribution] == buckets
