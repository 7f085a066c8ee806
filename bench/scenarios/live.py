"""live fan-out (issue 12): one session, N participants on Subscribe streams spread over
several channels and client processes, the instructor broadcasting at a fixed rate; reports
send-to-receipt p50/p95/p99, deliveries per second, gaps and drops, and the service's CPU.

It is not a call-loop scenario (what is timed is a delivery to many streams, not one call),
so it has its own runner; its target is `live_fanout` in bench/sla.yaml.

    python -m bench.scenarios.live --participants 1000 --rate 10 --duration 120
    python -m bench.scenarios.live --private-stack live=2 --participants 1000 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf.timestamp_pb2 import Timestamp

from bench.live_receivers import Receivers
from bench.sla import load_sla
from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1.live_service_pb2_grpc import LiveServiceStub
from svc_user.tokens import AccessTokens, load_private_key


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def open_session(endpoints: Endpoints, participants: int) -> tuple[str, str, list[str]]:
    """A course, its instructor, `participants` enrolled students and a live session."""
    signer = AccessTokens(load_private_key(endpoints.jwt_private_key_file), 3600)

    def mint(*roles: str) -> tuple[str, str]:
        user = str(uuid.uuid4())
        return user, signer.mint(user, ["student", *roles], session_id=str(uuid.uuid4()))

    _, host = mint("instructor")
    async with grpc.aio.insecure_channel(endpoints.services["course"][0]) as cc:
        courses = CourseServiceStub(cc)
        course = await courses.CreateCourse(
            course_pb.CreateCourseRequest(
                course=course_pb.Course(
                    title="Bench live", description="bench", category="bench",
                    level=course_pb.COURSE_LEVEL_BEGINNER, language="en",
                ),
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=_auth(host),
        )  # fmt: skip
        course_id = course.course.course_id
        await courses.PublishCourse(
            course_pb.PublishCourseRequest(course_id=course_id), metadata=_auth(host)
        )
        tokens = [mint()[1] for _ in range(participants)]
        for start in range(0, participants, 50):
            await asyncio.gather(
                *(
                    courses.Enroll(
                        course_pb.EnrollRequest(
                            course_id=course_id, idempotency_key=uuid.uuid4().hex
                        ),
                        metadata=_auth(t),
                    )
                    for t in tokens[start : start + 50]
                )
            )
    async with grpc.aio.insecure_channel(endpoints.services["live"][0]) as lc:
        live = LiveServiceStub(lc)
        when = Timestamp()
        when.GetCurrentTime()
        session = await live.ScheduleSession(
            pb.ScheduleSessionRequest(
                session=pb.LiveSession(
                    course_id=course_id, title="bench", scheduled_start_time=when
                ),
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=_auth(host),
        )
        sid = session.session.session_id
        await live.StartSession(pb.StartSessionRequest(session_id=sid), metadata=_auth(host))
    return sid, host, tokens


async def broadcast(target: str, host: str, sid: str, rate: float, seconds: float) -> int:
    """Broadcast `t<ns>` at `rate` per second for `seconds` (open loop: a slow answer does not
    delay the next send); returns how many were accepted."""
    async with grpc.aio.insecure_channel(target) as channel:
        live = LiveServiceStub(channel)

        async def send_one() -> bool:
            event = pb.ClientEvent(
                client_event_id=uuid.uuid4().hex,
                broadcast=pb.SendBroadcast(text=f"t{time.time_ns()}"),
            )
            try:
                await live.Send(pb.SendRequest(session_id=sid, event=event), metadata=_auth(host))
            except grpc.aio.AioRpcError:
                return False
            return True

        start = time.monotonic()
        sends = []
        n = 0
        while time.monotonic() - start < seconds:
            due = start + n / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            n += 1
            sends.append(asyncio.create_task(send_one()))
        return sum(await asyncio.gather(*sends))


def _live_processes(endpoints: Endpoints) -> list[psutil.Process]:
    """The live replicas' processes (found by their listening ports)."""
    ports = {int(a.rsplit(":", 1)[1]) for a in endpoints.services["live"]}
    return [
        psutil.Process(conn.pid)
        for conn in psutil.net_connections("tcp")
        if conn.status == "LISTEN" and conn.laddr.port in ports and conn.pid
    ]


def _service_cpu(endpoints: Endpoints) -> dict[int, float]:
    """CPU seconds so far of each live replica."""
    return {p.pid: p.cpu_times().user + p.cpu_times().system for p in _live_processes(endpoints)}


def _service_rss(endpoints: Endpoints) -> int:
    return sum(p.memory_info().rss for p in _live_processes(endpoints))


def run(endpoints: Endpoints, args: argparse.Namespace) -> dict[str, Any]:
    sid, host, tokens = asyncio.run(open_session(endpoints, args.participants))
    targets = [endpoints.edge] if args.target == "edge" and endpoints.edge else None
    targets = targets or endpoints.services["live"]
    receivers = Receivers(
        targets, tokens, sid,
        processes=args.processes, channels=args.channels, seconds=args.duration + 30,
    )  # fmt: skip
    rss_before = _service_rss(endpoints)
    receivers.start()
    opened = receivers.wait_open()
    rss_per_stream = (_service_rss(endpoints) - rss_before) / max(1, opened)
    before = _service_cpu(endpoints)
    start = time.monotonic()
    sent = asyncio.run(broadcast(targets[0], host, sid, args.rate, args.duration))
    window = time.monotonic() - start
    after = _service_cpu(endpoints)
    result = receivers.finish()
    result.update(
        participants=args.participants,
        opened=opened,
        broadcasts=sent,
        expected_deliveries=sent * args.participants,
        deliveries_per_s=round(result["deliveries"] / window, 1),
        service_cpu_cores=round(sum(after[p] - before.get(p, 0) for p in after) / window, 2),
        replicas=len(endpoints.services["live"]),
        service_kib_per_stream=round(rss_per_stream / 1024, 1),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--target", choices=("direct", "edge"), default="direct")
    parser.add_argument("--endpoints", type=Path, default=Path(".stack/endpoints.json"))
    parser.add_argument("--private-stack", default="", help="e.g. live=2: start a stack")
    args = parser.parse_args()
    if args.private_stack:
        from devstack.config import parse_replicas
        from devstack.stack import Stack, StackConfig

        replicas = {"user": 1, "course": 1, "quiz": 0, "analytics": 0}
        replicas.update(parse_replicas(args.private_stack))
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(StackConfig.for_tests(Path(tmp), replicas=replicas))
            try:
                result = run(stack.start(timeout=180), args)
            finally:
                stack.stop()
    else:
        result = run(Endpoints.load(args.endpoints), args)
    target = load_sla()["live_fanout"]
    result["sla"] = target.describe()
    result["pass"] = (
        result["gaps"] == 0
        and target.p95_ms is not None
        and result["p95_ms"] <= target.p95_ms
        and result["deliveries"] >= 0.99 * result["expected_deliveries"]
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
