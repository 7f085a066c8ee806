"""Results visibility AFTER_DUE (outcomes withheld until the due time, then shown) and essay
grades given by hand surviving a change of the answer key."""

from __future__ import annotations

import time
import uuid

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from tests.mesh.polling import eventually
from tests.people import Person
from tests.svc_quiz.conftest import Classroom, answer_for, choice, new_quiz

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _in(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int((time.time() + seconds) * 1e9))
    return out


async def _submit(
    quizzes: QuizServiceStub, quiz: pb.Quiz, who: Person, answers: list[pb.Answer]
) -> pb.Submission:
    started = await quizzes.StartAttempt(
        pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
        metadata=who.auth,
    )
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


async def _read(quizzes: QuizServiceStub, sid: str, who: Person) -> pb.Submission:
    reply = await quizzes.GetSubmission(
        pb.GetSubmissionRequest(submission_id=sid), metadata=who.auth
    )
    return reply.submission


async def test_after_due_visibility_withholds_outcomes_until_the_due_time(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(
        quizzes,
        classroom,
        [choice("a", 0), choice("b", 1)],
        results_visibility=pb.RESULTS_VISIBILITY_AFTER_DUE,
        due_time=_in(3600),
    )
    student = await classroom.student()
    submitted = await _submit(quizzes, quiz, student, [answer_for(quiz.questions[0])])
    sid = submitted.submission_id
    assert submitted.grading_status == pb.GRADING_STATUS_GRADED
    assert submitted.score == 1 and submitted.results_withheld and not submitted.results
    before = await _read(quizzes, sid, student)
    assert before.results_withheld and not before.results
    listed = await quizzes.ListMySubmissions(pb.ListMySubmissionsRequest(), metadata=student.auth)
    assert [s.results_withheld for s in listed.submissions] == [True]
    assert not listed.submissions[0].results
    teacher_view = await _read(quizzes, sid, classroom.instructor)
    assert [r.outcome for r in teacher_view.results] == [
        pb.QUESTION_OUTCOME_CORRECT,
        pb.QUESTION_OUTCOME_UNANSWERED,
    ]
    # The due time moves close; once the clock passes it the student sees the outcomes.
    moved = pb.Quiz(quiz_id=quiz.quiz_id, due_time=_in(1))
    await quizzes.UpdateQuiz(
        pb.UpdateQuizRequest(quiz=moved, update_mask=FieldMask(paths=["due_time"])),
        metadata=classroom.instructor.auth,
    )

    async def shown() -> bool:
        return bool((await _read(quizzes, sid, student)).results)

    await eventually(shown, within=30, every=0.2)
    after = await _read(quizzes, sid, student)
    assert not after.results_withheld
    assert list(after.results) == list(teacher_view.results)


def _essay_quiz_answers(quiz: pb.Quiz) -> list[pb.Answer]:
    return [
        pb.Answer(question_id=quiz.questions[0].question_id, text="An essay."),
        answer_for(quiz.questions[1]),
    ]


def _key_moved(quiz: pb.Quiz) -> pb.UpdateQuizRequest:
    """The choice question's right option moves from o0 to o1 (the student picked o0)."""
    changed = pb.Quiz()
    changed.CopyFrom(quiz)
    for i, option in enumerate(changed.questions[1].single_choice.options):
        option.correct = i == 1
    return pb.UpdateQuizRequest(quiz=changed, update_mask=FieldMask(paths=["questions"]))


def _manual(quiz: pb.Quiz, sid: str, points: float) -> pb.GradeSubmissionRequest:
    return pb.GradeSubmissionRequest(
        submission_id=sid,
        grades=[
            pb.ManualGrade(
                question_id=quiz.questions[0].question_id,
                points_awarded=points,
                feedback="well argued",
            )
        ],
        idempotency_key=uuid.uuid4().hex,
    )


ESSAY = pb.Question(prompt="Discuss.", points=10, essay=pb.EssayQuestion(rubric="r"))


async def test_regrade_keeps_the_instructors_essay_grade(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(quizzes, classroom, [ESSAY, choice("a", 0)])
    student = await classroom.student()
    submitted = await _submit(quizzes, quiz, student, _essay_quiz_answers(quiz))
    assert submitted.grading_status == pb.GRADING_STATUS_NEEDS_MANUAL_GRADING
    sid = submitted.submission_id
    graded = await quizzes.GradeSubmission(
        _manual(quiz, sid, 6), metadata=classroom.instructor.auth
    )
    assert (graded.submission.grading_status, graded.submission.score) == (
        pb.GRADING_STATUS_GRADED,
        7,
    )
    updated = await quizzes.UpdateQuiz(_key_moved(quiz), metadata=classroom.instructor.auth)
    assert updated.regrade_count == 1

    async def regraded() -> bool:
        s = await _read(quizzes, sid, classroom.instructor)
        return s.grading_status == pb.GRADING_STATUS_GRADED and s.quiz_version == 2

    await eventually(regraded, within=30, every=0.1)
    final = await _read(quizzes, sid, classroom.instructor)
    essay, picked = final.results
    assert (essay.points_awarded, essay.feedback) == (6, "well argued")
    assert picked.outcome == pb.QUESTION_OUTCOME_INCORRECT
    assert final.score == 6


async def test_essay_graded_after_a_key_change_is_scored_with_the_new_key(
    quizzes: QuizServiceStub, classroom: Classroom
) -> None:
    quiz = await new_quiz(quizzes, classroom, [ESSAY, choice("a", 0)])
    student = await classroom.student()
    submitted = await _submit(quizzes, quiz, student, _essay_quiz_answers(quiz))
    assert submitted.grading_status == pb.GRADING_STATUS_NEEDS_MANUAL_GRADING
    sid = submitted.submission_id
    await quizzes.UpdateQuiz(_key_moved(quiz), metadata=classroom.instructor.auth)
    graded = await quizzes.GradeSubmission(
        _manual(quiz, sid, 6), metadata=classroom.instructor.auth
    )
    s = graded.submission
    assert s.grading_status == pb.GRADING_STATUS_GRADED and s.quiz_version == 2
    assert [r.outcome for r in s.results][1] == pb.QUESTION_OUTCOME_INCORRECT
    assert s.score == 6
