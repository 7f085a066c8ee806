"""exam_rush: QuizService/SubmitQuiz of a 20-question multiple-choice quiz by many students,
each call a new submission (a fresh idempotency key, no attempt id: the quiz has no time
limit, so the call opens and submits an attempt), graded inline (finding S3, C1).

queued_grading: SubmitQuiz of a short-answer quiz with REGEX answers: accepted PENDING and
graded by the workers; this measures the accept path (the time to the final grade is measured
by `python -m bench.quiz_queue`).

Setup signs in as the stack's admin (who may author any course), creates a course and quizzes,
and enrols the run's accounts. A caller always submits as the same student to the same quiz,
and no two callers share both, so concurrent one-call submissions never race for one attempt.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from bench.http1 import HttpTarget, UniqueField
from bench.scenarios.base import Scenario, SetupContext, raw_method
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub

SUBMIT = "/elearn.quiz.v1.QuizService/SubmitQuiz"
QUESTIONS = 20


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def mc_question(i: int) -> pb.Question:
    return pb.Question(
        prompt=f"Question {i}: which option is right?",
        points=1,
        single_choice=pb.SingleChoiceQuestion(
            options=[
                pb.ChoiceOption(option_id=f"o{j}", text=f"Option {j}", correct=j == i % 4)
                for j in range(4)
            ]
        ),
    )


def regex_question(i: int) -> pb.Question:
    return pb.Question(
        prompt=f"Question {i}: spell the colour",
        points=1,
        short_answer=pb.ShortAnswerQuestion(
            accepted_answers=[
                pb.AcceptedAnswer(text=r"colou?r", match_mode=pb.ANSWER_MATCH_MODE_REGEX)
            ]
        ),
    )


def answers_for(quiz: pb.Quiz) -> list[pb.Answer]:
    out = []
    for q in quiz.questions:
        if q.WhichOneof("kind") == "single_choice":
            right = next(o for o in q.single_choice.options if o.correct)
            out.append(pb.Answer(question_id=q.question_id, option_id=right.option_id))
        else:
            out.append(pb.Answer(question_id=q.question_id, text="color"))
    return out


@dataclass
class CallerState:
    metadata: tuple[tuple[str, str]]
    base: bytes
    prefix: str
    n: int = 0


class ExamRush(Scenario):
    name = "exam_rush"
    summary = "QuizService/SubmitQuiz: a 20-question multiple-choice quiz graded inline"
    service = "quiz"
    make_question = staticmethod(mc_question)
    question_count = QUESTIONS

    async def setup(self, ctx: SetupContext) -> Any:
        if ctx.endpoints is None or not ctx.endpoints.admin_email:
            raise RuntimeError(f"{self.name} needs the stack's endpoints (admin credentials)")
        users = UserServiceStub(ctx.channel)
        admin = await users.Login(
            user_pb.LoginRequest(
                email=ctx.endpoints.admin_email, password=ctx.endpoints.admin_password or ""
            ),
            timeout=30,
        )
        teacher = _auth(admin.tokens.access_token)
        courses = CourseServiceStub(ctx.channel)
        course = await courses.CreateCourse(
            course_pb.CreateCourseRequest(
                course=course_pb.Course(
                    title=f"Bench {self.name} {ctx.run_id}", description="bench",
                    category="bench", level=course_pb.COURSE_LEVEL_BEGINNER, language="en",
                ),
                idempotency_key=f"{ctx.run_id}-{self.name}",
            ),
            metadata=teacher, timeout=30,
        )  # fmt: skip
        course_id = course.course.course_id
        await courses.PublishCourse(
            course_pb.PublishCourseRequest(course_id=course_id), metadata=teacher, timeout=30
        )
        sessions = await ctx.accounts.ensure_sessions(ctx.channel, ctx.callers)
        students = {s.account.user_id: s.access_token for s in sessions}
        tokens = list(students.values())
        for start in range(0, len(tokens), 50):
            await asyncio.gather(
                *(
                    courses.Enroll(
                        course_pb.EnrollRequest(course_id=course_id),
                        metadata=_auth(t),
                        timeout=30,
                    )
                    for t in tokens[start : start + 50]
                )
            )
        quizzes = QuizServiceStub(ctx.channel)
        count = -(-ctx.callers // len(tokens))
        bases = []
        for k in range(count):
            created = await quizzes.CreateQuiz(
                pb.CreateQuizRequest(
                    quiz=pb.Quiz(
                        course_id=course_id,
                        title=f"{self.name} {k}",
                        questions=[self.make_question(i) for i in range(self.question_count)],
                    ),
                    idempotency_key=f"{ctx.run_id}-{self.name}-{k}",
                ),
                metadata=teacher,
                timeout=30,
            )
            await quizzes.PublishQuiz(
                pb.PublishQuizRequest(quiz_id=created.quiz.quiz_id), metadata=teacher, timeout=30
            )
            request = pb.SubmitQuizRequest(
                quiz_id=created.quiz.quiz_id, answers=answers_for(created.quiz)
            )
            bases.append(request.SerializeToString())
        return {"tokens": tokens, "bases": bases, "run": ctx.run_id, "address": ctx.address}

    def make_state(self, data: Any, caller: int) -> Any:
        tokens, bases = data["tokens"], data["bases"]
        return CallerState(
            metadata=_auth(tokens[caller % len(tokens)]),
            base=bases[caller // len(tokens) % len(bases)],
            prefix=f"{data['run']}-{caller}-{uuid.uuid4().hex[:6]}-",
        )

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, SUBMIT)

    def http_targets(self, data: Any, callers: int) -> list[HttpTarget]:
        """For `--driver httpload`: one target per caller, each a student and a quiz as
        make_state pairs them, sent in turn. The open loop does not wait for a student's last
        submission, so a pair comes round again every callers/rate seconds: give enough callers
        (--concurrency) that this stays above the slowest answer, or a student's two
        submissions race for one attempt and the second is refused."""
        url = f"grpc://{data['address']}{SUBMIT}"
        return [
            HttpTarget("POST", url, {"authorization": s.metadata[0][1]}, s.base)
            for s in (self.make_state(data, c) for c in range(callers))
        ]

    def unique_field(self, data: Any) -> UniqueField:
        """Field 4, idempotency_key: a new one for every call, as in `call`."""
        return UniqueField(4, f"{data['run']}-")

    async def call(self, stub: Any, state: CallerState) -> None:
        state.n += 1
        key = (state.prefix + str(state.n)).encode()
        # Field 4 (idempotency_key) appended to the serialized rest: protobuf concatenation,
        # so the 20 answers are encoded once per caller, not once per call.
        request = state.base + b"\x22" + bytes([len(key)]) + key
        await stub(request, metadata=state.metadata, timeout=self.timeout_s)


class QueuedGrading(ExamRush):
    name = "queued_grading"
    summary = "QuizService/SubmitQuiz of a regex short-answer quiz (accepted PENDING)"
    make_question = staticmethod(regex_question)
    question_count = 5
