"""Writing grades: the worker's automatic grade, the instructor's essay grades, retries of
failed jobs. Every write is a conditional UPDATE on the status and grade version the grader
read, so a job delivered twice (or racing a manual grade) writes one grade; every final grade
puts a SubmissionGraded event in the outbox in the same transaction; watchers are pinged after
the commit."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from google.protobuf.wrappers_pb2 import StringValue
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.events.v1 import quiz_events_pb2 as events_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh.bus import Bus
from mesh.db import Database
from mesh.outbox import Outbox, new_event_id
from svc_quiz import grading, views
from svc_quiz import submission_repository as srepo
from svc_quiz.definitions import Definitions
from svc_quiz.grading_queue import changed_subject

log = logging.getLogger("svc_quiz.grades")

GRADED_SUBJECT = "elearn.quiz.submission_graded"


def answers_digest(answers: list[pb.Answer]) -> bytes:
    data = pb.SubmitQuizRequest(answers=answers).SerializeToString(deterministic=True)
    return hashlib.sha256(data).digest()


def question_types(quiz: pb.Quiz) -> dict[str, pb.QuestionType.ValueType]:
    return {q.question_id: grading.question_type(q) for q in quiz.questions}


class QuizTypes:
    """question_types per quiz object, for a batch of submissions: keyed by identity, as the
    batch holds its quizzes alive while its events are built."""

    def __init__(self) -> None:
        self._by_id: dict[int, dict[str, pb.QuestionType.ValueType]] = {}

    def __call__(self, quiz: pb.Quiz) -> dict[str, pb.QuestionType.ValueType]:
        found = self._by_id.get(id(quiz))
        if found is None:
            found = self._by_id[id(quiz)] = question_types(quiz)
        return found


def graded_event(
    values: Any,
    quiz: pb.Quiz,
    results: list[pb.QuestionResult],
    instructor_id: str,
    types: dict[str, pb.QuestionType.ValueType] | None = None,
) -> tuple[str, events_pb.SubmissionGraded]:
    """The SubmissionGraded event; a batch of one quiz's submissions passes the quiz's
    question_types once (building them was a fifth of the event's CPU)."""
    event_id, now = new_event_id()
    if types is None:
        types = question_types(quiz)
    event = events_pb.SubmissionGraded(
        event_id=event_id,
        occur_time=now,
        submission_id=str(values.id),
        quiz_id=str(values.quiz_id),
        course_id=str(values.course_id),
        user_id=str(values.user_id),
        attempt_number=values.attempt_number,
        quiz_version=values.quiz_version,
        grade_version=values.grade_version,
        score=values.score,
        max_score=values.max_score,
        score_percent=values.score_percent,
        passed=values.passed,
        late=values.late,
        submit_time=views.ts(values.submitted_at),
        instructor_id=instructor_id,
        questions=[
            events_pb.QuestionGrade(
                question_id=r.question_id,
                type=types.get(r.question_id, pb.QUESTION_TYPE_UNSPECIFIED),
                outcome=r.outcome,
                points_awarded=r.points_awarded,
                points_possible=r.points_possible,
            )
            for r in results
        ],
    )
    return event_id, event


def job(submission_id: str) -> StringValue:
    return StringValue(value=submission_id)


class GradeWriter:
    def __init__(self, db: Database, definitions: Definitions, events: Outbox, bus: Bus) -> None:
        self._db = db
        self._definitions = definitions
        self._events = events
        self._bus = bus

    async def announce(self, submission_id: str) -> None:
        """Tell watchers (any replica) the submission changed; best effort, after commit."""
        try:
            await self._bus.nc.publish(changed_subject(submission_id), b"")
        except Exception:
            log.warning("could not announce a submission change", exc_info=True)

    async def add_graded_event(
        self,
        conn: AsyncConnection,
        values: Any,
        quiz: pb.Quiz,
        results: list[pb.QuestionResult],
        instructor_id: str,
    ) -> None:
        event_id, event = graded_event(values, quiz, results, instructor_id)
        await self._events.add(conn, GRADED_SUBJECT, event_id, event)

    async def _write(
        self,
        row: Any,
        quiz: pb.Quiz,
        grade: grading.Grade,
        conn: AsyncConnection,
    ) -> bool:
        """Store `grade` if the row is unchanged since read; True when written."""
        final = not grade.needs_manual
        score = grading.final_score(quiz, grade, row.late_penalty_percent)
        now = datetime.now(UTC)
        results = pb.Submission(results=grade.results).SerializeToString()
        values = {
            "id": str(row.id),
            "status": pb.GRADING_STATUS_GRADED if final else pb.GRADING_STATUS_NEEDS_MANUAL_GRADING,
            "quiz_version": quiz.version,
            "final": final,
            "score": score.score,
            "score_percent": score.percent,
            "passed": score.passed,
            "results": results,
            "graded_at": now,
            "max_score": score.max_score,
            "pending_results": None if final else results,
            "seen_status": row.grading_status,
            "seen_grade_version": row.grade_version,
        }
        version = await srepo.finish_grade(conn, values)
        if version is None:
            return False
        if final:
            event_values = _Values(
                row,
                grade_version=version,
                quiz_version=quiz.version,
                score=score.score,
                max_score=score.max_score,
                score_percent=score.percent,
                passed=score.passed,
            )
            await self.add_graded_event(
                conn, event_values, quiz, grade.results, str(row.instructor_id)
            )
        return True

    async def grade_job(self, submission_id: str) -> bool:
        """Grade one queued submission; False when there was nothing to do (already graded,
        or someone else was first)."""
        async with self._db.read() as conn:
            row = await srepo.submission(conn, submission_id)
        if row is None or row.grading_status not in (
            pb.GRADING_STATUS_PENDING,
            pb.GRADING_STATUS_REGRADING,
        ):
            return False
        quiz = await self._definitions.get(str(row.quiz_id), row.revision)
        answers = list(pb.SubmitQuizRequest.FromString(row.answers).answers)
        grade = grading.grade_submission(quiz, answers)
        if row.results and grade.needs_manual:
            # A regrade keeps the instructor's essay grades.
            old = {r.question_id: r for r in pb.Submission.FromString(row.results).results}
            manual = {
                qid: pb.ManualGrade(
                    question_id=qid, points_awarded=r.points_awarded, feedback=r.feedback
                )
                for qid, r in old.items()
                if r.outcome != grading.UNJUDGED
            }
            grade = grading.apply_manual_grades(quiz, grade.results, manual)
        async with self._db.transaction() as conn:
            written = await self._write(row, quiz, grade, conn)
        if written:
            self._events.notify()
            await self.announce(submission_id)
        return written

    async def fail(self, submission_id: str, reason: str) -> bool:
        async with self._db.transaction() as conn:
            failed = await srepo.mark_failed(conn, submission_id, reason)
        if failed:
            await self.announce(submission_id)
        return failed

    async def manual(
        self, row: Any, quiz: pb.Quiz, grades: list[pb.ManualGrade], conn: AsyncConnection
    ) -> bool:
        """Merge essay grades into a locked submission row (NEEDS_MANUAL_GRADING or GRADED)."""
        source = (
            row.pending_results
            if row.grading_status == pb.GRADING_STATUS_NEEDS_MANUAL_GRADING
            else row.results
        )
        base = list(pb.Submission.FromString(source).results) if source else []
        earlier: dict[str, pb.ManualGrade] = {}
        if base and row.quiz_version != quiz.version:
            # The key changed since these results were written (a waiting essay is not
            # queued for regrading): score the automatic questions with the current key,
            # keeping the essay grades already given.
            earlier = {
                r.question_id: pb.ManualGrade(
                    question_id=r.question_id, points_awarded=r.points_awarded, feedback=r.feedback
                )
                for r in base
                if r.outcome != grading.UNJUDGED
            }
            base = []
        if not base:
            answers = list(pb.SubmitQuizRequest.FromString(row.answers).answers)
            base = grading.grade_submission(quiz, answers).results
        merged = {**earlier, **{g.question_id: g for g in grades}}
        grade = grading.apply_manual_grades(quiz, base, merged)
        return await self._write(row, quiz, grade, conn)


class _Values:
    """A submission row with some fields replaced, for building an event."""

    def __init__(self, row: Any, **changes: Any) -> None:
        self._row = row
        self._changes = changes

    def __getattr__(self, name: str) -> Any:
        if name in self._changes:
            return self._changes[name]
        return getattr(self._row, name)
