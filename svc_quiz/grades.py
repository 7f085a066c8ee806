"""Writing grades: the worker's automatic grade, the instructor's essay grades, retries of
failed jobs. Every write is a conditional UPDATE on the status and grade version the grader
read, so a job delivered twice (or racing a manual grade) writes one grade; every final grade
puts a SubmissionGraded event in the outbox in the same transaction; watchers are pinged after
the commit."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from google.protobuf.wrappers_pb2 import StringValue
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.events.v1 import quiz_events_pb2 as events_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh import tracing
from mesh.bus import Bus
from mesh.db import Database
from mesh.outbox import Outbox, new_event_id
from svc_quiz import grading, views
from svc_quiz import submission_repository as srepo
from svc_quiz.definitions import Definitions
from svc_quiz.grading_queue import changed_subject
from svc_quiz.repository import JOB_SUBJECT

log = logging.getLogger("svc_quiz.grades")

GRADED_SUBJECT = "elearn.quiz.submission_graded"


def answers_digest(answers: list[pb.Answer]) -> bytes:
    data = pb.SubmitQuizRequest(answers=answers).SerializeToString(deterministic=True)
    return hashlib.sha256(data).digest()


def stored_answers(answers: list[pb.Answer]) -> tuple[bytes, bytes]:
    """The answers as stored (serialized) and their answers_digest, from one serialization:
    an Answer has no map fields, so the deterministic serialization is the plain one."""
    data = pb.SubmitQuizRequest(answers=answers).SerializeToString()
    return data, hashlib.sha256(data).digest()


def question_types(quiz: pb.Quiz) -> dict[str, pb.QuestionType.ValueType]:
    return {q.question_id: grading.question_type(q) for q in quiz.questions}


class QuizTypes:
    """question_types per quiz object, kept across submissions: keyed by identity, and each
    entry holds its quiz, so an id is never reused while its entry lives (a revision's
    definition is immutable, and the definition cache hands out one object per revision)."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._max = max_entries
        self._by_id: dict[int, tuple[pb.Quiz, dict[str, pb.QuestionType.ValueType]]] = {}

    def __call__(self, quiz: pb.Quiz) -> dict[str, pb.QuestionType.ValueType]:
        found = self._by_id.get(id(quiz))
        if found is None:
            if len(self._by_id) >= self._max:
                self._by_id.clear()
            found = self._by_id[id(quiz)] = (quiz, question_types(quiz))
        return found[1]


def _graded_fields(values: Any, instructor_id: str) -> dict[str, Any]:
    """The SubmissionGraded fields but its id, time and questions."""
    return {
        "submission_id": str(values.id),
        "quiz_id": str(values.quiz_id),
        "course_id": str(values.course_id),
        "user_id": str(values.user_id),
        "attempt_number": values.attempt_number,
        "quiz_version": values.quiz_version,
        "grade_version": values.grade_version,
        "score": values.score,
        "max_score": values.max_score,
        "score_percent": values.score_percent,
        "passed": values.passed,
        "late": values.late,
        "submit_time": views.ts(values.submitted_at),
        "instructor_id": instructor_id,
    }


def _add_questions(
    event: events_pb.SubmissionGraded,
    quiz: pb.Quiz,
    results: list[pb.QuestionResult],
    types: dict[str, pb.QuestionType.ValueType] | None,
) -> None:
    """The per-question grades, added in place (building them apart and handing the list to
    the constructor copied each one again)."""
    if types is None:
        types = question_types(quiz)
    add = event.questions.add
    for r in results:
        add(
            question_id=r.question_id,
            type=types.get(r.question_id, pb.QUESTION_TYPE_UNSPECIFIED),
            outcome=r.outcome,
            points_awarded=r.points_awarded,
            points_possible=r.points_possible,
        )


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
    fields = _graded_fields(values, instructor_id)
    event = events_pb.SubmissionGraded(event_id=event_id, occur_time=now, **fields)
    _add_questions(event, quiz, results, types)
    return event_id, event


_ATTEMPT_NUMBER = events_pb.SubmissionGraded.DESCRIPTOR.fields_by_name["attempt_number"]
# The key of field attempt_number (varint wire type 0), one byte as its number is below 16.
ATTEMPT_NUMBER_KEY = bytes([_ATTEMPT_NUMBER.number << 3])
_HEAD_FIELDS = tuple(
    f.name
    for f in events_pb.SubmissionGraded.DESCRIPTOR.fields
    if f.number < _ATTEMPT_NUMBER.number and f.name not in ("event_id", "occur_time")
)
_QUESTIONS = events_pb.SubmissionGraded.DESCRIPTOR.fields_by_name["questions"]
_AFTER_QUESTIONS = tuple(
    f.name for f in events_pb.SubmissionGraded.DESCRIPTOR.fields if f.number > _QUESTIONS.number
)


class EventHalves(NamedTuple):
    """A SubmissionGraded event serialized without its attempt_number, cut where that field
    goes: `head + ATTEMPT_NUMBER_KEY + varint(n) + tail` is, byte for byte, the whole event
    serialized with attempt_number n (protobuf writes fields in number order). The group
    commit learns the number inside its one statement, which joins the halves itself."""

    event_id: str
    head: bytes
    tail: bytes

    def joined(self, attempt_number: int) -> bytes:
        return self.head + ATTEMPT_NUMBER_KEY + varint(attempt_number) + self.tail


def graded_event_halves(
    values: Any,
    quiz: pb.Quiz,
    results: list[pb.QuestionResult],
    instructor_id: str,
    types: dict[str, pb.QuestionType.ValueType] | None = None,
    judged: list[grading.Judged] | None = None,
) -> EventHalves:
    """graded_event's event as EventHalves (values.attempt_number is ignored). With `judged`
    (the results' shared wire forms) the questions are joined as bytes, not built: protobuf
    writes fields in number order, so the tail is its fields before `questions`, then the
    questions, then the ones after."""
    event_id, now = new_event_id()
    fields = _graded_fields(values, instructor_id)
    del fields["attempt_number"]
    head = events_pb.SubmissionGraded(
        event_id=event_id, occur_time=now, **{name: fields.pop(name) for name in _HEAD_FIELDS}
    )
    if judged is not None:
        after = events_pb.SubmissionGraded(
            **{name: fields.pop(name) for name in _AFTER_QUESTIONS}
        ).SerializeToString()
        before = events_pb.SubmissionGraded(**fields).SerializeToString()
        tail = before + b"".join(j.in_event for j in judged) + after
        return EventHalves(event_id, head.SerializeToString(), tail)
    message = events_pb.SubmissionGraded(**fields)
    _add_questions(message, quiz, results, types)
    return EventHalves(event_id, head.SerializeToString(), message.SerializeToString())


class EventRow(NamedTuple):
    """A new submission's outbox row before its attempt is numbered: `tail` None means
    `head` is the whole payload, else the payload is EventHalves(event_id, head, tail)
    .joined(number). The traceparent is the caller's: a batch is written by one task, but
    each event continues the trace of the request that caused it."""

    event_id: str
    subject: str
    head: bytes
    tail: bytes | None
    traceparent: str | None

    def payload(self, attempt_number: int) -> bytes:
        if self.tail is None:
            return self.head
        return EventHalves(self.event_id, self.head, self.tail).joined(attempt_number)


def outbox_row(
    values: dict[str, Any], quiz: pb.Quiz, instructor_id: str, types: QuizTypes
) -> EventRow | None:
    """The outbox row of a one-call submission: its SubmissionGraded event when graded
    inline, its grading job when queued, none for essays waiting for the instructor."""
    status = values["grading_status"]
    parent = tracing.current_traceparent()
    if status == pb.GRADING_STATUS_GRADED:
        row = SimpleNamespace(**values)
        results = values[views.GRADED_RESULTS]
        event = graded_event_halves(
            row, quiz, results, instructor_id, types(quiz), values[views.GRADED_JUDGED]
        )
        return EventRow(event.event_id, GRADED_SUBJECT, event.head, event.tail, parent)
    if status == pb.GRADING_STATUS_PENDING:
        payload = job(str(values["id"])).SerializeToString()
        return EventRow(str(uuid.uuid4()), JOB_SUBJECT, payload, None, parent)
    return None


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative int: 7 bits a byte, low bits first, the
    high bit set on every byte but the last."""
    out = bytearray()
    while n > 127:
        out.append(n & 127 | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


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
