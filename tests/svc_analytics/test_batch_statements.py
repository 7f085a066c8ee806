"""A consumer batch costs one statement per table written, whatever its number of events
(issue 14 item 1: executemany sent one statement per row). Counted from the server's replies
on the batch's connection (libpq's protocol trace: one CommandComplete per statement run), on
the real Postgres, since the batch runs on psycopg's own connection in one pipeline.
The rows are checked to have landed, and to stay put when the batch is applied again and in
reverse order, so the bulk statements keep the merges' idempotence."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from psycopg import pq
from sqlalchemy import text

from devstack.stack import Endpoints
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.events.v1 import course_events_pb2 as ce
from elearn.events.v1 import quiz_events_pb2 as qe
from mesh.db import Database
from mesh.outbox import AGGREGATE_SEQ_HEADER
from svc_analytics import repository
from svc_analytics.dashboard import idle_cutoff
from svc_analytics.events import Incoming, decode
from svc_analytics.models import SCHEMA
from svc_analytics.settings import AnalyticsSettings
from tests.svc_analytics.conftest import CORRECT, INCORRECT, ts

T0 = datetime.now(UTC) - timedelta(hours=1)


def _events(learners: int) -> list[Incoming]:
    """A course, and per learner: enrolled, progress in a video, a graded submission of two
    questions, completion; plus the video's metadata. Every table of the read model is hit."""
    course, instructor, video, quiz = (str(uuid.uuid4()) for _ in range(4))
    questions = [str(uuid.uuid4()) for _ in range(2)]
    info = ce.CourseInfo(course_id=course, instructor_id=instructor, title="Bulk")
    out = [Incoming("elearn.course.course_created",
                    ce.CourseCreated(event_id=str(uuid.uuid4()), occur_time=ts(T0),
                                     course=info).SerializeToString(),
                    {AGGREGATE_SEQ_HEADER: "1"})]  # fmt: skip
    video_event = ce.VideoTranscoded(
        event_id=str(uuid.uuid4()), occur_time=ts(T0), video_id=video, course_id=course,
        state=course_pb.TRANSCODING_STATE_SUCCEEDED, title="Intro", position=1,
    )  # fmt: skip
    out.append(Incoming("elearn.course.video_transcoded", video_event.SerializeToString(), {}))
    flushed = ce.VideoProgressFlushed(event_id=str(uuid.uuid4()), occur_time=ts(T0))
    for i in range(learners):
        user = str(uuid.uuid4())
        ids: dict[str, Any] = {"course_id": course, "user_id": user, "instructor_id": instructor}
        enrolled = ce.Enrolled(event_id=str(uuid.uuid4()), occur_time=ts(T0), **ids)
        out.append(Incoming("elearn.course.enrolled", enrolled.SerializeToString(),
                            {AGGREGATE_SEQ_HEADER: "1"}))  # fmt: skip
        done = ce.CourseCompleted(event_id=str(uuid.uuid4()), occur_time=ts(T0), **ids)
        out.append(Incoming("elearn.course.course_completed", done.SerializeToString(), {}))
        flushed.entries.append(ce.VideoProgressEntry(
            user_id=user, course_id=course, video_id=video, position=Duration(seconds=50),
            duration=Duration(seconds=100), course_progress_percent=50.0, update_time=ts(T0),
        ))  # fmt: skip
        outcomes = [CORRECT, INCORRECT if i % 2 else CORRECT]
        graded = qe.SubmissionGraded(
            event_id=str(uuid.uuid4()), occur_time=ts(T0), submission_id=str(uuid.uuid4()),
            quiz_id=quiz, course_id=course, user_id=user, attempt_number=1, grade_version=1,
            score_percent=100.0 if i % 2 == 0 else 50.0, passed=i % 2 == 0,
            questions=[qe.QuestionGrade(question_id=q, outcome=o)
                       for q, o in zip(questions, outcomes, strict=True)],
        )  # fmt: skip
        out.append(Incoming("elearn.quiz.submission_graded", graded.SerializeToString(), {}))
    out.append(Incoming("elearn.course.video_progress_flushed", flushed.SerializeToString(), {}))
    return out


_FIGURES = text("""
SELECT c.enrollment_count, c.completion_count, c.graded_submission_count, c.score_sum,
       (SELECT sum(cardinality(s.question_ids)) FROM submissions s WHERE s.course_id = c.course_id),
       (SELECT count(*) FROM video_progress v WHERE v.course_id = c.course_id),
       (SELECT count(*) FROM videos v WHERE v.course_id = c.course_id),
       (SELECT sum(failing_quiz_count) FROM learners l WHERE l.course_id = c.course_id)
FROM courses c WHERE c.course_id = :course
""")


def _statements(trace: str) -> list[str]:
    """The statements the server completed, from a libpq trace, BEGIN and COMMIT left out."""
    done = [line.split("\t")[-1].strip() for line in trace.splitlines()
            if line.startswith("B\t") and "\tCommandComplete\t" in line]  # fmt: skip
    return [tag for tag in done if tag.strip('"') not in ("BEGIN", "COMMIT")]


async def test_a_batch_is_one_statement_per_table_whatever_its_size(stack: Endpoints) -> None:
    settings = AnalyticsSettings(database_url=stack.database_url)
    async with Database.open(settings, SCHEMA) as db:
        counts: dict[int, int] = {}
        figures: dict[int, list[tuple[Any, ...]]] = {}
        for learners in (1, 60):
            batch = _events(learners)
            course = next(iter(decode(batch).courses))
            with tempfile.TemporaryFile("w+") as trace:
                async with db.transaction_driver("test") as conn:
                    conn.pgconn.trace(trace.fileno())
                    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                    await repository.apply(conn, decode(batch), idle_cutoff())
                    conn.pgconn.untrace()
                trace.seek(0)
                counts[learners] = len(_statements(trace.read()))
            # The same batch again, then reversed: the figures must not move.
            figures[learners] = []
            for again in ([], batch, list(reversed(batch))):
                if again:
                    async with db.transaction_driver("test") as conn:
                        await repository.apply(conn, decode(again), idle_cutoff())
                async with db.transaction() as sa_conn:
                    row = (await sa_conn.execute(_FIGURES, {"course": course})).one()
                figures[learners].append(tuple(row))
    # courses, placeholder courses, enrollments, completions, activity, submissions (with their
    # outcomes, and the graded counters), latest attempts (and failing counts), video progress,
    # videos, counters' refresh, the courses' serialized dashboard entries.
    assert counts == {1: 11, 60: 11}
    half = 30
    assert figures[60] == [(60, 60, 60, 30 * 100.0 + 30 * 50.0, 120, 60, 1, half)] * 3
    assert figures[1] == [(1, 1, 1, 100.0, 2, 1, 1, 0)] * 3
