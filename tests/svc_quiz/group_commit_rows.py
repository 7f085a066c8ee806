"""Rows for the group commit's tests: a graded submission's values and a queued Pending with
its attempt and SubmissionGraded event, as SubmitQuiz builds them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from elearn.quiz.v1 import quiz_service_pb2 as pb
from svc_quiz import grades
from svc_quiz.group_commit import Pending


def submission_values(quiz: pb.Quiz, user_id: str, key: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "quiz_id": uuid.UUID(quiz.quiz_id),
        "course_id": uuid.UUID(quiz.course_id),
        "user_id": uuid.UUID(user_id),
        "attempt_id": uuid.uuid4(),
        "attempt_number": 0,
        "quiz_version": quiz.version,
        "grading_status": pb.GRADING_STATUS_GRADED,
        "idempotency_key": key,
        "answers_digest": b"d" * 32,
        "answers": b"",
        "late": False,
        "late_penalty_percent": 0.0,
        "submitted_at": now,
        "score": 1.0,
        "max_score": 1.0,
        "score_percent": 100.0,
        "passed": True,
        "results": b"",
        "pending_results": None,
        "graded_at": now,
        "grade_version": 1,
    }


def pending(quiz: pb.Quiz, user_id: str, key: str) -> Pending:
    values = submission_values(quiz, user_id, key)
    attempt = {
        "start_key": f"submit:{key}",
        "shuffle_seed": 7,
        "started_at": values["submitted_at"],
        "max_attempts": 0,
    }
    results = [pb.QuestionResult(question_id="q1", outcome=2, points_awarded=1, points_possible=1)]
    halves = grades.graded_event_halves(SimpleNamespace(**values), quiz, results, "teacher")
    event = grades.EventRow(halves.event_id, grades.GRADED_SUBJECT, halves.head, halves.tail, None)
    loop = asyncio.get_running_loop()
    return Pending(attempt, values, event, loop.create_future(), loop.time())
