"""The view of a submission just written is built from its answers and grade as objects; it
must be the view that reading the stored row back gives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from elearn.quiz.v1 import quiz_service_pb2 as pb
from svc_quiz import grades, grading, views


def _quiz(visibility: pb.ResultsVisibility.ValueType) -> pb.Quiz:
    options = [pb.ChoiceOption(option_id=f"o{i}", text="t", correct=i == 0) for i in range(3)]
    questions = [
        pb.Question(
            question_id=f"q{i}",
            prompt="p",
            points=1,
            single_choice=pb.SingleChoiceQuestion(options=options),
        )
        for i in range(3)
    ]
    return pb.Quiz(questions=questions, total_points=3, version=2, results_visibility=visibility)


def _values(quiz: pb.Quiz, graded: bool) -> dict[str, Any]:
    answers = [
        pb.Answer(question_id="q0", option_id="o0"),
        pb.Answer(question_id="q1", option_id="o2"),
    ]
    grade = grading.grade_submission(quiz, answers)
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "quiz_id": uuid.uuid4(),
        "course_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "attempt_id": uuid.uuid4(),
        "attempt_number": 1,
        "quiz_version": quiz.version,
        "grading_status": pb.GRADING_STATUS_GRADED if graded else pb.GRADING_STATUS_PENDING,
        "answers": pb.SubmitQuizRequest(answers=answers).SerializeToString(),
        "late": False,
        "late_penalty_percent": 0.0,
        "submitted_at": now,
        "score": grade.points if graded else None,
        "max_score": quiz.total_points,
        "score_percent": 100 * grade.points / 3 if graded else None,
        "passed": False if graded else None,
        "results": pb.Submission(results=grade.results).SerializeToString() if graded else None,
        "graded_at": now if graded else None,
        views.ANSWERS: answers,
        views.GRADED_RESULTS: grade.results if graded else None,
    }
    return values


def _read_back(values: dict[str, Any], quiz: pb.Quiz) -> pb.Submission:
    out = views.submission(SimpleNamespace(**values, failure_reason=""))
    return views.withhold_for_student(out, quiz, values["submitted_at"])


def test_fresh_view_of_a_graded_submission_equals_the_stored_rows_view() -> None:
    quiz = _quiz(pb.RESULTS_VISIBILITY_FULL)
    values = _values(quiz, graded=True)
    fresh = views.fresh_submission(values, quiz, values["submitted_at"])
    assert len(fresh.results) == 3 and len(fresh.answers) == 2
    assert fresh == _read_back(values, quiz)


def test_fresh_view_of_a_pending_submission_has_no_results() -> None:
    quiz = _quiz(pb.RESULTS_VISIBILITY_FULL)
    values = _values(quiz, graded=False)
    fresh = views.fresh_submission(values, quiz, values["submitted_at"])
    assert not fresh.results and not fresh.HasField("grade_time")
    assert fresh == _read_back(values, quiz)


def test_fresh_view_withholds_results_when_the_quiz_shows_score_only() -> None:
    quiz = _quiz(pb.RESULTS_VISIBILITY_SCORE_ONLY)
    values = _values(quiz, graded=True)
    fresh = views.fresh_submission(values, quiz, values["submitted_at"])
    assert fresh.results_withheld and not fresh.results
    assert fresh == _read_back(values, quiz)


def test_graded_event_with_a_batchs_question_types_equals_the_event_without() -> None:
    quiz = _quiz(pb.RESULTS_VISIBILITY_FULL)
    values = _values(quiz, graded=True)
    results = values[views.GRADED_RESULTS]
    row = SimpleNamespace(**values, grade_version=1)
    types = grades.QuizTypes()
    assert types(quiz) is types(quiz)  # built once per quiz of a batch
    _, shared = grades.graded_event(row, quiz, results, "i", types(quiz))
    _, alone = grades.graded_event(row, quiz, results, "i")
    shared.ClearField("event_id")
    alone.ClearField("event_id")
    shared.ClearField("occur_time")
    alone.ClearField("occur_time")
    assert shared == alone
    assert [q.type for q in shared.questions] == [pb.QUESTION_TYPE_SINGLE_CHOICE] * 3
