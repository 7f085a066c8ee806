"""The contract's size bounds fit the transport: the largest valid quiz and submission pass
the edge's 1 MiB JSON body limit (and the 4 MiB gRPC limit behind it), written in 4-byte
UTF-8 characters, the worst case; one character more is refused by the service with
INVALID_ARGUMENT naming the bound, not by the transport."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from devstack.runstate import Endpoints
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from svc_quiz import validation
from tests.people import Person
from tests.svc_quiz.conftest import Classroom, new_quiz

WIDE = "\U0001f600"  # four bytes in UTF-8
EDGE_JSON_LIMIT = 1 << 20


def _quiz_body(course_id: str, extra: int) -> dict[str, Any]:
    """100 single-choice questions of 20 options whose text totals the bound (plus extra)."""
    ids = [f"o{i}" for i in range(20)]
    option_text = 40
    per_question_options = sum(len(i) for i in ids) + 20 * option_text
    description = 9_800
    prompt = (validation.MAX_QUIZ_TEXT - 200 - description - 100 * per_question_options) // 100
    used = 200 + description + 100 * (prompt + per_question_options)
    questions = [
        {
            "prompt": WIDE * prompt,
            "points": 1,
            "singleChoice": {
                "options": [
                    {"optionId": oid, "text": WIDE * option_text, "correct": j == 0}
                    for j, oid in enumerate(ids)
                ]
            },
        }
        for _ in range(100)
    ]
    description += validation.MAX_QUIZ_TEXT - used + extra
    return {
        "quiz": {
            "courseId": course_id,
            "title": WIDE * 200,
            "description": WIDE * description,
            "questions": questions,
        },
        "idempotencyKey": uuid.uuid4().hex,
    }


async def _post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], who: Person
) -> httpx.Response:
    data = json.dumps(body, ensure_ascii=False).encode()
    assert len(data) < EDGE_JSON_LIMIT
    return await client.post(
        path,
        content=data,
        headers={"authorization": f"Bearer {who.token}", "content-type": "application/json"},
    )


async def test_largest_valid_quiz_passes_the_edge_and_one_more_character_is_refused(
    stack: Endpoints, classroom: Classroom
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{stack.edge}", timeout=30) as client:
        largest = _quiz_body(classroom.course_id, 0)
        created = await _post(client, "/api/quizzes", largest, classroom.instructor)
        assert created.status_code == 200, created.text[:500]
        quiz = created.json()["quiz"]
        assert len(quiz["questions"]) == 100
        read = await client.get(
            f"/api/quizzes/{quiz['quizId']}/definition",
            headers={"authorization": f"Bearer {classroom.instructor.token}"},
        )
        assert read.status_code == 200
        assert read.json()["quiz"]["description"] == largest["quiz"]["description"]

        too_big = await _post(
            client, "/api/quizzes", _quiz_body(classroom.course_id, 1), classroom.instructor
        )
        assert too_big.status_code == 400, too_big.text[:500]
        assert "150000" in too_big.text


async def test_largest_valid_submission_passes_the_edge_and_one_more_character_is_refused(
    stack: Endpoints, classroom: Classroom, quizzes: QuizServiceStub
) -> None:
    essays = [
        pb.Question(prompt=f"Essay {i}", points=1, essay=pb.EssayQuestion(max_length=10_000))
        for i in range(100)
    ]
    quiz = await new_quiz(quizzes, classroom, essays)
    student = await classroom.student()
    per_answer = validation.MAX_ANSWER_TEXT // 100

    async def body(extra: int) -> dict[str, Any]:
        started = await quizzes.StartAttempt(
            pb.StartAttemptRequest(quiz_id=quiz.quiz_id, idempotency_key=uuid.uuid4().hex),
            metadata=student.auth,
        )
        answers = [
            {"questionId": q.question_id, "text": WIDE * (per_answer + (extra if i == 0 else 0))}
            for i, q in enumerate(quiz.questions)
        ]
        return {
            "attemptId": started.attempt.attempt_id,
            "answers": answers,
            "idempotencyKey": uuid.uuid4().hex,
        }

    async with httpx.AsyncClient(base_url=f"http://{stack.edge}", timeout=30) as client:
        path = f"/api/quizzes/{quiz.quiz_id}/submit"
        too_big = await _post(client, path, await body(1), student)
        assert too_big.status_code == 400, too_big.text[:500]
        assert "100000" in too_big.text
        largest = await _post(client, path, await body(0), student)
        assert largest.status_code == 200, largest.text[:500]
        submission = largest.json()["submission"]
        # 100 questions is past the inline-grading bound: queued for a worker.
        assert submission["gradingStatus"] == "GRADING_STATUS_PENDING"
        assert sum(len(a["text"]) for a in submission["answers"]) == validation.MAX_ANSWER_TEXT
