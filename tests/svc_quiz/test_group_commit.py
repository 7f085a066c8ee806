"""One-call submissions written by the group commit: many concurrent students share batches,
yet each gets its own submission, attempt and event; idempotency stays exact across and
within batches."""

from __future__ import annotations

import asyncio
import time

import grpc
import nats
import psycopg
import pytest

from devstack.runstate import Endpoints
from elearn.events.v1 import quiz_events_pb2 as events_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from tests.svc_quiz.conftest import Classroom, answer_for, choice, new_quiz

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRADED = "elearn.quiz.submission_graded"


async def test_concurrent_students_each_get_their_own_submission_and_event(
    quizzes: QuizServiceStub, classroom: Classroom, sql: psycopg.Connection, stack: Endpoints
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0), choice("b", 1)])
    students = [await classroom.student() for _ in range(40)]

    async def submit(i: int) -> pb.Submission:
        right = i % 2 == 0
        reply = await quizzes.SubmitQuiz(
            pb.SubmitQuizRequest(
                quiz_id=quiz.quiz_id,
                answers=[answer_for(quiz.questions[0], right=right)],
                idempotency_key=f"rush-{i}",
            ),
            metadata=students[i].auth,
        )
        return reply.submission

    replies = await asyncio.gather(*(submit(i) for i in range(len(students))))
    assert [r.user_id for r in replies] == [s.user_id for s in students]
    assert [r.score for r in replies] == [1 - i % 2 for i in range(len(students))]
    assert all(r.grading_status == pb.GRADING_STATUS_GRADED for r in replies)
    stored = sql.execute(
        "SELECT count(*), count(DISTINCT a.id), bool_and(a.state = 2 AND a.submission_id = s.id)"
        " FROM quizzes.submissions s JOIN quizzes.attempts a ON a.id = s.attempt_id"
        " WHERE s.quiz_id = %s",
        (quiz.quiz_id,),
    ).fetchone()
    assert stored == (40, 40, True)
    wanted = {r.submission_id for r in replies}
    nc = await nats.connect(stack.nats_url)
    try:
        sub = await nc.jetstream().subscribe(GRADED, ordered_consumer=True)
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while set(seen) != wanted and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            except nats.errors.TimeoutError:
                break
            event = events_pb.SubmissionGraded.FromString(msg.data)
            if event.submission_id in wanted:
                seen[event.submission_id] = seen.get(event.submission_id, 0) + 1
    finally:
        await nc.close()
    assert set(seen) == wanted
    by_id = {r.submission_id: r for r in replies}
    assert all(by_id[sid].attempt_number == 1 for sid in seen)


async def test_hundred_concurrent_one_call_repeats_make_one_submission(
    quizzes: QuizServiceStub, classroom: Classroom, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0), choice("b", 1)])
    student = await classroom.student()
    request = pb.SubmitQuizRequest(
        quiz_id=quiz.quiz_id, answers=[answer_for(quiz.questions[0])], idempotency_key="click"
    )
    replies = await asyncio.gather(
        *(quizzes.SubmitQuiz(request, metadata=student.auth) for _ in range(100))
    )
    first = replies[0].submission
    assert all(r.submission == first for r in replies)
    counts = sql.execute(
        "SELECT (SELECT count(*) FROM quizzes.submissions WHERE quiz_id = %s),"
        " (SELECT count(*) FROM quizzes.attempts WHERE quiz_id = %s)",
        (quiz.quiz_id, quiz.quiz_id),
    ).fetchone()
    assert counts == (1, 1)
    other = pb.SubmitQuizRequest()
    other.CopyFrom(request)
    other.answers[0].CopyFrom(answer_for(quiz.questions[0], right=False))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.SubmitQuiz(other, metadata=student.auth)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_one_call_submission_is_refused_while_an_attempt_is_open_or_all_are_used(
    quizzes: QuizServiceStub, classroom: Classroom, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)], max_attempts=2)
    student = await classroom.student()
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="start-1"),
        metadata=student.auth,
    )

    def one_call(key: str) -> pb.SubmitQuizRequest:
        return pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id, answers=[answer_for(quiz.questions[0])], idempotency_key=key
        )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.SubmitQuiz(one_call("while-open"), metadata=student.auth)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    first = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=started.attempt.attempt_id,
            answers=[answer_for(quiz.questions[0])],
            idempotency_key="submit-1",
        ),
        metadata=student.auth,
    )
    second = await quizzes.SubmitQuiz(one_call("second"), metadata=student.auth)
    assert (first.submission.attempt_number, second.submission.attempt_number) == (1, 2)
    with pytest.raises(grpc.aio.AioRpcError) as used_up:
        await quizzes.SubmitQuiz(one_call("third"), metadata=student.auth)
    assert used_up.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    rows = sql.execute(
        "SELECT a.attempt_number, a.state, a.submission_id = s.id"
        " FROM quizzes.attempts a LEFT JOIN quizzes.submissions s ON s.attempt_id = a.id"
        " WHERE a.quiz_id = %s ORDER BY a.attempt_number",
        (quiz.quiz_id,),
    ).fetchall()
    assert rows == [(1, pb.ATTEMPT_STATE_SUBMITTED, True), (2, pb.ATTEMPT_STATE_SUBMITTED, True)]
