"""Authoring, attempts and synchronous grading on the real stack."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import psycopg
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from tests.svc_quiz.conftest import Classroom, answer_for, choice, new_quiz

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_instructor_authors_and_publishes_a_quiz(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    draft = await new_quiz(quizzes, classroom, [choice("2+2?", 1)], publish=False)
    assert draft.state == pb.QUIZ_STATE_DRAFT
    assert draft.version == 1
    assert draft.total_points == 1
    assert draft.questions[0].question_id
    published = await quizzes.PublishQuiz(
        pb.PublishQuizRequest(quiz_id=draft.quiz_id), metadata=classroom.instructor.auth
    )
    assert published.quiz.state == pb.QUIZ_STATE_PUBLISHED
    assert published.quiz.HasField("publish_time")
    again = await quizzes.GetQuizDefinition(
        pb.GetQuizDefinitionRequest(quiz_id=draft.quiz_id), metadata=classroom.instructor.auth
    )
    assert again.quiz.questions[0].single_choice.options[1].correct


async def test_create_quiz_is_idempotent_on_its_key(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    request = pb.CreateQuizRequest(
        quiz=pb.Quiz(course_id=classroom.course_id, title="Once", questions=[choice("q", 0)]),
        idempotency_key=uuid.uuid4().hex,
    )
    first = await quizzes.CreateQuiz(request, metadata=classroom.instructor.auth)
    second = await quizzes.CreateQuiz(request, metadata=classroom.instructor.auth)
    assert first.quiz.quiz_id == second.quiz.quiz_id


async def test_only_the_course_instructor_authors(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    other = classroom.people.make("instructor")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.CreateQuiz(
            pb.CreateQuizRequest(
                quiz=pb.Quiz(course_id=classroom.course_id, title="x", questions=[choice("q", 0)]),
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=other.auth,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    quiz = await new_quiz(quizzes, classroom, [choice("q", 0)])
    with pytest.raises(grpc.aio.AioRpcError) as key_refused:
        await quizzes.GetQuizDefinition(
            pb.GetQuizDefinitionRequest(quiz_id=quiz.quiz_id), metadata=other.auth
        )
    assert key_refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_student_takes_a_quiz_without_seeing_the_key_and_is_graded_at_once(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(
        quizzes, classroom, [choice("a", 0), choice("b", 2)], passing_score_percent=50
    )
    student = await classroom.student()
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
        metadata=student.auth,
    )
    attempt = started.attempt
    assert attempt.state == pb.ATTEMPT_STATE_IN_PROGRESS
    assert attempt.attempt_number == 1
    assert "correct" not in str(started)
    assert [len(q.options) for q in attempt.questions] == [4, 4]
    submitted = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=attempt.attempt_id,
            answers=[answer_for(quiz.questions[0]), answer_for(quiz.questions[1], right=False)],
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=student.auth,
    )
    s = submitted.submission
    assert s.grading_status == pb.GRADING_STATUS_GRADED
    assert (s.score, s.max_score, s.score_percent, s.passed) == (1, 2, 50, True)
    assert [r.outcome for r in s.results] == [
        pb.QUESTION_OUTCOME_CORRECT,
        pb.QUESTION_OUTCOME_INCORRECT,
    ]
    read = await quizzes.GetSubmission(
        pb.GetSubmissionRequest(submission_id=s.submission_id), metadata=student.auth
    )
    assert read.submission == s


async def test_attempt_limit_and_resume(quizzes: QuizServiceStub, classroom: Classroom) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)], max_attempts=1)
    student = await classroom.student()
    first = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k1"), metadata=student.auth
    )
    resumed = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k2"), metadata=student.auth
    )
    assert resumed.attempt.attempt_id == first.attempt.attempt_id
    await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id, attempt_id=first.attempt.attempt_id, idempotency_key="s1"
        ),
        metadata=student.auth,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.StartAttempt(
            pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k3"),
            metadata=student.auth,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_students_not_enrolled_cannot_start(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    stranger = classroom.people.make()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.StartAttempt(
            pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k"),
            metadata=stranger.auth,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_saved_answers_are_submitted_and_returned_on_resume(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0), choice("b", 1)])
    student = await classroom.student()
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k"), metadata=student.auth
    )
    saved = await quizzes.SaveAnswers(
        pb.SaveAnswersRequest(
            attempt_id=started.attempt.attempt_id, answers=[answer_for(quiz.questions[0])]
        ),
        metadata=student.auth,
    )
    assert saved.saved_count == 1
    resumed = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k2"), metadata=student.auth
    )
    assert [a.question_id for a in resumed.attempt.saved_answers] == [quiz.questions[0].question_id]
    submitted = await quizzes.SubmitQuiz(
        pb.SubmitQuizRequest(
            quiz_id=quiz.quiz_id,
            attempt_id=started.attempt.attempt_id,
            answers=[answer_for(quiz.questions[1])],
            idempotency_key="s",
        ),
        metadata=student.auth,
    )
    assert submitted.submission.score == 2


async def test_submit_without_attempt_opens_and_submits_in_one_call(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    student = await classroom.student()
    request = pb.SubmitQuizRequest(
        quiz_id=quiz.quiz_id, answers=[answer_for(quiz.questions[0])], idempotency_key="once"
    )
    first = await quizzes.SubmitQuiz(request, metadata=student.auth)
    again = await quizzes.SubmitQuiz(request, metadata=student.auth)
    assert first.submission.grading_status == pb.GRADING_STATUS_GRADED
    assert first.submission.score == 1
    assert again.submission == first.submission
    timed = await new_quiz(quizzes, classroom, [choice("a", 0)], time_limit={"seconds": 600})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await quizzes.SubmitQuiz(
            pb.SubmitQuizRequest(quiz_id=timed.quiz_id, idempotency_key="k"), metadata=student.auth
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_server_enforces_the_deadline_plus_grace(
    quizzes: QuizServiceStub, classroom: Classroom, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)], time_limit={"seconds": 600})
    student = await classroom.student()
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k"), metadata=student.auth
    )
    assert started.attempt.HasField("deadline_time")
    # The attempt's clock ran out a minute ago (beyond the 10 s grace).
    sql.execute(
        "UPDATE quizzes.attempts SET deadline_at = now() - interval '1 minute' WHERE id = %s",
        (started.attempt.attempt_id,),
    )
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await quizzes.SubmitQuiz(
            pb.SubmitQuizRequest(
                quiz_id=quiz.quiz_id, attempt_id=started.attempt.attempt_id, idempotency_key="s"
            ),
            metadata=student.auth,
        )
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_expired_attempt_is_submitted_with_its_saved_answers(
    quizzes: QuizServiceStub, classroom: Classroom, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(
        quizzes, classroom, [choice("a", 0), choice("b", 1)], time_limit={"seconds": 600}
    )
    student = await classroom.student()
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key="k"), metadata=student.auth
    )
    await quizzes.SaveAnswers(
        pb.SaveAnswersRequest(
            attempt_id=started.attempt.attempt_id, answers=[answer_for(quiz.questions[0])]
        ),
        metadata=student.auth,
    )
    sql.execute(
        "UPDATE quizzes.attempts SET deadline_at = now() - interval '1 minute' WHERE id = %s",
        (started.attempt.attempt_id,),
    )
    deadline = time.monotonic() + 30
    mine = pb.ListMySubmissionsResponse()
    while time.monotonic() < deadline and not mine.submissions:
        mine = await quizzes.ListMySubmissions(
            pb.ListMySubmissionsRequest(quiz_id=quiz.quiz_id), metadata=student.auth
        )
        if not mine.submissions:
            await asyncio.sleep(0.2)
    assert [s.attempt_id for s in mine.submissions] == [started.attempt.attempt_id]
    assert mine.submissions[0].score == 1


async def test_lists_and_overview_show_students_published_quizzes_only(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    draft = await new_quiz(quizzes, classroom, [choice("a", 0)], publish=False)
    published = await new_quiz(quizzes, classroom, [choice("a", 0)], max_attempts=3)
    renamed = pb.Quiz(quiz_id=published.quiz_id, title="Renamed")
    updated = await quizzes.UpdateQuiz(
        pb.UpdateQuizRequest(quiz=renamed, update_mask=FieldMask(paths=["title"])),
        metadata=classroom.instructor.auth,
    )
    assert updated.quiz.title == "Renamed"
    assert updated.quiz.version == 1 and updated.regrade_count == 0
    student = await classroom.student()
    seen = await quizzes.ListQuizzes(
        pb.ListQuizzesRequest(course_id=classroom.course_id), metadata=student.auth
    )
    assert [q.quiz_id for q in seen.quizzes] == [published.quiz_id]
    assert seen.quizzes[0].title == "Renamed"
    authored = await quizzes.ListQuizzes(
        pb.ListQuizzesRequest(course_id=classroom.course_id, page_size=1),
        metadata=classroom.instructor.auth,
    )
    rest = await quizzes.ListQuizzes(
        pb.ListQuizzesRequest(
            course_id=classroom.course_id, page_size=1, page_token=authored.next_page_token
        ),
        metadata=classroom.instructor.auth,
    )
    assert {authored.quizzes[0].quiz_id, rest.quizzes[0].quiz_id} == {
        draft.quiz_id,
        published.quiz_id,
    }
    assert not rest.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await quizzes.GetQuiz(pb.GetQuizRequest(quiz_id=draft.quiz_id), metadata=student.auth)
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=published.quiz_id, idempotency_key="k"),
        metadata=student.auth,
    )
    overview = await quizzes.GetQuiz(
        pb.GetQuizRequest(quiz_id=published.quiz_id), metadata=student.auth
    )
    assert overview.quiz.max_attempts == 3 and overview.quiz.question_count == 1
    assert overview.attempts_used == 1
    assert overview.open_attempt_id == started.attempt.attempt_id
