"""Rows and stored definitions to contract messages: the authoring view, the student views
(no key), and submissions as each reader may see them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from elearn.quiz.v1 import quiz_service_pb2 as pb
from svc_quiz import grading


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value)
    return out


def as_datetime(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def authoring(definition: pb.Quiz, row: Any) -> pb.Quiz:
    """The stored definition with the row's server-owned fields."""
    quiz = pb.Quiz()
    quiz.CopyFrom(definition)
    quiz.state = row.state
    for name, value in (
        ("create_time", row.created_at),
        ("update_time", row.updated_at),
        ("publish_time", row.published_at),
    ):
        stamp = ts(value)
        if stamp is not None:
            getattr(quiz, name).CopyFrom(stamp)
        else:
            quiz.ClearField(name)  # type: ignore[arg-type]
    return quiz


def summary(quiz: pb.Quiz) -> pb.QuizSummary:
    out = pb.QuizSummary(
        quiz_id=quiz.quiz_id,
        course_id=quiz.course_id,
        title=quiz.title,
        description=quiz.description,
        state=quiz.state,
        question_count=len(quiz.questions),
        total_points=quiz.total_points,
        passing_score_percent=quiz.passing_score_percent,
        max_attempts=quiz.max_attempts,
        late_policy=quiz.late_policy,
        results_visibility=quiz.results_visibility,
    )
    for name in ("time_limit", "due_time", "publish_time"):
        if quiz.HasField(name):
            getattr(out, name).CopyFrom(getattr(quiz, name))
    return out


def student_questions(quiz: pb.Quiz, seed: int) -> list[pb.StudentQuestion]:
    """The questions without the key, in this attempt's delivery order."""
    rng = random.Random(seed)
    order = list(quiz.questions)
    if quiz.shuffle_questions:
        rng.shuffle(order)
    out = []
    for q in order:
        kind = q.WhichOneof("kind")
        sq = pb.StudentQuestion(
            question_id=q.question_id,
            type=grading.question_type(q),
            prompt=q.prompt,
            points=q.points,
        )
        if kind in ("single_choice", "multiple_choice"):
            options = [
                pb.StudentOption(option_id=o.option_id, text=o.text)
                for o in getattr(q, kind).options
            ]
            if quiz.shuffle_options:
                rng.shuffle(options)
            sq.options.extend(options)
            if kind == "multiple_choice":
                sq.max_selections = q.multiple_choice.max_selections
        elif kind == "short_answer":
            sq.max_length = q.short_answer.max_length or 500
        elif kind == "essay":
            sq.max_length = q.essay.max_length or 10_000
        out.append(sq)
    return out


def attempt(row: Any, quiz: pb.Quiz) -> pb.Attempt:
    out = pb.Attempt(
        attempt_id=str(row.id),
        quiz_id=str(row.quiz_id),
        user_id=str(row.user_id),
        attempt_number=row.attempt_number,
        state=row.state,
        questions=student_questions(quiz, row.shuffle_seed),
        start_time=ts(row.started_at),
        deadline_time=ts(row.deadline_at),
        submission_id=str(row.submission_id) if row.submission_id else "",
    )
    if row.saved_answers:
        out.saved_answers.extend(pb.SubmitQuizRequest.FromString(row.saved_answers).answers)
    return out


def submission(
    row: Any,
    *,
    with_answers: bool = True,
    answers: Sequence[pb.Answer] | None = None,
) -> pb.Submission:
    """The full view. Score fields and results are filled only once a grade is final (and a
    regrade shows the previous final grade), so nothing half-graded is visible. A submission
    just made passes its answers as objects: parsing back the bytes it just serialized cost
    a tenth of SubmitQuiz's CPU in the exam rush."""
    out = pb.Submission(
        submission_id=str(row.id),
        quiz_id=str(row.quiz_id),
        course_id=str(row.course_id),
        user_id=str(row.user_id),
        attempt_id=str(row.attempt_id),
        attempt_number=row.attempt_number,
        quiz_version=row.quiz_version,
        grading_status=row.grading_status,
        max_score=row.max_score,
        late=row.late,
        late_penalty_percent=row.late_penalty_percent,
        submit_time=ts(row.submitted_at),
        failure_reason=row.failure_reason or "",
    )
    if row.graded_at is not None:
        out.score = row.score
        out.score_percent = row.score_percent
        out.passed = row.passed
        out.grade_time.FromDatetime(row.graded_at)
    if with_answers:
        if answers is None:
            answers = pb.SubmitQuizRequest.FromString(row.answers).answers
        out.answers.extend(answers)
        if row.results and row.graded_at is not None:
            # The stored results are a Submission holding only them: merged straight in,
            # which is cheaper than copying result objects.
            out.MergeFromString(row.results)
    return out


# Keys of a new submission's values that are not columns (the insert takes only the column
# names): the answers and the inline grade as objects, so the response and the event are built
# from them instead of parsing back the bytes just serialized.
ANSWERS = "_answers"
GRADED_RESULTS = "_graded_results"
# The inline grade's shared results with their wire forms (grading.Judged), when it has them.
GRADED_JUDGED = "_graded_judged"


def fresh_submission(values: dict[str, Any], quiz: pb.Quiz, now: datetime) -> pb.Submission:
    """The student's view of a submission just written, from its values."""
    row = SimpleNamespace(**values, failure_reason="")
    out = submission(row, answers=values[ANSWERS])
    return withhold_for_student(out, quiz, now)


def withhold_for_student(out: pb.Submission, quiz: pb.Quiz, now: datetime) -> pb.Submission:
    """Apply the quiz's results visibility to the student's own view."""
    visibility = quiz.results_visibility
    if visibility == pb.RESULTS_VISIBILITY_SCORE_ONLY:
        withhold = True
    elif visibility == pb.RESULTS_VISIBILITY_AFTER_DUE:
        withhold = not quiz.HasField("due_time") or now < as_datetime(quiz.due_time)
    else:
        withhold = False
    if withhold and out.results:
        out.ClearField("results")
        out.results_withheld = True
    return out
