"""Submissions: SubmitQuiz (graded inline when cheap, else queued), reading them back under
the quiz's results visibility, essays graded by hand, retries, and WatchSubmission.

SubmitQuiz on the hot path is one read (the attempt joined with its quiz's current revision;
the definition comes from the in-process cache), then one transaction of two statements: the
submission insert that also closes the attempt, and the outbox row (the SubmissionGraded
event, or the grading job). A one-call submission (no attempt id: the exam rush) goes
through the group commit (svc_quiz.group_commit): concurrent calls share one statement.
Repeats of one idempotency key meet at the unique index: one insert wins, the others find its
row and return it. Validation and grading use the definition's index (grading.QuizIndex),
built once per cached revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh.bus import Bus
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from mesh.outbox import Outbox
from mesh.pagination import decode_token, encode_token, page_size
from svc_quiz import grading, views
from svc_quiz import repository as repo
from svc_quiz import submission_repository as srepo
from svc_quiz import validation as check
from svc_quiz.attempts import Attempts, merged_answers, refuse_if_closed
from svc_quiz.authoring import may_author
from svc_quiz.definitions import Definitions
from svc_quiz.grades import (
    GradeWriter,
    QuizTypes,
    answers_digest,
    job,
    outbox_row,
    stored_answers,
)
from svc_quiz.grading_queue import changed_subject
from svc_quiz.group_commit import GroupCommit
from svc_quiz.repository import JOB_SUBJECT

TERMINAL = (
    pb.GRADING_STATUS_GRADED,
    pb.GRADING_STATUS_FAILED,
    pb.GRADING_STATUS_NEEDS_MANUAL_GRADING,
)
# WatchSubmission re-reads this often even without a ping (a core NATS ping can be lost).
WATCH_POLL_SECONDS = 5.0


class Submissions:
    def __init__(
        self,
        db: Database,
        definitions: Definitions,
        attempts: Attempts,
        grades: GradeWriter,
        events: Outbox,
        bus: Bus,
        sync_max_questions: int,
        group_commit_max_batch: int = 500,
        group_commit_linger_seconds: float = 0.0,
    ) -> None:
        self._db = db
        self._definitions = definitions
        self._attempts = attempts
        self._grades = grades
        self._events = events
        self._bus = bus
        self._sync_max = sync_max_questions
        self._batch = GroupCommit(db, events, group_commit_max_batch, group_commit_linger_seconds)
        self._types = QuizTypes()
        self._batch.after_commit = events.notify

    async def close(self) -> None:
        await self._batch.close()

    async def submit(self, caller: Caller, request: pb.SubmitQuizRequest) -> pb.Submission:
        quiz_id = check.uuid_field(request.quiz_id, "quiz_id")
        key = check.idempotency_key(request.idempotency_key)
        if request.attempt_id:
            attempt_id = check.uuid_field(request.attempt_id, "attempt_id")
            async with self._db.read() as conn:
                row = await repo.attempt(conn, attempt_id)
            if row is None or str(row.user_id) != caller.user_id or str(row.quiz_id) != quiz_id:
                raise NotFound("attempt not found")
            quiz = await self._definitions.get(quiz_id, row.revision)
        else:
            return await self._submit_in_one_call(caller, quiz_id, key, list(request.answers))
        given = list(request.answers)
        check.answers(quiz, given, index=self._definitions.index(quiz))
        digest = answers_digest(given)
        if row.state != pb.ATTEMPT_STATE_IN_PROGRESS:
            return await self._repeat(caller, key, digest, quiz)
        now = datetime.now(UTC)
        if row.deadline_at is not None and now > row.deadline_at + self._attempts.grace:
            raise FailedPrecondition("the attempt's time is up")
        refuse_if_closed(quiz, now)
        values = self._values(row, quiz, merged_answers(row, given), key, digest, now)
        if not await self._insert(values, quiz, row):
            return await self._repeat(caller, key, digest, quiz)
        return views.fresh_submission(values, quiz, now)

    async def _submit_in_one_call(
        self, caller: Caller, quiz_id: str, key: str, given: list[pb.Answer]
    ) -> pb.Submission:
        """A quiz without a time limit: open an attempt and submit it in one transaction
        (attempt insert, submission insert, outbox row)."""
        head, quiz = await self._attempts.admit_student(caller, quiz_id, one_call=True)
        check.answers(quiz, given, index=self._definitions.index(quiz))
        data, digest = stored_answers(given)
        now = datetime.now(UTC)
        refuse_if_closed(quiz, now)
        attempt = self._attempts.new_attempt(caller, quiz_id, quiz, f"submit:{key}", now)
        row = SimpleNamespace(
            id=attempt["id"],
            quiz_id=head.id,
            course_id=head.course_id,
            user_id=caller.user_id,
            attempt_number=0,
            instructor_id=head.instructor_id,
        )
        values = self._values(row, quiz, given, key, digest, now, data)
        event = outbox_row(values, quiz, str(head.instructor_id), self._types)
        if not await self._batch.submit(attempt, values, event):
            async with self._db.read() as conn:
                existing = await srepo.submission_by_key(conn, caller.user_id, key)
            if existing is None:
                raise FailedPrecondition(
                    "another attempt at this quiz is in progress, or every attempt is used"
                ) from None
            return await self._repeat(caller, key, digest, quiz)
        return views.fresh_submission(values, quiz, now)

    def _values(
        self,
        row: Any,
        quiz: pb.Quiz,
        answers: list[pb.Answer],
        key: str,
        digest: bytes,
        now: datetime,
        data: bytes | None = None,
    ) -> dict[str, Any]:
        """A new submission's row (graded when cheap); `data` is `answers` serialized, when
        the caller has it."""
        due = views.as_datetime(quiz.due_time) if quiz.HasField("due_time") else None
        late = due is not None and now > due
        penalty = grading.late_penalty_percent(quiz.late_policy, due, now) if late else 0.0
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "quiz_id": row.quiz_id,
            "course_id": row.course_id,
            "user_id": row.user_id,
            "attempt_id": row.id,
            "attempt_number": row.attempt_number,
            "quiz_version": quiz.version,
            "grading_status": pb.GRADING_STATUS_PENDING,
            "idempotency_key": key,
            "answers_digest": digest,
            "answers": data or pb.SubmitQuizRequest(answers=answers).SerializeToString(),
            "late": late,
            "late_penalty_percent": penalty,
            "submitted_at": now,
            "score": None,
            "max_score": quiz.total_points,
            "score_percent": None,
            "passed": None,
            "results": None,
            "pending_results": None,
            "graded_at": None,
            "grade_version": 0,
            views.ANSWERS: answers,
            views.GRADED_RESULTS: None,
            views.GRADED_JUDGED: None,
        }
        if grading.is_cheap(quiz, self._sync_max):
            grade = grading.grade_submission(quiz, answers, self._definitions.index(quiz))
            results = grade.results_bytes()
            if grade.needs_manual:
                values.update(
                    grading_status=pb.GRADING_STATUS_NEEDS_MANUAL_GRADING, pending_results=results
                )
            else:
                score = grading.final_score(quiz, grade, penalty)
                values.update(
                    grading_status=pb.GRADING_STATUS_GRADED,
                    score=score.score,
                    score_percent=score.percent,
                    passed=score.passed,
                    results=results,
                    graded_at=now,
                    grade_version=1,
                )
                values[views.GRADED_RESULTS] = grade.results
                values[views.GRADED_JUDGED] = grade.judged
        return values

    async def _insert(self, values: dict[str, Any], quiz: pb.Quiz, row: Any) -> bool:
        async with self._db.transaction() as conn:
            if not await srepo.insert_submission(conn, values):
                return False
            await self._record(conn, values, quiz, row)
        self._events.notify()
        return True

    async def _record(
        self, conn: AsyncConnection, values: dict[str, Any], quiz: pb.Quiz, row: Any
    ) -> None:
        """The outbox row of a new submission: its SubmissionGraded event when graded inline,
        its grading job when queued (essays waiting for the instructor need neither)."""
        status = values["grading_status"]
        if status == pb.GRADING_STATUS_GRADED:
            results = values[views.GRADED_RESULTS]
            await self._grades.add_graded_event(
                conn, SimpleNamespace(**values), quiz, results, str(row.instructor_id)
            )
        elif status == pb.GRADING_STATUS_PENDING:
            sid = str(values["id"])
            await self._events.add(conn, JOB_SUBJECT, str(uuid.uuid4()), job(sid))

    async def _repeat(
        self, caller: Caller, key: str, digest: bytes, quiz: pb.Quiz
    ) -> pb.Submission:
        """The answer to a repeated SubmitQuiz: the same submission, or a refusal."""
        async with self._db.read() as conn:
            existing = await srepo.submission_by_key(conn, caller.user_id, key)
        if existing is None:
            raise FailedPrecondition("the attempt was already submitted or has expired")
        if bytes(existing.answers_digest) != digest:
            raise AlreadyExists("idempotency_key was used for a submission with other answers")
        return views.withhold_for_student(views.submission(existing), quiz, datetime.now(UTC))

    async def _readable(self, caller: Caller, submission_id: str) -> tuple[Any, pb.Quiz, bool]:
        sid = check.uuid_field(submission_id, "submission_id")
        async with self._db.read() as conn:
            row = await srepo.submission(conn, sid)
        if row is None:
            raise NotFound("submission not found")
        author = may_author(caller, row.instructor_id)
        if not author and str(row.user_id) != caller.user_id:
            raise NotFound("submission not found")
        quiz = await self._definitions.get(str(row.quiz_id), row.revision)
        return row, quiz, author

    def _view(self, row: Any, quiz: pb.Quiz, author: bool) -> pb.Submission:
        out = views.submission(row)
        return out if author else views.withhold_for_student(out, quiz, datetime.now(UTC))

    async def get(self, caller: Caller, submission_id: str) -> pb.Submission:
        return self._view(*await self._readable(caller, submission_id))

    async def list_mine(
        self, caller: Caller, request: pb.ListMySubmissionsRequest
    ) -> tuple[list[pb.Submission], str]:
        quiz_id = check.uuid_field(request.quiz_id, "quiz_id") if request.quiz_id else None
        course_id = check.uuid_field(request.course_id, "course_id") if request.course_id else None
        size = min(request.page_size or 20, 100) if request.page_size >= 0 else page_size(-1)
        after = decode_token(request.page_token, 2)
        async with self._db.read() as conn:
            rows = await srepo.list_user_submissions(
                conn, caller.user_id, quiz_id, course_id, after, size + 1
            )
        out = []
        for r in rows[:size]:
            quiz = await self._definitions.get(str(r.quiz_id), r.revision)
            out.append(self._view(r, quiz, False))
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = encode_token([last.submitted_at.isoformat(), str(last.id)])
        return out, token

    async def list_quiz(
        self, caller: Caller, request: pb.ListQuizSubmissionsRequest
    ) -> tuple[list[pb.Submission], str]:
        quiz_id = check.uuid_field(request.quiz_id, "quiz_id")
        size = min(request.page_size or 100, 500) if request.page_size >= 0 else page_size(-1)
        after = decode_token(request.page_token, 2)
        async with self._db.read() as conn:
            head = await repo.quiz_head(conn, quiz_id)
            if head is None:
                raise NotFound("quiz not found")
            if not may_author(caller, head.instructor_id):
                raise PermissionDenied("only the course's instructor may list its submissions")
            rows = await srepo.list_quiz_submissions(
                conn, quiz_id, request.grading_status, after, size + 1
            )
        out = [views.submission(r, with_answers=False) for r in rows[:size]]
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = encode_token([last.submitted_at.isoformat(), str(last.id)])
        return out, token

    async def grade(self, caller: Caller, request: pb.GradeSubmissionRequest) -> pb.Submission:
        sid = check.uuid_field(request.submission_id, "submission_id")
        if request.idempotency_key:
            check.idempotency_key(request.idempotency_key)
        async with self._db.transaction() as conn:
            row = await srepo.submission(conn, sid, lock=True)
            if row is None:
                raise NotFound("submission not found")
            if not may_author(caller, row.instructor_id):
                raise PermissionDenied("only the course's instructor may grade this submission")
            quiz = await self._definitions.get(str(row.quiz_id), row.revision)
            check.manual_grades(quiz, list(request.grades))
            repeated = request.idempotency_key and not await srepo.claim_manual_key(
                conn, sid, request.idempotency_key
            )
            if not repeated:
                if row.grading_status not in (
                    pb.GRADING_STATUS_NEEDS_MANUAL_GRADING,
                    pb.GRADING_STATUS_GRADED,
                ):
                    raise FailedPrecondition("automatic grading has not finished; retry later")
                await self._grades.manual(row, quiz, list(request.grades), conn)
        self._events.notify()
        await self._grades.announce(sid)
        return await self.get(caller, sid)

    async def retry(self, caller: Caller, submission_id: str) -> pb.Submission:
        row, _, author = await self._readable(caller, submission_id)
        if not author:
            raise PermissionDenied("only the course's instructor may retry grading")
        async with self._db.transaction() as conn:
            queued = await srepo.retry_failed(conn, str(row.id))
        if queued:
            self._events.notify()
            await self._grades.announce(str(row.id))
        return await self.get(caller, str(row.id))

    async def watch(self, caller: Caller, submission_id: str) -> AsyncIterator[pb.Submission]:
        """Each state of the submission, ending at a state no automatic step will change.
        Subscribes before the first read, so a change between them is never missed."""
        sid = check.uuid_field(submission_id, "submission_id")
        changed = asyncio.Event()

        async def on_change(_: Any) -> None:
            changed.set()

        sub = await self._bus.nc.subscribe(changed_subject(sid), cb=on_change)
        try:
            last: pb.Submission | None = None
            while True:
                changed.clear()
                current = await self.get(caller, sid)
                if current != last:
                    yield current
                    last = current
                if current.grading_status in TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), WATCH_POLL_SECONDS)
        finally:
            await sub.unsubscribe()

    async def expire_overdue(self, limit: int = 100) -> int:
        """Submit (with their saved answers) open attempts past deadline plus grace; attempts
        with nothing saved become EXPIRED. Returns how many were handled."""
        cutoff = datetime.now(UTC) - self._attempts.grace
        handled = 0
        async with self._db.transaction() as conn:
            ids = [r.id for r in await repo.expired_attempts(conn, cutoff, limit)]
            for attempt_id in ids:
                row = await repo.attempt(conn, str(attempt_id))
                if row is None:
                    continue
                handled += 1
                if not row.saved_answers:
                    await repo.expire_attempt(conn, str(attempt_id))
                    continue
                quiz = await self._definitions.get(str(row.quiz_id), row.revision)
                answers = merged_answers(row, [])
                values = self._values(
                    row, quiz, answers, f"expired:{attempt_id}", answers_digest(answers),
                    row.deadline_at,
                )  # fmt: skip
                values["submitted_at"] = datetime.now(UTC)
                if await srepo.insert_submission(conn, values):
                    await self._record(conn, values, quiz, row)
        if handled:
            self._events.notify()
        return handled
