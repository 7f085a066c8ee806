"""`python -m bench.quiz_queue`: queued grading (S3). Submits N short-answer (REGEX)
submissions at once through the edge, then follows them to their final grade and reports the
time until all are graded and the p50/p95 of submit-to-final-grade, from the submissions' own
server timestamps. Run it against a stack started with one worker, then with
`--replicas quiz-worker=2`, to compare."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path

import grpc

from bench.endpoints import DEFAULT_PATH, load_endpoints
from bench.scenarios.accounts import AccountPool
from bench.scenarios.base import SetupContext
from bench.scenarios.quiz import QueuedGrading
from elearn.quiz.v1 import quiz_service_pb2 as pb
from elearn.quiz.v1.quiz_service_pb2_grpc import QuizServiceStub
from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(endpoints_path: Path, count: int, students: int, wait_s: float) -> None:
    endpoints = load_endpoints(endpoints_path)
    assert endpoints.edge, "the stack has no edge"
    async with grpc.aio.insecure_channel(endpoints.edge) as channel:
        run_id = uuid.uuid4().hex[:8]
        scenario = QueuedGrading()
        ctx = SetupContext(
            channel, AccountPool(run_id, max_users=students), run_id, students, endpoints
        )
        data = await scenario.setup(ctx)
        submit = channel.unary_unary("/elearn.quiz.v1.QuizService/SubmitQuiz")
        quiz_id = pb.SubmitQuizRequest.FromString(data["bases"][0]).quiz_id

        async def one_student(caller: int, n: int) -> None:
            state = scenario.make_state(data, caller)
            for _ in range(n):
                await scenario.call(submit, state)

        started = time.monotonic()
        per, extra = divmod(count, students)
        await asyncio.gather(*(one_student(i, per + (i < extra)) for i in range(students)))
        submitted = count
        accepted_s = time.monotonic() - started
        admin = await UserServiceStub(channel).Login(
            user_pb.LoginRequest(
                email=endpoints.admin_email or "", password=endpoints.admin_password or ""
            )
        )
        auth = (("authorization", f"Bearer {admin.tokens.access_token}"),)
        quizzes = QuizServiceStub(channel)
        deadline = time.monotonic() + wait_s
        while True:
            rows: list[pb.Submission] = []
            token = ""
            while True:
                page = await quizzes.ListQuizSubmissions(
                    pb.ListQuizSubmissionsRequest(quiz_id=quiz_id, page_size=500, page_token=token),
                    metadata=auth,
                )
                rows.extend(page.submissions)
                token = page.next_page_token
                if not token:
                    break
            graded = [s for s in rows if s.grading_status == pb.GRADING_STATUS_GRADED]
            if len(graded) >= submitted or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        lags = [
            (s.grade_time.ToDatetime() - s.submit_time.ToDatetime()).total_seconds() for s in graded
        ]
        p50, p95 = _percentile(lags, 0.5), _percentile(lags, 0.95)
        first = min(s.submit_time.ToDatetime() for s in rows)
        last = max(s.grade_time.ToDatetime() for s in graded)
        print(
            f"queued grading: {submitted} submitted in {accepted_s:.1f} s; {len(graded)} graded; "
            f"all graded {(last - first).total_seconds():.1f} s after the first submit; "
            f"submit-to-grade p50 {p50:.2f} s, p95 {p95:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--students", type=int, default=64)
    parser.add_argument("--wait", type=float, default=600.0)
    args = parser.parse_args()
    asyncio.run(run(args.endpoints, args.count, args.students, args.wait))


if __name__ == "__main__":
    main()
