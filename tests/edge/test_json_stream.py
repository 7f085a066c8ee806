"""A JSON server stream through the edge: a server-streaming method's REST binding answers
newline-delimited JSON, one object per message as the service sends it (not buffered to the
end), and a status before the first message becomes its HTTP code with a JSON body.

No real service streams yet (quiz and live answer UNIMPLEMENTED until their issues land), so a
fake QuizService answers WatchSubmission here; tests/e2e checks the real stack's answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import grpc
import httpx
import pytest

from elearn.quiz.v1 import quiz_service_pb2 as quiz_pb
from elearn.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from tests.edge.harness import (
    OTHER_SERVICES,
    Edge,
    FakeUserService,
    fake_server,
    fake_user_server,
    running_edge,
)

STATES = (
    quiz_pb.GRADING_STATUS_PENDING,
    quiz_pb.GRADING_STATUS_NEEDS_MANUAL_GRADING,
    quiz_pb.GRADING_STATUS_GRADED,
)
MISSING = "MISSING"
STEP_DEADLINE_S = 10.0


@dataclass
class FakeQuizService(quiz_grpc.QuizServiceServicer):
    """WatchSubmission sends the first state, then one more each time `advance` is set."""

    advance: asyncio.Queue[None] = field(default_factory=asyncio.Queue)

    async def WatchSubmission(
        self, request: quiz_pb.WatchSubmissionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[quiz_pb.WatchSubmissionResponse]:
        if request.submission_id == MISSING:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no submission {MISSING}")
        for i, state in enumerate(STATES):
            if i:
                await self.advance.get()
            submission = quiz_pb.Submission(
                submission_id=request.submission_id, grading_status=state, score=10.0 * i
            )
            yield quiz_pb.WatchSubmissionResponse(submission=submission)


@pytest.fixture(scope="module")
async def quiz_edge(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Edge, FakeQuizService]]:
    quiz = FakeQuizService()  # type: ignore[abstract]
    user = FakeUserService()  # type: ignore[abstract]
    add = partial(quiz_grpc.add_QuizServiceServicer_to_server, quiz)
    async with (
        fake_user_server(user) as (_, user_port),
        fake_server(OTHER_SERVICES["quiz"], add) as (_, quiz_port),
        running_edge(
            tmp_path_factory.mktemp("quiz-edge"), [user_port], other_ports={"quiz": quiz_port}
        ) as edge,
    ):
        yield edge, quiz


async def test_a_json_server_stream_arrives_message_by_message(
    quiz_edge: tuple[Edge, FakeQuizService],
) -> None:
    edge, quiz = quiz_edge
    received: list[dict[str, object]] = []
    async with (
        httpx.AsyncClient(base_url=edge.url, timeout=STEP_DEADLINE_S) as http,
        http.stream("GET", "/api/submissions/sub-1/watch") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        lines = response.aiter_lines()
        for i in range(len(STATES)):
            if i:
                # The next state is sent only now: the previous line was not held back
                # until the stream ended.
                quiz.advance.put_nowait(None)
            line = await asyncio.wait_for(_next_line(lines), STEP_DEADLINE_S)
            received.append(json.loads(line))
        rest = [line async for line in lines if line.strip()]
    assert rest == []
    assert [r["submission"]["gradingStatus"] for r in received] == [  # type: ignore[index]
        quiz_pb.GradingStatus.Name(s) for s in STATES
    ]
    assert {r["submission"]["submissionId"] for r in received} == {"sub-1"}  # type: ignore[index]


async def _next_line(lines: AsyncIterator[str]) -> str:
    async for line in lines:
        if line.strip():
            return line
    raise AssertionError("the stream ended early")


async def test_a_json_stream_refused_before_its_first_message_is_an_http_error(
    quiz_edge: tuple[Edge, FakeQuizService],
) -> None:
    edge, _ = quiz_edge
    async with httpx.AsyncClient(base_url=edge.url, timeout=STEP_DEADLINE_S) as http:
        response = await http.get(f"/api/submissions/{MISSING}/watch")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert response.json()["message"] == f"no submission {MISSING}"
