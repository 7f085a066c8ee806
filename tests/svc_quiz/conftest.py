"""Quiz-service fixtures: stubs on the real quiz and course services, people with access tokens
signed by the stack's own key (as svc_user signs them), and a published course with enrolled
students to put quizzes in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from mesh.db import Database
from svc_quiz.models import SCHEMA
from svc_quiz.settings import QuizSettings
from tests.people import People, Person


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def quiz_channel(stack: Endpoints) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(stack.services["quiz"][0]) as channel:
        yield channel


@pytest.fixture(scope="session")
def quizzes(quiz_channel: grpc.aio.Channel) -> QuizServiceStub:
    return QuizServiceStub(quiz_channel)


@dataclass
class Classroom:
    """A published course, its instructor and helpers to enrol students."""

    course_id: str
    instructor: Person
    courses: CourseServiceStub
    people: People
    students: list[Person] = field(default_factory=list)

    async def student(self) -> Person:
        who = self.people.make()
        await self.courses.Enroll(
            course_pb.EnrollRequest(course_id=self.course_id, idempotency_key=uuid.uuid4().hex),
            metadata=who.auth,
        )
        return who


@pytest_asyncio.fixture(loop_scope="session")
async def classroom(course_stub: CourseServiceStub, people: People) -> Classroom:
    instructor = people.make("instructor")
    created = await course_stub.CreateCourse(
        course_pb.CreateCourseRequest(
            course=course_pb.Course(
                title=f"Quizzed {uuid.uuid4().hex[:8]}",
                description="A course for quiz tests.",
                category="testing",
                level=course_pb.COURSE_LEVEL_BEGINNER,
                language="en",
            ),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=instructor.auth,
    )
    course_id = created.course.course_id
    await course_stub.PublishCourse(
        course_pb.PublishCourseRequest(course_id=course_id), metadata=instructor.auth
    )
    return Classroom(course_id, instructor, course_stub, people)


def choice(prompt: str, right: int, options: int = 4, points: float = 1) -> pb.Question:
    return pb.Question(
        prompt=prompt,
        points=points,
        single_choice=pb.SingleChoiceQuestion(
            options=[
                pb.ChoiceOption(option_id=f"o{i}", text=f"option {i}", correct=i == right)
                for i in range(options)
            ]
        ),
    )


def short(prompt: str, answer: str, mode: pb.AnswerMatchMode.ValueType) -> pb.Question:
    return pb.Question(
        prompt=prompt,
        points=1,
        short_answer=pb.ShortAnswerQuestion(
            accepted_answers=[pb.AcceptedAnswer(text=answer, match_mode=mode)]
        ),
    )


async def new_quiz(
    stub: QuizServiceStub,
    room: Classroom,
    questions: list[pb.Question],
    *,
    publish: bool = True,
    **settings: object,
) -> pb.Quiz:
    quiz = pb.Quiz(
        course_id=room.course_id,
        title="A quiz",
        questions=questions,
        **settings,  # type: ignore[arg-type]
    )
    created = await stub.CreateQuiz(
        pb.CreateQuizRequest(quiz=quiz, idempotency_key=uuid.uuid4().hex),
        metadata=room.instructor.auth,
    )
    if not publish:
        return created.quiz
    published = await stub.PublishQuiz(
        pb.PublishQuizRequest(quiz_id=created.quiz.quiz_id), metadata=room.instructor.auth
    )
    return published.quiz


def answer_for(question: pb.Question, right: bool = True) -> pb.Answer:
    """The right (or a wrong) answer to a choice question of the authoring view."""
    options = question.single_choice.options
    pick = next(o for o in options if o.correct == right)
    return pb.Answer(question_id=question.question_id, option_id=pick.option_id)


@pytest_asyncio.fixture(loop_scope="session")
async def db(stack: Endpoints) -> AsyncIterator[Database]:
    """The quiz schema's pools, opened as the service opens them."""
    settings = QuizSettings(database_url=stack.database_url)
    async with Database.open(settings, SCHEMA) as opened:
        yield opened
