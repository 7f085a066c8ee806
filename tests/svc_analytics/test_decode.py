"""Decoding a batch merges rows by the upserts' own rules, so one statement per table never
touches a row twice and a batch's order does not matter (pure, no servers)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from elearn.events.v1 import course_events_pb2 as ce
from elearn.events.v1 import quiz_events_pb2 as qe
from mesh.outbox import AGGREGATE_SEQ_HEADER
from svc_analytics.events import Incoming, _ts, decode
from tests.svc_analytics.conftest import CORRECT, INCORRECT, ts

T0 = datetime(2026, 12, 1, tzinfo=UTC)
COURSE, USER, INSTRUCTOR, VIDEO, QUIZ = (str(uuid.uuid4()) for _ in range(5))


def _enrollment(enrolled: bool, seq: int) -> Incoming:
    kind = ce.Enrolled if enrolled else ce.Unenrolled
    event = kind(event_id=str(uuid.uuid4()), occur_time=ts(T0 + timedelta(seconds=seq)),
                 course_id=COURSE, user_id=USER, instructor_id=INSTRUCTOR)  # fmt: skip
    subject = "elearn.course.enrolled" if enrolled else "elearn.course.unenrolled"
    return Incoming(subject, event.SerializeToString(), {AGGREGATE_SEQ_HEADER: str(seq)})


def _progress(position: int, completed: bool, minute: int) -> Incoming:
    entry = ce.VideoProgressEntry(
        user_id=USER, course_id=COURSE, video_id=VIDEO, position=Duration(seconds=position),
        duration=Duration(seconds=100), completed=completed, course_progress_percent=minute,
        update_time=ts(T0 + timedelta(minutes=minute)),
    )  # fmt: skip
    event = ce.VideoProgressFlushed(event_id=str(uuid.uuid4()), occur_time=ts(T0), entries=[entry])
    return Incoming("elearn.course.video_progress_flushed", event.SerializeToString(), {})


def _grade(submission: str, version: int, attempt: int, passed: bool) -> Incoming:
    event = qe.SubmissionGraded(
        event_id=str(uuid.uuid4()), occur_time=ts(T0), submission_id=submission, quiz_id=QUIZ,
        course_id=COURSE, user_id=USER, attempt_number=attempt, grade_version=version,
        score_percent=10.0 * version, passed=passed,
    )  # fmt: skip
    return Incoming("elearn.quiz.submission_graded", event.SerializeToString(), {})


def test_any_order_of_a_batch_decodes_to_the_same_rows() -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    batch = [
        _enrollment(True, 1), _enrollment(False, 2), _enrollment(True, 3),
        _progress(80, False, 1), _progress(40, True, 2),
        _grade(first, 1, 1, False), _grade(first, 2, 1, True), _grade(second, 1, 2, False),
    ]  # fmt: skip
    outcomes = set()
    for order in itertools.islice(itertools.permutations(batch), 0, None, 997):
        ch = decode(order)
        key = (COURSE, USER)
        progress = next(iter(ch.progress.values()))
        outcomes.add((
            ch.enrollments[key]["active"], ch.enrollments[key]["enroll_seq"],
            progress["furthest_ms"], progress["completed"], ch.activity[key]["progress_percent"],
            ch.submissions[first]["grade_version"],
            next(iter(ch.attempts.values()))["attempt_number"],
            next(iter(ch.attempts.values()))["passed"],
        ))  # fmt: skip
    # Enrolled again (seq 3) wins; the furthest position and completion stick; the newest
    # progress percent; the regrade (version 2); the latest attempt (2, failing).
    assert outcomes == {(True, 3, 80_000, True, 2.0, 2, 2, False)}


def test_unknown_subjects_and_undecodable_payloads_are_skipped() -> None:
    ch = decode([
        Incoming("elearn.user.user_registered", b"whatever", {}),
        Incoming("elearn.course.enrolled", b"\xff\xff\xff", {}),
        Incoming("elearn.course.enrolled", ce.Enrolled(course_id="nope").SerializeToString(), {}),
    ])  # fmt: skip
    assert not ch.enrollments and not ch.occurred


def _graded_with(submission: str, questions: list[tuple[str, int]], **ids: str) -> Incoming:
    event = qe.SubmissionGraded(
        event_id=str(uuid.uuid4()), occur_time=ts(T0), submission_id=submission,
        quiz_id=ids.get("quiz", QUIZ), course_id=ids.get("course", COURSE), user_id=USER,
        attempt_number=1, grade_version=1, score_percent=50.0,
        questions=[qe.QuestionGrade(question_id=q, outcome=o) for q, o in questions],
    )  # fmt: skip
    return Incoming("elearn.quiz.submission_graded", event.SerializeToString(), {})


def test_ids_in_any_uuid_spelling_decode_to_the_canonical_text() -> None:
    submission, question = uuid.uuid4(), uuid.uuid4()
    spelled = f"{{{str(question).upper()}}}"  # braces and capitals: a UUID all the same
    ch = decode([_graded_with(str(submission).upper(), [(spelled, CORRECT)],
                              course=f"urn:uuid:{COURSE}")])  # fmt: skip
    row = ch.submissions[str(submission)]
    assert (row["course_id"], row["question_ids"], row["correct"]) == (COURSE, str(question), "t")
    assert (COURSE, USER) in ch.activity


def test_answers_keep_each_question_once_with_its_last_outcome_and_position() -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    submission = str(uuid.uuid4())
    ch = decode([_graded_with(submission, [(a, CORRECT), (b, INCORRECT), (a, INCORRECT),
                                           (c, CORRECT)])])  # fmt: skip
    row = ch.submissions[submission]
    answers = list(zip(row["question_ids"].split(","), row["positions"].split(","),
                       row["correct"], strict=True))  # fmt: skip
    assert answers == [(b, "1", "f"), (a, "2", "f"), (c, "3", "t")]
    plain = decode([_graded_with(submission, [(a, CORRECT), (b, INCORRECT)])])
    assert plain.submissions[submission]["positions"] == "0,1"


def test_a_grade_with_a_malformed_question_id_is_skipped_whole() -> None:
    ch = decode([_graded_with(str(uuid.uuid4()), [(str(uuid.uuid4()), CORRECT), ("q-2", CORRECT)])])
    assert not ch.submissions and not ch.activity and not ch.occurred


def test_event_times_decode_as_protobuf_converts_them() -> None:
    for seconds, nanos in [(0, 0), (1_796_420_045, 999_999_999), (-1, 1), (253_402_300_799, 5),
                           (-62_135_596_800, 0), (1_700_000_000, 1_500)]:  # fmt: skip
        stamp = Timestamp(seconds=seconds, nanos=nanos)
        assert _ts(stamp) == stamp.ToDatetime(tzinfo=UTC)
        assert _ts(stamp).utcoffset() == timedelta(0)
    for seconds, nanos in [(253_402_300_800, 0), (0, -1), (0, 1_000_000_000)]:
        with pytest.raises(ValueError):
            _ts(Timestamp(seconds=seconds, nanos=nanos))
