"""One trace per request, read back from a real Jaeger: a progress update and a quiz submission
sent as JSON through the edge, each followed from Envoy through the service, its Valkey and
Postgres statements, the event on NATS, to its consumers (the grading worker, analytics).

The stack is the `observed` one (tests/e2e/conftest.py), started with observing on (Jaeger,
services and Envoy export spans) and a sampling ratio of 1: the session stack stays as every
other test knows it. Each
request carries a sampled `traceparent` of the test's making, so the trace id is known before
the call and the test asks Jaeger for exactly that trace.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devstack.stack import Endpoints
from tests.conftest import unique_email
from tests.mesh.polling import eventually

pytestmark = pytest.mark.e2e

# The progress flusher writes every 5 s and the relays poll at 0.5 s; the rest is export
# batching (the SDK's 5 s schedule) on a shared box.
TRACE_WAIT_SECONDS = 60.0


@dataclass
class Span:
    service: str
    operation: str
    kind: str
    tags: dict[str, Any]


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def spans_of(jaeger: str, trace_id: str) -> list[Span]:
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(f"{jaeger}/api/traces/{trace_id}")
    if reply.status_code == 404:
        return []
    reply.raise_for_status()
    found = []
    for trace in reply.json()["data"] or ():
        processes = trace["processes"]
        for span in trace["spans"]:
            tags = {t["key"]: t["value"] for t in span["tags"]}
            found.append(
                Span(
                    processes[span["processID"]]["serviceName"],
                    span["operationName"],
                    str(tags.get("span.kind", "")),
                    tags,
                )
            )
    return found


async def wait_for_trace(jaeger: str, trace_id: str, *wanted: tuple[str | None, str]) -> list[Span]:
    """Poll Jaeger until the trace holds a span of each (service, operation) in `wanted`; a
    service of None matches any (an outbox row is published by whichever replica's relay
    claims it first: the quiz service and its worker share one outbox)."""
    spans: list[Span] = []

    async def complete() -> bool:
        nonlocal spans
        spans = await spans_of(jaeger, trace_id)
        present = {(s.service, s.operation) for s in spans}
        operations = {s.operation for s in spans}
        return all(
            op in operations if service is None else (service, op) in present
            for service, op in wanted
        )

    try:
        await eventually(complete, within=TRACE_WAIT_SECONDS, every=0.5)
    except AssertionError:
        have = sorted({(s.service, s.operation) for s in spans})
        raise AssertionError(f"trace {trace_id} lacks some of {wanted}; it has {have}") from None
    return spans


def has_db_span(spans: list[Span], service: str, system: str) -> bool:
    return any(s.service == service and s.tags.get("db.system") == system for s in spans)


@dataclass
class Setup:
    edge: str
    teacher: dict[str, str]
    student: dict[str, str]
    course_id: str


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _ok(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


@pytest.fixture(scope="module")
def setup(observed: Endpoints) -> Setup:
    """A published course (the admin is an instructor too) with a student enrolled."""
    edge = f"http://{observed.edge}"
    with httpx.Client(base_url=edge, timeout=10) as http:
        admin = _ok(
            http.post(
                "/api/auth/login",
                json={"email": observed.admin_email, "password": observed.admin_password},
            )
        )["tokens"]["accessToken"]
        email = unique_email("traced")
        _ok(
            http.post(
                "/api/auth/register",
                json={"email": email, "password": "correct horse", "displayName": "Tracy",
                      "idempotencyKey": uuid.uuid4().hex},
            )
        )  # fmt: skip
        student = _ok(
            http.post("/api/auth/login", json={"email": email, "password": "correct horse"})
        )["tokens"]["accessToken"]
        course = _ok(
            http.post(
                "/api/courses",
                headers=_auth(admin),
                json={"course": {"title": "Traced", "description": "Followed end to end",
                                 "category": "ops", "level": "COURSE_LEVEL_BEGINNER",
                                 "language": "en"},
                      "idempotencyKey": uuid.uuid4().hex},
            )
        )["course"]["courseId"]  # fmt: skip
        _ok(http.post(f"/api/courses/{course}/publish", headers=_auth(admin), json={}))
        _ok(http.post(f"/api/courses/{course}/enroll", headers=_auth(student), json={}))
    return Setup(edge, _auth(admin), _auth(student), course)


def send_progress_update(setup: Setup) -> str:
    """A video of the course and one progress update on it; returns the update's trace id."""
    with httpx.Client(base_url=setup.edge, timeout=10) as http:
        video = _ok(
            http.post(
                f"/api/courses/{setup.course_id}/videos",
                headers=setup.teacher,
                json={"video": {"title": "Spans", "duration": "300s"},
                      "idempotencyKey": uuid.uuid4().hex},
            )
        )["video"]["videoId"]  # fmt: skip
        trace_id, parent = traceparent()
        _ok(
            http.put(
                f"/api/videos/{video}/progress",
                headers={**setup.student, "traceparent": parent},
                json={"position": "42s", "watched": "42s"},
            )
        )
    return trace_id


async def test_a_progress_update_is_one_trace_from_the_edge_to_analytics(
    observed: Endpoints, setup: Setup
) -> None:
    trace_id = send_progress_update(setup)
    spans = await wait_for_trace(
        observed.jaeger_ui,
        trace_id,
        ("envoy", "ingress"),
        ("course", "/elearn.course.v1.CourseService/UpdateVideoProgress"),
        ("progress-flusher", "progress flush"),
        # Published by whichever relay claims the row first: the flusher's or a course replica's.
        (None, "elearn.course.video_progress_flushed publish"),
        ("analytics", "analytics process"),
    )
    assert has_db_span(spans, "course", "redis"), "the update's Valkey commands are missing"
    flush_sql = has_db_span(spans, "progress-flusher", "postgresql")
    assert flush_sql, "the flush's statements are missing"
    consumer = next(s for s in spans if s.operation == "analytics process")
    assert consumer.kind == "consumer"
    assert consumer.tags["messaging.destination.name"] == "elearn.course.video_progress_flushed"


def submit_quiz(setup: Setup) -> str:
    """A published quiz graded by the worker, one attempt submitted; returns its trace id."""
    with httpx.Client(base_url=setup.edge, timeout=10) as http:
        # A regex answer is graded by the worker, not inline: the trace crosses the job queue.
        quiz = _ok(
            http.post(
                "/api/quizzes",
                headers=setup.teacher,
                json={"quiz": {"courseId": setup.course_id, "title": "Traced quiz",
                               "passingScorePercent": 50,
                               "questions": [{"prompt": "Spell it", "points": 1, "shortAnswer": {
                                   "acceptedAnswers": [{"text": "colou?r",
                                                        "matchMode": "ANSWER_MATCH_MODE_REGEX"}]
                               }}]},
                      "idempotencyKey": uuid.uuid4().hex},
            )
        )["quiz"]["quizId"]  # fmt: skip
        _ok(http.post(f"/api/quizzes/{quiz}/publish", headers=setup.teacher, json={}))
        attempt = _ok(
            http.post(
                f"/api/quizzes/{quiz}/attempts",
                headers=setup.student,
                json={"idempotencyKey": uuid.uuid4().hex},
            )
        )["attempt"]
        trace_id, parent = traceparent()
        question = attempt["questions"][0]["questionId"]
        _ok(
            http.post(
                f"/api/quizzes/{quiz}/submit",
                headers={**setup.student, "traceparent": parent},
                json={"attemptId": attempt["attemptId"],
                      "answers": [{"questionId": question, "text": "Color"}],
                      "idempotencyKey": uuid.uuid4().hex},
            )
        )  # fmt: skip
    return trace_id


async def test_a_quiz_submission_is_one_trace_through_the_grading_worker_to_analytics(
    observed: Endpoints, setup: Setup
) -> None:
    trace_id = submit_quiz(setup)
    spans = await wait_for_trace(
        observed.jaeger_ui,
        trace_id,
        ("envoy", "ingress"),
        ("quiz", "/elearn.quiz.v1.QuizService/SubmitQuiz"),
        (None, "quizgrade.jobs publish"),
        ("quiz-worker", "grade"),
        (None, "elearn.quiz.submission_graded publish"),
        ("analytics", "analytics process"),
    )
    assert has_db_span(spans, "quiz", "postgresql"), "the submission's statements are missing"
    assert has_db_span(spans, "quiz-worker", "postgresql"), "the grade's statements are missing"
    grade = next(s for s in spans if s.operation == "grade")
    assert grade.kind == "consumer" and grade.tags["messaging.destination.name"] == "quizgrade.jobs"
