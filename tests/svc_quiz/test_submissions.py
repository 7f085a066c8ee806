"""Idempotent submission, refusals, visibility, essays graded by hand, and the events."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import nats
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from devstack.runstate import Endpoints
from elearn.events.v1 import quiz_events_pb2 as events_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from tests.people import Person
from tests.svc_quiz.conftest import Classroom, answer_for, choice, new_quiz

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _start(quizzes: QuizServiceStub, quiz: pb.Quiz, who: Person) -> pb.Attempt:
    reply = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
        metadata=who.auth,
    )
    return reply.attempt


def _fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    out: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend(v.field for v in bad.field_violations)
    return out


async def test_hundred_concurrent_repeats_make_one_submission_and_one_grade(
    quizzes: QuizServiceStub, classroom: Classroom, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0), choice("b", 1)])
    student = await classroom.student()
    attempt = await _start(quizzes, quiz, student)
    request = pb.SubmitQuizRequest(
        quiz_id=quiz.quiz_id,
        attempt_id=attempt.attempt_id,
        answers=[answer_for(quiz.questions[0]), answer_for(quiz.questions[1], right=False)],
        idempotency_key="double-click",
    )
    replies = await asyncio.gather(
        *(quizzes.SubmitQuiz(request, metadata=student.auth) for _ in range(100))
    )
    first = replies[0].submission
    assert all(r.submission == first for r in replies)
    assert first.grading_status == pb.GRADING_STATUS_GRADED
    rows = sql.execute(
        "SELECT count(*), max(grade_version) FROM quizzes.submissions WHERE attempt_id = %s",
        (attempt.attempt_id,),
    ).fetchone()
    assert rows == (1, 1)


async def test_same_key_with_other_answers_is_already_exists(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    student = await classroom.student()
    attempt = await _start(quizzes, quiz, student)
    base = pb.SubmitQuizRequest(
        quiz_id=quiz.quiz_id, attempt_id=attempt.attempt_id, idempotency_key="k"
    )
    right = pb.SubmitQuizRequest()
    right.CopyFrom(base)
    right.answers.append(answer_for(quiz.questions[0]))
    await quizzes.SubmitQuiz(right, metadata=student.auth)
    wrong = pb.SubmitQuizRequest()
    wrong.CopyFrom(base)
    wrong.answers.append(answer_for(quiz.questions[0], right=False))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.SubmitQuiz(wrong, metadata=student.auth)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    other_key = pb.SubmitQuizRequest()
    other_key.CopyFrom(right)
    other_key.idempotency_key = "another"
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await quizzes.SubmitQuiz(other_key, metadata=student.auth)
    assert closed.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_bad_answers_are_invalid_argument_naming_the_field(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    multi = pb.Question(
        prompt="pick two",
        points=1,
        multiple_choice=pb.MultipleChoiceQuestion(
            options=[pb.ChoiceOption(option_id=f"o{i}", text="t", correct=i < 2) for i in range(4)],
            max_selections=2,
        ),
    )
    text = pb.Question(
        prompt="word",
        points=1,
        short_answer=pb.ShortAnswerQuestion(
            accepted_answers=[pb.AcceptedAnswer(text="x")], max_length=10
        ),
    )
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0), multi, text])
    q0, q1, q2 = (q.question_id for q in quiz.questions)
    student = await classroom.student()
    attempt = await _start(quizzes, quiz, student)
    cases = {
        "answers[0].question_id": pb.Answer(question_id=str(uuid.uuid4()), option_id="o0"),
        "answers[0].true_false": pb.Answer(question_id=q0, true_false=True),
        "answers[0].options.option_ids": pb.Answer(
            question_id=q1, options=pb.OptionSelection(option_ids=["o0", "o1", "o2"])
        ),
        "answers[0].text": pb.Answer(question_id=q2, text="x" * 11),
        "answers[0].option_id": pb.Answer(question_id=q0, option_id="nope"),
    }
    for field, answer in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await quizzes.SubmitQuiz(
                pb.SubmitQuizRequest(
                    quiz_id=quiz.quiz_id,
                    attempt_id=attempt.attempt_id,
                    answers=[answer],
                    idempotency_key=uuid.uuid4().hex,
                ),
                metadata=student.auth,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in _fields(refused.value), field


async def test_bad_quiz_is_invalid_argument_naming_the_field(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    bad = choice("a", 0, options=21)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await new_quiz(quizzes, classroom, [bad], publish=False)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "quiz.questions[0].single_choice.options" in _fields(refused.value)
    regex = pb.Question(
        prompt="p",
        points=1,
        short_answer=pb.ShortAnswerQuestion(
            accepted_answers=[
                pb.AcceptedAnswer(text=r"(a)\1", match_mode=pb.ANSWER_MATCH_MODE_REGEX)
            ]
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as not_re2:
        await new_quiz(quizzes, classroom, [regex], publish=False)
    assert "quiz.questions[0].short_answer.accepted_answers[0].text" in _fields(not_re2.value)


async def test_students_read_only_their_own_submissions(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    owner, other = await classroom.student(), await classroom.student()
    attempt = await _start(quizzes, quiz, owner)
    submitted = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id, attempt_id=attempt.attempt_id, idempotency_key="k"
        ),
        metadata=owner.auth,
    )
    sid = submitted.submission.submission_id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.GetSubmission(pb.GetSubmissionRequest(submission_id=sid), metadata=other.auth)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    seen = await quizzes.GetSubmission(
        pb.GetSubmissionRequest(submission_id=sid), metadata=classroom.instructor.auth
    )
    assert seen.submission.submission_id == sid
    with pytest.raises(grpc.aio.AioRpcError) as not_theirs:
        await quizzes.ListQuizSubmissions(
            pb.ListQuizSubmissionsRequest(quiz_id=quiz.quiz_id), metadata=owner.auth
        )
    assert not_theirs.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await quizzes.ListQuizSubmissions(
        pb.ListQuizSubmissionsRequest(quiz_id=quiz.quiz_id), metadata=classroom.instructor.auth
    )
    assert [s.submission_id for s in listed.submissions] == [sid]
    assert not listed.submissions[0].answers and not listed.submissions[0].results
    mine = await quizzes.ListMySubmissions(pb.ListMySubmissionsRequest(), metadata=owner.auth)
    assert [s.submission_id for s in mine.submissions] == [sid]


async def test_score_only_visibility_withholds_per_question_outcomes(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(
        quizzes,
        classroom,
        [choice("a", 0), choice("b", 1)],
        results_visibility=pb.RESULTS_VISIBILITY_SCORE_ONLY,
    )
    student = await classroom.student()
    attempt = await _start(quizzes, quiz, student)
    submitted = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=attempt.attempt_id,
            answers=[answer_for(quiz.questions[0])],
            idempotency_key="k",
        ),
        metadata=student.auth,
    )
    s = submitted.submission
    assert s.score == 1 and s.results_withheld and not s.results
    read = await quizzes.GetSubmission(
        pb.GetSubmissionRequest(submission_id=s.submission_id), metadata=student.auth
    )
    assert read.submission.results_withheld and not read.submission.results
    instructor_view = await quizzes.GetSubmission(
        pb.GetSubmissionRequest(submission_id=s.submission_id), metadata=classroom.instructor.auth
    )
    assert len(instructor_view.submission.results) == 2


async def test_essays_wait_for_the_instructor_whose_grade_is_idempotent(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    essay = pb.Question(prompt="Discuss.", points=10, essay=pb.EssayQuestion(rubric="r"))
    quiz = await new_quiz(quizzes, classroom, [essay, choice("a", 0)])
    student = await classroom.student()
    attempt = await _start(quizzes, quiz, student)
    submitted = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=attempt.attempt_id,
            answers=[
                pb.Answer(question_id=quiz.questions[0].question_id, text="An essay."),
                answer_for(quiz.questions[1]),
            ],
            idempotency_key="k",
        ),
        metadata=student.auth,
    )
    s = submitted.submission
    assert s.grading_status == pb.GRADING_STATUS_NEEDS_MANUAL_GRADING
    assert not s.results and not s.HasField("grade_time")
    grade = pb.GradeSubmissionRequest(
        submission_id=s.submission_id,
        grades=[pb.ManualGrade(question_id=quiz.questions[0].question_id, points_awarded=6)],
        idempotency_key="g1",
    )
    graded = await quizzes.GradeSubmission(grade, metadata=classroom.instructor.auth)
    again = await quizzes.GradeSubmission(grade, metadata=classroom.instructor.auth)
    assert graded.submission.grading_status == pb.GRADING_STATUS_GRADED
    assert graded.submission.score == 7
    assert again.submission == graded.submission
    with pytest.raises(grpc.aio.AioRpcError) as student_refused:
        await quizzes.GradeSubmission(
            pb.GradeSubmissionRequest(submission_id=s.submission_id, grades=grade.grades),
            metadata=student.auth,
        )
    assert student_refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_every_final_grade_is_published_with_outcomes_and_instructor(
    quizzes: QuizServiceStub, classroom: Classroom, stack: Endpoints
) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("elearn.quiz.submission_graded", ordered_consumer=True)
        quiz = await new_quiz(quizzes, classroom, [choice("a", 0), choice("b", 1)])
        student = await classroom.student()
        attempt = await _start(quizzes, quiz, student)
        submitted = await quizzes.SubmitQuiz(
            pb.SubmitQuizRequest(
                quiz_id=quiz.quiz_id,
                attempt_id=attempt.attempt_id,
                answers=[answer_for(quiz.questions[0])],
                idempotency_key="k",
            ),
            metadata=student.auth,
        )
        sid = submitted.submission.submission_id
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            except nats.errors.TimeoutError:
                break
            event = events_pb.SubmissionGraded.FromString(msg.data)
            if event.submission_id == sid:
                found = event
        assert found is not None, "no SubmissionGraded event for the submission"
        assert found.instructor_id == classroom.instructor.user_id
        assert found.grade_version == 1
        assert [q.outcome for q in found.questions] == [
            pb.QUESTION_OUTCOME_CORRECT,
            pb.QUESTION_OUTCOME_UNANSWERED,
        ]
        assert found.questions[0].type == pb.QUESTION_TYPE_SINGLE_CHOICE
    finally:
        await nc.close()
