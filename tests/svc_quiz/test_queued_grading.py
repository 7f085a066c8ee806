"""Costly quizzes graded by a worker process from the JetStream work queue: watching a
submission to its grade, exactly one grade under duplicate jobs, dead-letter after the last
delivery and the instructor's retry, regrading after a key change, exam-start admission."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import nats
import psycopg
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.wrappers_pb2 import StringValue
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.aio.client import Client as NATS

from devstack.runstate import Endpoints
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from tests.people import Person
from tests.svc_quiz.conftest import Classroom, new_quiz, short

pytestmark = pytest.mark.asyncio(loop_scope="session")

REGEX = pb.ANSWER_MATCH_MODE_REGEX
FUZZY = pb.ANSWER_MATCH_MODE_FUZZY


@pytest_asyncio.fixture(loop_scope="session")
async def nc(stack: Endpoints) -> AsyncIterator[NATS]:
    conn = await nats.connect(stack.nats_url)
    yield conn
    await conn.close()


async def _submit(
    quizzes: QuizServiceStub, quiz: pb.Quiz, who: Person, texts: list[str]
) -> pb.Submission:
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
        metadata=who.auth,
    )
    answers = [
        pb.Answer(question_id=q.question_id, text=t)
        for q, t in zip(quiz.questions, texts, strict=False)
    ]
    reply = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=started.attempt.attempt_id,
            answers=answers,
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=who.auth,
    )
    return reply.submission


async def _watch(quizzes: QuizServiceStub, sid: str, who: Person) -> list[pb.Submission]:
    call = quizzes.WatchSubmission(
        pb.WatchSubmissionRequest(submission_id=sid), metadata=who.auth, timeout=60
    )
    return [reply.submission async for reply in call]


async def _until(check: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_costly_quiz_is_pending_then_graded_by_a_worker(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(
        quizzes,
        classroom,
        [short("colour?", r"colou?r", REGEX), short("plant process", "photosynthesis", FUZZY)],
    )
    student = await classroom.student()
    submitted = await _submit(quizzes, quiz, student, ["Color", "photosynthesys"])
    assert submitted.grading_status == pb.GRADING_STATUS_PENDING
    assert not submitted.results and not submitted.HasField("grade_time")
    states = await _watch(quizzes, submitted.submission_id, student)
    final = states[-1]
    assert final.grading_status == pb.GRADING_STATUS_GRADED
    assert final.score == 2
    assert all(not s.results for s in states[:-1])


async def test_duplicate_jobs_write_one_grade(
    quizzes: QuizServiceStub, classroom: Classroom, nc: NATS, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(quizzes, classroom, [short("colour?", r"colou?r", REGEX)])
    student = await classroom.student()
    submitted = await _submit(quizzes, quiz, student, ["colour"])
    job = StringValue(value=submitted.submission_id).SerializeToString()
    js = nc.jetstream()
    for _ in range(5):
        await js.publish("quizgrade.jobs", job, headers={"Nats-Msg-Id": uuid.uuid4().hex})
    states = await _watch(quizzes, submitted.submission_id, student)
    assert states[-1].grading_status == pb.GRADING_STATUS_GRADED

    async def drained() -> bool:
        info = await js.consumer_info("QUIZ_GRADING", "graders")
        return (info.num_pending or 0) + (info.num_ack_pending or 0) == 0

    await _until(drained)
    row = sql.execute(
        "SELECT grade_version FROM quizzes.submissions WHERE id = %s", (submitted.submission_id,)
    ).fetchone()
    assert row == (1,)


async def test_poison_job_is_dead_lettered_failed_and_retried_by_the_instructor(
    quizzes: QuizServiceStub, classroom: Classroom, nc: NATS, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(quizzes, classroom, [short("colour?", r"colou?r", REGEX)])
    student = await classroom.student()
    # The quiz service caches the definition on StartAttempt; the worker reads it from the
    # table, where it is now unreadable: every delivery fails.
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
        metadata=student.auth,
    )
    sql.execute(
        "UPDATE quizzes.quiz_versions SET definition = %s WHERE quiz_id = %s",
        (b"\xff\xff\xff", quiz.quiz_id),
    )
    reply = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=started.attempt.attempt_id,
            answers=[pb.Answer(question_id=quiz.questions[0].question_id, text="color")],
            idempotency_key="k",
        ),
        metadata=student.auth,
    )
    submitted = reply.submission
    sid = submitted.submission_id
    assert submitted.grading_status == pb.GRADING_STATUS_PENDING
    failed = (await _watch(quizzes, sid, classroom.instructor))[-1]
    assert failed.grading_status == pb.GRADING_STATUS_FAILED
    assert "after 5 deliveries" in failed.failure_reason
    dead = await nc.jetstream().get_last_msg("QUIZ_GRADING_DEAD", "quizgrade.dead")
    assert dead.data is not None
    assert StringValue.FromString(dead.data).value == sid

    sql.execute(
        "UPDATE quizzes.quiz_versions SET definition = %s WHERE quiz_id = %s",
        (quiz.SerializeToString(), quiz.quiz_id),
    )
    with pytest.raises(grpc.aio.AioRpcError) as student_refused:
        await quizzes.RetryGrading(pb.RetryGradingRequest(submission_id=sid), metadata=student.auth)
    assert student_refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    retried = await quizzes.RetryGrading(
        pb.RetryGradingRequest(submission_id=sid), metadata=classroom.instructor.auth
    )
    assert retried.submission.grading_status in (
        pb.GRADING_STATUS_PENDING,
        pb.GRADING_STATUS_GRADED,
    )
    graded = (await _watch(quizzes, sid, student))[-1]
    assert graded.grading_status == pb.GRADING_STATUS_GRADED
    assert graded.score == 1


async def test_changing_the_key_regrades_submissions_in_the_background(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(
        quizzes, classroom, [short("capital", "Paris", pb.ANSWER_MATCH_MODE_NORMALIZED)]
    )
    student = await classroom.student()
    submitted = await _submit(quizzes, quiz, student, ["Lyon"])
    assert (submitted.grading_status, submitted.score) == (pb.GRADING_STATUS_GRADED, 0)
    changed = pb.Quiz()
    changed.CopyFrom(quiz)
    changed.questions[0].short_answer.accepted_answers[0].text = "Lyon"
    updated = await quizzes.UpdateQuiz(
        pb.UpdateQuizRequest(quiz=changed, update_mask=FieldMask(paths=["questions"])),
        metadata=classroom.instructor.auth,
    )
    assert updated.quiz.version == 2
    assert updated.regrade_count == 1
    sid = submitted.submission_id

    async def regraded() -> bool:
        reply = await quizzes.GetSubmission(
            pb.GetSubmissionRequest(submission_id=sid), metadata=student.auth
        )
        s = reply.submission
        if s.grading_status == pb.GRADING_STATUS_REGRADING:
            assert s.score == 0 and s.quiz_version == 1  # the old grade stays visible
        return s.grading_status == pb.GRADING_STATUS_GRADED and s.quiz_version == 2

    await _until(regraded)
    final = await quizzes.GetSubmission(
        pb.GetSubmissionRequest(submission_id=sid), metadata=student.auth
    )
    assert final.submission.score == 1


async def test_exam_start_is_shed_with_retry_info_while_the_grading_backlog_is_high(
    quizzes: QuizServiceStub, classroom: Classroom, nc: NATS
) -> None:
    quiz = await new_quiz(quizzes, classroom, [short("x", "x", pb.ANSWER_MATCH_MODE_EXACT)])
    student = await classroom.student()
    js = nc.jetstream()
    # Jobs for submissions that do not exist: workers ack them without grading anything.
    for _ in range(3000):
        await nc.publish("quizgrade.jobs", StringValue(value=str(uuid.uuid4())).SerializeToString())
    await nc.flush()
    shed: list[grpc.aio.AioRpcError] = []

    async def refused() -> bool:
        try:
            await quizzes.StartAttempt(
                pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
                metadata=student.auth,
            )
        except grpc.aio.AioRpcError as exc:
            shed.append(exc)
            return True
        return False

    await _until(refused, seconds=20)
    error = shed[0]
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    assert retry.retry_delay.seconds > 0

    async def drained() -> bool:
        info = await js.consumer_info("QUIZ_GRADING", "graders")
        return (info.num_pending or 0) + (info.num_ack_pending or 0) == 0

    await _until(drained, seconds=120)

    async def admitted() -> bool:
        return not await refused()

    await _until(admitted, seconds=10)
