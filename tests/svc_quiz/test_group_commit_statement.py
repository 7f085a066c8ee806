"""The group commit's one statement: the SubmissionGraded payload it joins around the attempt
number in SQL is byte for byte the event protobuf would serialize, and an attempt number
clash makes it write nothing, so the batch goes through the transaction instead."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

import nats
import psycopg
import pytest

from devstack.runstate import Endpoints
from elearn.events.v1 import quiz_events_pb2 as events_pb
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from mesh.db import Database
from mesh.outbox import Outbox
from svc_quiz import grades, grading
from svc_quiz.group_commit import Pending, write_batch, write_one_statement
from svc_quiz.group_commit_sql import varint_sql
from svc_quiz.models import SCHEMA, outbox
from svc_quiz.settings import QuizSettings
from tests.svc_quiz.conftest import Classroom, choice, new_quiz
from tests.svc_quiz.group_commit_rows import pending, submission_values

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")

NUMBERS = [1, 2, 127, 128, 300, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**31 - 1]


@pytest.mark.parametrize("number", NUMBERS)
def test_event_halves_join_into_the_whole_serialized_event(number: int) -> None:
    quiz = pb.Quiz(quiz_id=str(uuid.uuid4()), course_id=str(uuid.uuid4()))
    values = SimpleNamespace(**submission_values(quiz, str(uuid.uuid4()), "k"))
    results = [pb.QuestionResult(question_id="q1", outcome=2, points_awarded=1, points_possible=1)]
    halves = grades.graded_event_halves(values, pb.Quiz(), results, "teacher")
    joined = halves.joined(number)
    event = events_pb.SubmissionGraded.FromString(joined)
    assert event.attempt_number == number
    assert event.event_id == halves.event_id
    assert event.submission_id == str(values.id)
    assert event.questions[0].question_id == "q1"
    assert event.SerializeToString() == joined
    values.attempt_number = number
    _, whole = grades.graded_event(values, pb.Quiz(), results, "teacher")
    for message in (event, whole):
        message.ClearField("event_id")
        message.ClearField("occur_time")
    assert event == whole


def test_event_halves_from_shared_results_are_the_built_ones_byte_for_byte() -> None:
    quiz = pb.Quiz(
        quiz_id=str(uuid.uuid4()),
        course_id=str(uuid.uuid4()),
        questions=[choice("a", 0), choice("b", 1), choice("c", 2, points=2.5)],
    )
    for q in quiz.questions:
        q.question_id = str(uuid.uuid4())
    values = SimpleNamespace(**submission_values(quiz, str(uuid.uuid4()), "k"))
    # o1 for all: wrong, right, wrong.
    answers = [pb.Answer(question_id=q.question_id, option_id="o1") for q in quiz.questions]
    grade = grading.grade_submission(quiz, answers, grading.quiz_index(quiz))
    assert grade.judged is not None
    assert [r.points_awarded for r in grade.results] == [0, 1, 0]
    types = grades.question_types(quiz)

    for instructor in ("teacher", ""):
        joined = grades.graded_event_halves(
            values, quiz, grade.results, instructor, types, grade.judged
        )
        built = grades.graded_event_halves(values, quiz, grade.results, instructor, types)

        assert joined.tail == built.tail
        event = events_pb.SubmissionGraded.FromString(joined.joined(3))
        assert [g.question_id for g in event.questions] == [q.question_id for q in quiz.questions]
        assert event.instructor_id == instructor


def test_varint_sql_encodes_as_protobuf_does(sql: psycopg.Connection) -> None:
    encoded = sql.execute(
        f"SELECT n, {varint_sql('n')} FROM unnest(%s::int[]) AS t(n)", (NUMBERS,)
    ).fetchall()
    assert {n: bytes(b) for n, b in encoded} == {n: grades.varint(n) for n in NUMBERS}


@SESSION_LOOP
async def test_one_statement_writes_submissions_attempts_and_byte_exact_events(
    quizzes: QuizServiceStub, classroom: Classroom, db: Database, stack: Endpoints
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    nc = await nats.connect(stack.nats_url)
    try:
        sub = await nc.jetstream().subscribe(grades.GRADED_SUBJECT, ordered_consumer=True)
        user = str(uuid.uuid4())
        first = [pending(quiz, user, "one"), pending(quiz, str(uuid.uuid4()), "two")]
        assert await write_one_statement(db, first) == [True, True]
        # The same student again, and a repeat of the first key: a new attempt, a refusal.
        second = [pending(quiz, user, "three"), pending(quiz, user, "one")]
        assert await write_one_statement(db, second) == [True, False]
        written = [*first, second[0]]
        assert [p.values["attempt_number"] for p in written] == [1, 1, 2]
        wanted = {str(p.values["id"]): p for p in written}
        seen: dict[str, bytes] = {}
        deadline = time.monotonic() + 30
        while set(seen) != set(wanted) and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            except nats.errors.TimeoutError:
                break
            sid = events_pb.SubmissionGraded.FromString(msg.data).submission_id
            if sid in wanted:
                seen[sid] = msg.data
    finally:
        await nc.close()
    assert seen == {
        sid: p.event.payload(p.values["attempt_number"])
        for sid, p in wanted.items()
        if p.event is not None
    }


@SESSION_LOOP
async def test_a_number_clash_writes_nothing_and_the_transaction_settles_it(
    quizzes: QuizServiceStub, classroom: Classroom, db: Database, sql: psycopg.Connection
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    user = str(uuid.uuid4())
    # One student twice in one batch: both rows would take attempt number 1.
    batch = [pending(quiz, user, "left"), pending(quiz, user, "right")]
    with pytest.raises(psycopg.errors.UniqueViolation):
        await write_one_statement(db, batch)
    counted = "SELECT count(*) FROM quizzes.{} WHERE quiz_id = %s"
    assert sql.execute(counted.format("submissions"), (quiz.quiz_id,)).fetchone() == (0,)
    assert sql.execute(counted.format("attempts"), (quiz.quiz_id,)).fetchone() == (0,)
    async with db.transaction() as conn:
        assert await write_batch(conn, batch, Outbox(outbox)) == [True, False]
    rows = sql.execute(
        "SELECT a.attempt_number, s.idempotency_key FROM quizzes.attempts a"
        " JOIN quizzes.submissions s ON s.attempt_id = a.id WHERE a.quiz_id = %s",
        (quiz.quiz_id,),
    ).fetchall()
    assert rows == [(1, "left")]
    assert sql.execute(counted.format("attempts"), (quiz.quiz_id,)).fetchone() == (1,)


def test_stored_answers_carry_the_answers_digest() -> None:
    answers = [
        pb.Answer(question_id="a", option_id="o1"),
        pb.Answer(question_id="b", options=pb.OptionSelection(option_ids=["x", "y"])),
        pb.Answer(question_id="c", number=2.5),
        pb.Answer(question_id="d", text="words"),
        pb.Answer(question_id="e", true_false=False),
    ]
    data, digest = grades.stored_answers(answers)
    assert pb.SubmitQuizRequest.FromString(data).answers == answers
    assert digest == grades.answers_digest(answers)


@SESSION_LOOP
async def test_the_statement_runs_on_its_generic_plan_and_leaves_the_session_as_it_was(
    quizzes: QuizServiceStub, classroom: Classroom, stack: Endpoints
) -> None:
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    # One pooled connection: every call below meets the same session.
    settings = QuizSettings(database_url=stack.database_url, db_pool_size=1, db_max_overflow=0)
    async with Database.open(settings, SCHEMA) as one:
        for _ in range(3):
            batch = [pending(quiz, str(uuid.uuid4()), "k") for _ in range(2)]
            assert await write_one_statement(one, batch) == [True, True]
        user = str(uuid.uuid4())
        with pytest.raises(psycopg.errors.UniqueViolation):
            await write_one_statement(one, [pending(quiz, user, "a"), pending(quiz, user, "b")])
        async with one.read_driver("test") as conn:
            plans = await (
                await conn.execute(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE '%%INSERT INTO submissions%%'"
                )
            ).fetchall()
            mode = await (await conn.execute("SHOW plan_cache_mode")).fetchone()
    assert plans == [(4, 0)]
    assert mode == ("auto",)


@SESSION_LOOP
async def test_clashes_leave_the_connection_usable(
    quizzes: QuizServiceStub, classroom: Classroom, stack: Endpoints
) -> None:
    # One pooled connection, so every write meets what the clashes before it left behind.
    # psycopg prepares a statement on its fifth run; a clash aborts the rest of the pipeline,
    # and a statement prepared there must not be left half-prepared.
    settings = QuizSettings(database_url=stack.database_url, db_pool_size=1, db_max_overflow=0)
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    async with Database.open(settings, SCHEMA) as one:
        for round_ in range(8):
            user = str(uuid.uuid4())
            with pytest.raises(psycopg.errors.UniqueViolation):
                await write_one_statement(
                    one, [pending(quiz, user, f"x{round_}"), pending(quiz, user, f"y{round_}")]
                )
            fresh = [pending(quiz, str(uuid.uuid4()), f"z{round_}")]
            assert await write_one_statement(one, fresh) == [True], f"round {round_}"


@SESSION_LOOP
async def test_replicas_writing_the_same_students_in_crossed_order_never_deadlock(
    quizzes: QuizServiceStub, classroom: Classroom, stack: Endpoints
) -> None:
    # Two replicas' batches hold the same 20 students, one in the opposite order; unsorted,
    # such rounds deadlocked. A pair ends with one batch written and the other refused by the
    # number clash (which GroupCommit settles through the transaction), or found repeated.
    settings = QuizSettings(database_url=stack.database_url)
    quiz = await new_quiz(quizzes, classroom, [choice("a", 0)])
    outcomes: list[str] = []

    async def write(db: Database, batch: list[Pending]) -> None:
        try:
            written = await write_one_statement(db, batch)
        except psycopg.Error as exc:
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append(
                "written" if all(written) else "repeats" if not any(written) else "mixed"
            )

    async with Database.open(settings, SCHEMA) as first, Database.open(settings, SCHEMA) as second:
        for round_ in range(20):
            users = [str(uuid.uuid4()) for _ in range(20)]
            crossed = users[::-1]
            # Beside them, one more batch sent through both (a retry reaching two replicas).
            others = [pending(quiz, str(uuid.uuid4()), f"c{round_}-{i}") for i in range(20)]
            await asyncio.gather(
                write(first, [pending(quiz, u, f"a{round_}-{i}") for i, u in enumerate(users)]),
                write(second, [pending(quiz, u, f"b{round_}-{i}") for i, u in enumerate(crossed)]),
                write(first, others),
                write(second, list(others)),
            )
    assert "DeadlockDetected" not in outcomes
    assert set(outcomes) <= {"written", "repeats", "UniqueViolation"}
