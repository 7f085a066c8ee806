"""Authoring: CreateQuiz, GetQuizDefinition, UpdateQuiz, PublishQuiz, GetQuiz, ListQuizzes.

The course's instructor (and admins) author; the instructor is learnt from CourseService at
creation and kept on the quiz. Every change writes a new revision of the definition; the
contract's `version` moves only when questions change, and then graded submissions of a
published quiz are queued for regrading in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import FieldErrors, InvalidArgument, NotFound, PermissionDenied
from mesh.outbox import Outbox
from mesh.pagination import decode_token, encode_token, page_size
from svc_quiz import repository as repo
from svc_quiz import validation as check
from svc_quiz import views
from svc_quiz.courses import Courses
from svc_quiz.definitions import Definitions


def _due(quiz: pb.Quiz) -> datetime | None:
    return views.as_datetime(quiz.due_time) if quiz.HasField("due_time") else None


def may_author(caller: Caller, instructor_id: Any) -> bool:
    return caller.is_admin or caller.user_id == str(instructor_id)


class Authoring:
    def __init__(
        self, db: Database, definitions: Definitions, courses: Courses, events: Outbox
    ) -> None:
        self._db = db
        self._definitions = definitions
        self._courses = courses
        self._events = events

    async def create(self, caller: Caller, quiz: pb.Quiz, key: str) -> pb.Quiz:
        course_id = check.uuid_field(quiz.course_id, "quiz.course_id")
        check.new_quiz(quiz)
        standing = await self._courses.standing(course_id, caller.user_id)
        if not may_author(caller, standing.instructor_id):
            raise PermissionDenied("only the course's instructor may add quizzes to it")
        quiz_id = str(uuid.uuid4())
        definition = pb.Quiz()
        definition.CopyFrom(quiz)
        definition.quiz_id, definition.course_id = quiz_id, course_id
        definition.state = pb.QUIZ_STATE_DRAFT
        definition.version = 1
        definition.total_points = sum(q.points for q in quiz.questions)
        for name in ("create_time", "update_time", "publish_time"):
            definition.ClearField(name)  # type: ignore[arg-type]
        async with self._db.transaction() as conn:
            inserted = await repo.insert_quiz(
                conn,
                {
                    "id": quiz_id,
                    "course_id": course_id,
                    "instructor_id": standing.instructor_id,
                    "state": pb.QUIZ_STATE_DRAFT,
                    "due_time": _due(quiz),
                    "create_key": key,
                    "definition": definition.SerializeToString(),
                },
            )
            if not inserted:
                existing = await repo.quiz_id_by_create_key(conn, standing.instructor_id, key)
                assert existing is not None
                quiz_id = str(existing)
        return await self.definition(caller, quiz_id)

    async def _load(self, quiz_id: str) -> tuple[Any, pb.Quiz]:
        async with self._db.read() as conn:
            row = await repo.load_quiz(conn, quiz_id)
        if row is None:
            raise NotFound("quiz not found")
        return row, self._definitions.parse(quiz_id, row.revision, row.definition)

    async def definition(self, caller: Caller, quiz_id: str) -> pb.Quiz:
        row, quiz = await self._load(quiz_id)
        if not may_author(caller, row.instructor_id):
            raise PermissionDenied("only the course's instructor may read the answer key")
        return views.authoring(quiz, row)

    async def overview(self, caller: Caller, quiz_id: str) -> pb.QuizSummary:
        row, quiz = await self._load(quiz_id)
        if row.state != pb.QUIZ_STATE_PUBLISHED and not may_author(caller, row.instructor_id):
            raise NotFound("quiz not found")
        return views.summary(views.authoring(quiz, row))

    async def update(self, caller: Caller, quiz: pb.Quiz, mask: FieldMask) -> tuple[pb.Quiz, int]:
        quiz_id = check.uuid_field(quiz.quiz_id, "quiz.quiz_id")
        fields = frozenset(mask.paths)
        unknown = fields - check.UPDATABLE
        if not fields or unknown:
            raise InvalidArgument(
                "update_mask must name fields that can change",
                violations=[("update_mask", f"unknown or read-only: {sorted(unknown) or 'none'}")],
            )
        errors = FieldErrors()
        check.quiz_settings(quiz, errors, fields)
        if "questions" in fields:
            check.questions(quiz, errors)
        errors.raise_if_any()
        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            row = await repo.load_quiz(conn, quiz_id, lock=True)
            if row is None:
                raise NotFound("quiz not found")
            if not may_author(caller, row.instructor_id):
                raise PermissionDenied("only the course's instructor may change this quiz")
            current = pb.Quiz.FromString(row.definition)
            changed = pb.Quiz()
            changed.CopyFrom(current)
            for name in fields:
                if name in ("questions",):
                    del changed.questions[:]
                    changed.questions.extend(quiz.questions)
                elif name in ("time_limit", "due_time", "late_policy"):
                    changed.ClearField(name)  # type: ignore[arg-type]
                    if quiz.HasField(name):  # type: ignore[arg-type]
                        getattr(changed, name).CopyFrom(getattr(quiz, name))
                else:
                    setattr(changed, name, getattr(quiz, name))
            key_changed = "questions" in fields and list(changed.questions) != list(
                current.questions
            )
            if key_changed:
                changed.version = current.version + 1
                changed.total_points = sum(q.points for q in changed.questions)
            await repo.save_revision(
                conn,
                {
                    "id": quiz_id,
                    "revision": row.revision + 1,
                    "state": row.state,
                    "due_time": _due(changed),
                    "now": now,
                    "published_at": None,
                    "definition": changed.SerializeToString(),
                },
            )
            regrade = 0
            if key_changed and row.state == pb.QUIZ_STATE_PUBLISHED:
                regrade = await repo.mark_regrading(conn, quiz_id, changed.version)
        if regrade:
            self._events.notify()
        return await self.definition(caller, quiz_id), regrade

    async def publish(self, caller: Caller, quiz_id: str) -> pb.Quiz:
        now = datetime.now(UTC)
        async with self._db.transaction() as conn:
            row = await repo.load_quiz(conn, quiz_id, lock=True)
            if row is None:
                raise NotFound("quiz not found")
            if not may_author(caller, row.instructor_id):
                raise PermissionDenied("only the course's instructor may publish this quiz")
            if row.state != pb.QUIZ_STATE_PUBLISHED:
                definition = pb.Quiz.FromString(row.definition)
                definition.state = pb.QUIZ_STATE_PUBLISHED
                await repo.save_revision(
                    conn,
                    {
                        "id": quiz_id,
                        "revision": row.revision + 1,
                        "state": pb.QUIZ_STATE_PUBLISHED,
                        "due_time": _due(definition),
                        "now": now,
                        "published_at": now,
                        "definition": definition.SerializeToString(),
                    },
                )
        return await self.definition(caller, quiz_id)

    async def list(
        self, caller: Caller, course_id: str, size: int, token: str
    ) -> tuple[list[pb.QuizSummary], str]:
        course_id = check.uuid_field(course_id, "course_id")
        size = page_size(size)
        standing = await self._courses.standing(course_id, caller.user_id)
        author = may_author(caller, standing.instructor_id)
        if not (author or standing.enrolled):
            raise PermissionDenied("only the course's students and instructor may list quizzes")
        after = decode_token(token, 3)
        async with self._db.read() as conn:
            rows = await repo.list_quizzes(conn, course_id, not author, after, size + 1)
        out = [
            views.summary(
                views.authoring(self._definitions.parse(str(r.id), r.revision, r.definition), r)
            )
            for r in rows[:size]
        ]
        next_token = ""
        if len(rows) > size:
            last = rows[size - 1]
            next_token = encode_token(
                [
                    last.due_time.isoformat() if last.due_time else None,
                    last.created_at.isoformat(),
                    str(last.id),
                ]
            )
        return out, next_token
