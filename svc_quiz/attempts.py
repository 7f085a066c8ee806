"""Attempts: StartAttempt (enrolled students, attempt limit, admission) and SaveAnswers.

The server owns the clock: an attempt's deadline is its start plus the quiz's time limit;
submissions are accepted until the deadline plus a short grace for requests in flight.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import FailedPrecondition, NotFound, PermissionDenied
from mesh.local_cache import LocalCache
from svc_quiz import repository as repo
from svc_quiz import validation as check
from svc_quiz import views
from svc_quiz.courses import Courses
from svc_quiz.definitions import Definitions
from svc_quiz.grading_queue import Admission


def refuse_if_closed(quiz: pb.Quiz, now: datetime) -> None:
    """FAILED_PRECONDITION after the hard cut-off, or after the due time without late work."""
    policy = quiz.late_policy
    if policy.HasField("cutoff_time") and now > views.as_datetime(policy.cutoff_time):
        raise FailedPrecondition("the quiz closed at its cut-off time")
    late = quiz.HasField("due_time") and now > views.as_datetime(quiz.due_time)
    if late and not policy.accept_late:
        raise FailedPrecondition("the quiz was due and accepts no late submissions")


class Attempts:
    def __init__(
        self,
        db: Database,
        definitions: Definitions,
        courses: Courses,
        admission: Admission,
        grace_seconds: float,
        quiz_cache_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._definitions = definitions
        self._courses = courses
        self._admission = admission
        self.grace = timedelta(seconds=grace_seconds)
        self._quizzes: LocalCache[str, tuple[Any, pb.Quiz]] = LocalCache(quiz_cache_seconds, 10_000)

    async def _published(self, quiz_id: str) -> tuple[Any, pb.Quiz]:
        """The published quiz's row and definition. Cached for a second: in an exam rush
        thousands of starts read the same quiz, and a publish or change is seen a second
        later at most (submissions are graded with the revision their attempt read)."""
        return await self._quizzes.get_or_load(quiz_id, self._load_published, quiz_id)

    async def _load_published(self, quiz_id: str) -> tuple[Any, pb.Quiz]:
        async with self._db.read() as conn:
            row = await repo.load_quiz(conn, quiz_id)
        if row is None or row.state != pb.QUIZ_STATE_PUBLISHED:
            raise NotFound("quiz not found")
        return row, self._definitions.parse(quiz_id, row.revision, row.definition)

    async def admit_student(
        self, caller: Caller, quiz_id: str, *, one_call: bool = False
    ) -> tuple[Any, pb.Quiz]:
        """The quiz, once the caller may start it: admission (exam starts only; a one-call
        submission carries finished work and is never shed), published, enrolled."""
        if not one_call:
            await self._admission.admit()
        row, quiz = await self._published(quiz_id)
        standing = await self._courses.standing(str(row.course_id), caller.user_id)
        if not standing.enrolled:
            raise PermissionDenied("only students enrolled in the course may take its quizzes")
        if one_call and quiz.HasField("time_limit"):
            raise FailedPrecondition("this quiz has a time limit: call StartAttempt first")
        return row, quiz

    @staticmethod
    def new_attempt(
        caller: Caller, quiz_id: str, quiz: pb.Quiz, key: str, now: datetime
    ) -> dict[str, Any]:
        """The values of a new attempt (repo.insert_attempt numbers it)."""
        deadline = now + quiz.time_limit.ToTimedelta() if quiz.HasField("time_limit") else None
        return {
            "id": uuid.uuid4(),
            "quiz_id": quiz_id,
            "user_id": caller.user_id,
            "quiz_version": quiz.version,
            "start_key": key,
            "shuffle_seed": secrets.randbits(31),
            "started_at": now,
            "deadline_at": deadline,
            "max_attempts": quiz.max_attempts,
        }

    async def used(self, caller: Caller, quiz_id: str) -> tuple[int, str]:
        """The caller's attempts on the quiz and the one in progress, for GetQuiz."""
        async with self._db.read() as conn:
            used = await repo.attempt_standing(conn, quiz_id, caller.user_id)
        return int(used.used), str(used.open_id or "")

    async def start(self, caller: Caller, quiz_id: str, key: str) -> tuple[Any, pb.Quiz]:
        """Open (or resume) the caller's attempt; returns its row and the quiz definition."""
        _, quiz = await self.admit_student(caller, quiz_id)
        async with self._db.read() as conn:
            earlier = await repo.attempt_by_start_key(conn, caller.user_id, key)
        if earlier is not None:
            if str(earlier.quiz_id) != quiz_id:
                raise FailedPrecondition("idempotency_key was used for another quiz")
            return earlier, await self._definitions.get(quiz_id, earlier.revision)
        now = datetime.now(UTC)
        refuse_if_closed(quiz, now)
        async with self._db.transaction() as conn:
            inserted = await repo.insert_attempt(
                conn, self.new_attempt(caller, quiz_id, quiz, key, now)
            )
            found = await (
                repo.attempt_by_start_key(conn, caller.user_id, key)
                if inserted is not None
                else repo.open_attempt(conn, quiz_id, caller.user_id)
            )
        if found is None:
            raise FailedPrecondition(f"all {quiz.max_attempts} attempts at this quiz are used")
        return found, quiz

    async def save(
        self, caller: Caller, attempt_id: str, answers: list[pb.Answer]
    ) -> pb.SaveAnswersResponse:
        async with self._db.read() as conn:
            row = await repo.attempt(conn, attempt_id)
        if row is None or str(row.user_id) != caller.user_id:
            raise NotFound("attempt not found")
        quiz = await self._definitions.get(str(row.quiz_id), row.revision)
        check.answers(quiz, answers)
        if row.state != pb.ATTEMPT_STATE_IN_PROGRESS:
            raise FailedPrecondition("the attempt is no longer in progress")
        if row.deadline_at is not None and datetime.now(UTC) > row.deadline_at + self.grace:
            raise FailedPrecondition("the attempt's time is up")
        merged = {a.question_id: a for a in _saved(row)}
        merged.update((a.question_id, a) for a in answers)
        data = pb.SubmitQuizRequest(answers=list(merged.values())).SerializeToString()
        async with self._db.transaction() as conn:
            if not await repo.save_answers(conn, attempt_id, data):
                raise FailedPrecondition("the attempt is no longer in progress")
        return pb.SaveAnswersResponse(
            saved_count=len(merged), deadline_time=views.ts(row.deadline_at)
        )


def _saved(row: Any) -> list[pb.Answer]:
    if not row.saved_answers:
        return []
    return list(pb.SubmitQuizRequest.FromString(row.saved_answers).answers)


def merged_answers(row: Any, given: list[pb.Answer]) -> list[pb.Answer]:
    """What SubmitQuiz hands in: the saved answers, overridden by the ones it carries."""
    merged = {a.question_id: a for a in _saved(row)}
    merged.update((a.question_id, a) for a in given)
    return list(merged.values())
