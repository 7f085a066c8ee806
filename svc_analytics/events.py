"""Decode a batch of stream messages into row changes, merged within the batch by the same
rules the upserts apply (newest version wins, furthest position wins), so one statement per
table never touches a row twice. Pure: no I/O, unit-tested on its own.

Ids stay the canonical text of their UUID (validated, never turned into `uuid.UUID`): that
text sorts as the UUID does, and the repository passes it on to Postgres as is. A graded
submission keeps its per-question outcomes as three joined strings (question ids, positions,
't'/'f'), expanded into answer rows server-side: building and dumping a row of seven values
per question was most of the consumer's CPU in an exam rush of 20-question quizzes."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from google.protobuf.message import DecodeError, Message

from elearn.events.v1 import course_events_pb2 as ce
from elearn.events.v1 import quiz_events_pb2 as qe
from elearn.quiz.v1 import quiz_service_pb2 as quiz
from mesh.outbox import AGGREGATE_SEQ_HEADER

log = logging.getLogger("svc_analytics.events")

_CORRECT = quiz.QUESTION_OUTCOME_CORRECT

SUBJECTS: dict[str, type[Message]] = {
    "elearn.course.course_created": ce.CourseCreated,
    "elearn.course.course_updated": ce.CourseUpdated,
    "elearn.course.course_published": ce.CoursePublished,
    "elearn.course.course_archived": ce.CourseArchived,
    "elearn.course.enrolled": ce.Enrolled,
    "elearn.course.unenrolled": ce.Unenrolled,
    "elearn.course.course_completed": ce.CourseCompleted,
    "elearn.course.video_progress_flushed": ce.VideoProgressFlushed,
    "elearn.course.video_transcoded": ce.VideoTranscoded,
    "elearn.quiz.submission_graded": qe.SubmissionGraded,
}


@dataclass(frozen=True)
class Incoming:
    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass
class Changes:
    """Row values per table, keyed by primary key (ids as canonical text); a submission's row
    carries its answers (see `_outcomes`); `occurred` has each event's creation time (for the
    freshness histogram)."""

    courses: dict[str, dict[str, Any]] = field(default_factory=dict)
    enrollments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    completions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    activity: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    submissions: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    progress: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    occurred: list[datetime] = field(default_factory=list)

    @property
    def touched_courses(self) -> set[str]:
        ids = set(self.courses)
        for table in (self.enrollments, self.completions, self.activity):
            ids.update(k[0] for k in table)
        ids.update(s["course_id"] for s in self.submissions.values())
        return ids


# The canonical form (what str(UUID) gives); anything else goes through UUID() once.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CANONICAL_LIST = re.compile(rf"(?:{_CANONICAL.pattern},)*{_CANONICAL.pattern}")
_is_canonical = _CANONICAL.fullmatch
# Positions "0,1,…,n-1" of a quiz's n questions, joined once per n.
_POSITIONS: dict[int, str] = {}


def _id(value: str) -> str:
    """The id's canonical text; ValueError when it is not a UUID."""
    return value if _is_canonical(value) else str(UUID(value))


def _positions(n: int) -> str:
    joined = _POSITIONS.get(n)
    if joined is None:
        joined = _POSITIONS.setdefault(n, ",".join(map(str, range(n))))
    return joined


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Timestamp's valid range, 0001-01-01 to 9999-12-31 (ToDatetime raises ValueError outside it).
_FIRST_SECOND, _LAST_SECOND = -62_135_596_800, 253_402_300_799


def _ts(value: Any) -> datetime:
    """Timestamp.ToDatetime(tzinfo=UTC) for a valid timestamp, at a fraction of its cost (it
    was the dearest step of decoding a grade); anything else goes through it, to fail alike."""
    seconds, nanos = value.seconds, value.nanos
    if _FIRST_SECOND <= seconds <= _LAST_SECOND and 0 <= nanos < 1_000_000_000:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    return value.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def _seq(headers: dict[str, str]) -> int:
    try:
        return int(headers.get(AGGREGATE_SEQ_HEADER, "0"))
    except ValueError:
        return 0


def _newer(new: dict[str, Any], old: dict[str, Any] | None, *keys: str) -> bool:
    return old is None or tuple(new[k] for k in keys) > tuple(old[k] for k in keys)


def _keep(table: dict[Any, dict[str, Any]], key: Any, row: dict[str, Any], *keys: str) -> None:
    if _newer(row, table.get(key), *keys):
        table[key] = row


def _ms(d: Any) -> int:
    return int(d.seconds * 1000 + d.nanos // 1_000_000)


def decode(batch: Iterable[Incoming]) -> Changes:
    out = Changes()
    for msg in batch:
        kind = SUBJECTS.get(msg.subject)
        if kind is None:
            continue
        try:
            event: Any = kind.FromString(msg.data)
        except DecodeError:
            # A message that never decodes would block the consumer forever if it failed the
            # batch; it is logged and skipped instead.
            log.error("undecodable event skipped", extra={"subject": msg.subject})
            continue
        try:
            at = _ts(event.occur_time)
            _apply(out, event, _seq(msg.headers), at)
        except ValueError:
            # Ids that are not UUIDs (or a time out of range): the publisher's bug, never fixed
            # by a redelivery.
            log.error("event with malformed ids skipped", extra={"subject": msg.subject})
            continue
        out.occurred.append(at)
    return out


def _apply(out: Changes, event: Any, seq: int, at: datetime) -> None:
    if isinstance(
        event, ce.CourseCreated | ce.CourseUpdated | ce.CoursePublished | ce.CourseArchived
    ):
        info = event.course
        course = _id(info.course_id)
        row: dict[str, Any] = {
            "course_id": course,
            "instructor_id": _id(info.instructor_id),
            "title": info.title,
            "created_at": at if isinstance(event, ce.CourseCreated) else None,
            "info_seq": seq,
            "info_at": at,
        }
        old = out.courses.get(course)
        created = row["created_at"] or (old["created_at"] if old else None)
        _keep(out.courses, course, row, "info_seq", "info_at")
        out.courses[course]["created_at"] = created
    elif isinstance(event, ce.Enrolled | ce.Unenrolled):
        key = (_id(event.course_id), _id(event.user_id))
        enrolled = isinstance(event, ce.Enrolled)
        row = {
            "course_id": key[0],
            "user_id": key[1],
            "instructor_id": _id(event.instructor_id),
            "active": enrolled,
            "enroll_seq": seq,
            "enroll_at": at,
            "enrolled_at": at if enrolled else None,
        }
        _keep(out.enrollments, key, row, "enroll_seq", "enroll_at")
    elif isinstance(event, ce.CourseCompleted):
        key = (_id(event.course_id), _id(event.user_id))
        out.completions[key] = {
            "course_id": key[0],
            "user_id": key[1],
            "instructor_id": _id(event.instructor_id),
            "at": at,
        }
    elif isinstance(event, ce.VideoProgressFlushed):
        for entry in event.entries:
            _progress(out, entry)
    elif isinstance(event, ce.VideoTranscoded):
        if event.state == 0 or (not event.title and not event.position):
            return
        row = {
            "video_id": _id(event.video_id),
            "course_id": _id(event.course_id),
            "title": event.title,
            "position": event.position,
            "info_at": at,
        }
        _keep(out.videos, row["video_id"], row, "info_at")
    elif isinstance(event, qe.SubmissionGraded):
        _graded(out, event, at)


def _touch(out: Changes, course: str, user: str, when: datetime, progress: float | None) -> None:
    key = (course, user)
    row = out.activity.setdefault(
        key,
        {"course_id": course, "user_id": user, "last_activity_at": when, "progress_percent": None,
         "progress_at": None},
    )  # fmt: skip
    row["last_activity_at"] = max(row["last_activity_at"], when)
    if progress is not None and (row["progress_at"] is None or when >= row["progress_at"]):
        row["progress_percent"] = progress
        row["progress_at"] = when


def _progress(out: Changes, entry: ce.VideoProgressEntry) -> None:
    course, user, video = _id(entry.course_id), _id(entry.user_id), _id(entry.video_id)
    when = _ts(entry.update_time)
    _touch(out, course, user, when, float(entry.course_progress_percent))
    key = (course, video, user)
    old = out.progress.get(key)
    row = {
        "course_id": course,
        "video_id": video,
        "user_id": user,
        "furthest_ms": _ms(entry.position),
        "duration_ms": _ms(entry.duration),
        "completed": entry.completed,
    }
    if old is not None:
        row["furthest_ms"] = max(row["furthest_ms"], old["furthest_ms"])
        row["duration_ms"] = max(row["duration_ms"], old["duration_ms"])
        row["completed"] = row["completed"] or old["completed"]
    out.progress[key] = row


def _graded(out: Changes, event: qe.SubmissionGraded, at: datetime) -> None:
    course, user, quiz_id = _id(event.course_id), _id(event.user_id), _id(event.quiz_id)
    submission = _id(event.submission_id)
    submitted = _ts(event.submit_time) if event.HasField("submit_time") else at
    row = {
        "submission_id": submission,
        "course_id": course,
        # Lets the batch create the course's row to count the grade on (repository.apply).
        "instructor_id": _id(event.instructor_id) if event.instructor_id else None,
        "quiz_id": quiz_id,
        "user_id": user,
        "attempt_number": event.attempt_number,
        "grade_version": event.grade_version,
        "score_percent": event.score_percent,
        "passed": event.passed,
        "graded_at": at,
        **_outcomes(event.questions),
    }
    # After every id is validated: an event with a malformed one leaves nothing behind.
    _touch(out, course, user, submitted, None)
    if not _newer(row, out.submissions.get(submission), "grade_version"):
        return
    out.submissions[submission] = row
    _keep(
        out.attempts,
        (course, user, quiz_id),
        {k: row[k] for k in ("course_id", "user_id", "quiz_id", "attempt_number",
                             "grade_version", "passed")},
        "attempt_number",
        "grade_version",
    )  # fmt: skip


def _outcomes(questions: Sequence[qe.QuestionGrade]) -> dict[str, Any]:
    """The answers of one submission as `question_ids` (ids joined by commas), `positions`
    (joined likewise) and `correct` ('t' or 'f' per question); a question listed twice keeps
    its last outcome and position, as one row per (submission, question) must."""
    ids = [q.question_id for q in questions]
    joined = ",".join(ids)
    correct = "".join(["t" if q.outcome == _CORRECT else "f" for q in questions])
    if ids and not _CANONICAL_LIST.fullmatch(joined):
        ids = [_id(i) for i in ids]
        joined = ",".join(ids)
    if len(set(ids)) == len(ids):
        return {"question_ids": joined, "positions": _positions(len(ids)), "correct": correct}
    last = {qid: position for position, qid in enumerate(ids)}
    kept = sorted(last.values())
    return {
        "question_ids": ",".join(ids[p] for p in kept),
        "positions": ",".join(map(str, kept)),
        "correct": "".join(correct[p] for p in kept),
    }
