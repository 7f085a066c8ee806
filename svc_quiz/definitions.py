"""Quiz definitions cached in-process by (quiz_id, revision). A revision never changes once
written, so the cache needs no invalidation: a change makes a new revision, and readers learn
the current revision from the row they read anyway."""

from __future__ import annotations

from collections import OrderedDict

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh.db import Database
from mesh.errors import NotFound
from svc_quiz import grading
from svc_quiz import repository as repo


class Definitions:
    def __init__(self, db: Database, max_entries: int = 2048) -> None:
        self._db = db
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, int], pb.Quiz] = OrderedDict()
        self._indexes: dict[int, tuple[pb.Quiz, grading.QuizIndex]] = {}

    def put(self, quiz_id: str, revision: int, quiz: pb.Quiz) -> None:
        key = (quiz_id, revision)
        self._cache[key] = quiz
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    def parse(self, quiz_id: str, revision: int, data: bytes) -> pb.Quiz:
        """A definition read along with its row; parsed once per revision."""
        quiz = self._cache.get((quiz_id, revision))
        if quiz is None:
            quiz = pb.Quiz.FromString(data)
            self.put(quiz_id, revision, quiz)
        return quiz

    def index(self, quiz: pb.Quiz) -> grading.QuizIndex:
        """The grading index of a definition this cache handed out (never changed once
        cached), by identity; each entry holds its quiz, so an id is not reused meanwhile."""
        found = self._indexes.get(id(quiz))
        if found is None:
            if len(self._indexes) >= self._max:
                self._indexes.clear()
            found = self._indexes[id(quiz)] = (quiz, grading.quiz_index(quiz))
        return found[1]

    async def get(self, quiz_id: str, revision: int) -> pb.Quiz:
        quiz = self._cache.get((quiz_id, revision))
        if quiz is not None:
            return quiz
        async with self._db.read() as conn:
            data = await repo.definition(conn, quiz_id, revision)
        if data is None:
            raise NotFound("quiz not found")
        return self.parse(quiz_id, revision, data)
