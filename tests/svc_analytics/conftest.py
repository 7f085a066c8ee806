"""Analytics test helpers: publish real protobuf events into the real JetStream stream with the
headers the outbox relay sets, and read the dashboards over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import nats
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext

from devstack.stack import Endpoints
from elearn.analytics.v1 import analytics_service_pb2_grpc
from elearn.events.v1 import course_events_pb2 as ce
from elearn.events.v1 import quiz_events_pb2 as qe
from elearn.quiz.v1 import quiz_service_pb2 as quiz
from mesh.outbox import AGGREGATE_ID_HEADER, AGGREGATE_SEQ_HEADER

# The quiz tests' fixtures (a published course with enrolled students, quiz stubs, people with
# tokens), reused to seed through the course and quiz services' public APIs.
from tests.svc_quiz.conftest import (  # noqa: F401
    classroom,
    quiz_channel,
    quizzes,
)

CORRECT = quiz.QUESTION_OUTCOME_CORRECT
INCORRECT = quiz.QUESTION_OUTCOME_INCORRECT


def ts(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


def now() -> datetime:
    return datetime.now(UTC)


def days_ago(days: float) -> datetime:
    return now() - timedelta(days=days)


class Publisher:
    """Publishes events the way the outbox relay does (subject, Nats-Msg-Id, aggregate seq)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def send(
        self, subject: str, event: Message, *, aggregate: str = "", seq: int = 0,
        msg_id: str | None = None,
    ) -> None:  # fmt: skip
        headers = {"Nats-Msg-Id": msg_id or event.event_id}  # type: ignore[attr-defined]
        if aggregate:
            headers[AGGREGATE_ID_HEADER] = aggregate
            headers[AGGREGATE_SEQ_HEADER] = str(seq)
        await self.js.publish(subject, event.SerializeToString(), headers=headers)

    async def course(self, course: str, instructor: str, title: str, seq: int = 1) -> None:
        info = ce.CourseInfo(course_id=course, instructor_id=instructor, title=title)
        event = ce.CourseCreated(event_id=str(uuid.uuid4()), occur_time=ts(now()), course=info)
        await self.send("elearn.course.course_created", event, aggregate=course, seq=seq)

    async def enroll(
        self, course: str, instructor: str, user: str, *, at: datetime | None = None, seq: int = 1,
        enrolled: bool = True,
    ) -> str:  # fmt: skip
        fields: dict[str, Any] = {
            "event_id": str(uuid.uuid4()), "occur_time": ts(at or now()),
            "enrollment_id": str(uuid.uuid5(uuid.NAMESPACE_URL, course + user)),
            "course_id": course, "instructor_id": instructor, "user_id": user,
        }  # fmt: skip
        if enrolled:
            event: Message = ce.Enrolled(**fields)
            subject = "elearn.course.enrolled"
        else:
            event = ce.Unenrolled(**fields)
            subject = "elearn.course.unenrolled"
        await self.send(subject, event, aggregate=fields["enrollment_id"], seq=seq)
        return str(fields["event_id"])

    async def complete(self, course: str, instructor: str, user: str) -> None:
        event = ce.CourseCompleted(
            event_id=str(uuid.uuid4()), occur_time=ts(now()), course_id=course,
            instructor_id=instructor, user_id=user,
            enrollment_id=str(uuid.uuid5(uuid.NAMESPACE_URL, course + user)),
        )  # fmt: skip
        await self.send("elearn.course.course_completed", event)

    async def progress(
        self, entries: list[tuple[str, str, str, int, int, bool, float, datetime]]
    ) -> None:
        """entries: (course, user, video, position s, duration s, completed, percent, at)."""
        event = ce.VideoProgressFlushed(event_id=str(uuid.uuid4()), occur_time=ts(now()))
        for course, user, video, position, duration, completed, percent, at in entries:
            event.entries.append(
                ce.VideoProgressEntry(
                    user_id=user, course_id=course, video_id=video,
                    position=Duration(seconds=position), watched=Duration(seconds=position),
                    duration=Duration(seconds=duration), completed=completed,
                    course_progress_percent=percent, update_time=ts(at),
                )
            )  # fmt: skip
        await self.send("elearn.course.video_progress_flushed", event)

    async def graded(
        self, course: str, user: str, quiz_id: str, score: float, passed: bool,
        outcomes: list[tuple[str, quiz.QuestionOutcome.ValueType]], *,
        submission: str | None = None, attempt: int = 1, version: int = 1,
        at: datetime | None = None,
    ) -> str:  # fmt: skip
        submission = submission or str(uuid.uuid4())
        event = qe.SubmissionGraded(
            event_id=str(uuid.uuid4()), occur_time=ts(now()), submission_id=submission,
            quiz_id=quiz_id, course_id=course, user_id=user, attempt_number=attempt,
            grade_version=version, score=score, max_score=100, score_percent=score,
            passed=passed, submit_time=ts(at or now()),
            questions=[qe.QuestionGrade(question_id=q, outcome=o) for q, o in outcomes],
        )  # fmt: skip
        await self.send("elearn.quiz.submission_graded", event, aggregate=submission, seq=version)
        return submission


@pytest_asyncio.fixture(loop_scope="session")
async def publisher(stack: Endpoints) -> AsyncIterator[Publisher]:
    nc = await nats.connect(stack.nats_url)
    try:
        yield Publisher(nc.jetstream())
    finally:
        await nc.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def analytics(
    stack: Endpoints,
) -> AsyncIterator[analytics_service_pb2_grpc.AnalyticsServiceStub]:
    async with grpc.aio.insecure_channel(stack.services["analytics"][0]) as channel:
        yield analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
