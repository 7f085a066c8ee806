"""A grading worker killed with SIGKILL while it holds jobs: JetStream redelivers its
unacknowledged jobs to the other worker after ack_wait, and every submission still ends
graded exactly once (one grade version, one SubmissionGraded event each). A private stack
with two workers and a short ack_wait, so redelivery is quick."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import nats
import psycopg
import pytest
import pytest_asyncio

from devstack.stack import Endpoints, Stack, StackConfig
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.events.v1 import quiz_events_pb2 as events_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from mesh.db import libpq_url
from svc_user.tokens import AccessTokens, load_private_key
from tests.mesh.polling import eventually
from tests.svc_quiz.conftest import short

pytestmark = pytest.mark.e2e
SUBMISSIONS = 600
STUDENTS = 30
ACK_WAIT = "3"


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides = {
        "QUIZ_ADMISSION_MAX_BACKLOG": "100000",
        "QUIZ_GRADING_ACK_WAIT_SECONDS": ACK_WAIT,
        "QUIZ_WORKER_GRADING_ACK_WAIT_SECONDS": ACK_WAIT,
    }
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    config = StackConfig.for_tests(
        tmp_path_factory.mktemp("crash"),
        replicas={"live": 0, "analytics": 0, "quiz-worker": 2},
        with_envoy=False,
    )
    running = Stack(config)
    try:
        running.start(timeout=180)
        yield running
    finally:
        running.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _auth(signer: AccessTokens, user_id: str, *roles: str) -> tuple[tuple[str, str]]:
    token = signer.mint(user_id, ["student", *roles], session_id=str(uuid.uuid4()))
    return (("authorization", f"Bearer {token}"),)


@pytest_asyncio.fixture(loop_scope="session")
async def stubs(
    crash_stack: Stack,
) -> AsyncIterator[tuple[Endpoints, QuizServiceStub, CourseServiceStub]]:
    ends = crash_stack.endpoints
    async with (
        grpc.aio.insecure_channel(ends.services["quiz"][0]) as quiz_channel,
        grpc.aio.insecure_channel(ends.services["course"][0]) as course_channel,
    ):
        yield ends, QuizServiceStub(quiz_channel), CourseServiceStub(course_channel)


async def test_killed_worker_loses_no_job_and_grades_nothing_twice(
    crash_stack: Stack, stubs: tuple[Endpoints, QuizServiceStub, CourseServiceStub]
) -> None:
    ends, quizzes, courses = stubs
    signer = AccessTokens(load_private_key(ends.jwt_private_key_file), 3600)
    teacher = _auth(signer, str(uuid.uuid4()), "instructor")
    course = await courses.CreateCourse(
        course_pb.CreateCourseRequest(
            course=course_pb.Course(
                title="Crash course", description="d", category="c",
                level=course_pb.COURSE_LEVEL_BEGINNER, language="en",
            ),
            idempotency_key="c",
        ),
        metadata=teacher,
    )  # fmt: skip
    course_id = course.course.course_id
    await courses.PublishCourse(
        course_pb.PublishCourseRequest(course_id=course_id), metadata=teacher
    )
    students = [_auth(signer, str(uuid.uuid4())) for _ in range(STUDENTS)]
    for student in students:
        await courses.Enroll(course_pb.EnrollRequest(course_id=course_id), metadata=student)
    created = await quizzes.CreateQuiz(
        pb.CreateQuizRequest(
            quiz=pb.Quiz(
                course_id=course_id,
                title="Regex quiz",
                questions=[short("colour?", r"colou?r", pb.ANSWER_MATCH_MODE_REGEX)],
            ),
            idempotency_key="q",
        ),
        metadata=teacher,
    )
    quiz = (
        await quizzes.PublishQuiz(
            pb.PublishQuizRequest(quiz_id=created.quiz.quiz_id), metadata=teacher
        )
    ).quiz
    answer = pb.Answer(question_id=quiz.questions[0].question_id, text="color")

    async def submit_all(student: tuple[tuple[str, str]], n: int) -> None:
        # One student's submissions one after another (each opens and submits an attempt).
        for i in range(n):
            await quizzes.SubmitQuiz(
                pb.SubmitQuizRequest(
                    quiz_id=quiz.quiz_id, answers=[answer], idempotency_key=f"s{i}"
                ),
                metadata=student,
            )

    # Workers paused while the submissions arrive, so a backlog waits when they resume and
    # the killed worker is in the middle of its jobs.
    workers = [crash_stack.process("quiz-worker", i).pid for i in range(2)]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]
    try:
        await asyncio.gather(*(submit_all(s, SUBMISSIONS // STUDENTS) for s in students))
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)  # type: ignore[arg-type]

    url = libpq_url(ends.database_url)
    with psycopg.connect(url, autocommit=True) as sql:

        def graded() -> int:
            row = sql.execute(
                "SELECT count(*) FROM quizzes.submissions"
                " WHERE quiz_id = %s AND grading_status = 3",
                (quiz.quiz_id,),
            ).fetchone()
            return int(row[0]) if row else 0

        async def some_graded() -> bool:
            return graded() >= 50

        await eventually(some_graded, within=30, every=0.1)
        crash_stack.kill("quiz-worker", 0)

        async def all_graded() -> bool:
            return graded() == SUBMISSIONS

        await eventually(all_graded, within=120, every=0.1)
        versions = sql.execute(
            "SELECT grade_version, count(*) FROM quizzes.submissions WHERE quiz_id = %s"
            " GROUP BY grade_version",
            (quiz.quiz_id,),
        ).fetchall()
        assert versions == [(1, SUBMISSIONS)]

    nc = await nats.connect(ends.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("elearn.quiz.submission_graded", ordered_consumer=True)
        seen: dict[str, int] = {}

        async def all_events() -> bool:
            # Read what has arrived; done once every submission has its event.
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except nats.errors.TimeoutError:
                    return len(seen) >= SUBMISSIONS
                event = events_pb.SubmissionGraded.FromString(msg.data)
                seen[event.submission_id] = seen.get(event.submission_id, 0) + 1

        await eventually(all_events, within=60, every=0.1)
        assert len(seen) == SUBMISSIONS
        assert set(seen.values()) == {1}
    finally:
        await nc.close()
