"""Loss of acknowledged video progress when a process dies (issue 11, "Loss" benchmark).

    python -m bench.progress_loss --kill course          # SIGKILL svc_course mid-run
    python -m bench.progress_loss --kill progress-flusher  # SIGKILL the flusher mid-run
    python -m bench.progress_loss --kill state-valkey    # SIGKILL the state Valkey mid-run

Starts a private stack (svc_user + svc_course, no Envoy, free ports: it never touches a
`make start` stack), makes a course with one video per student, and has every student send
UpdateVideoProgress with strictly increasing `watched` at a steady rate while a reader polls
GetVideoProgress. Mid-run the target gets SIGKILL and is restarted with the same ports; the
senders keep going. After the run the flusher drains and each acknowledged value is compared
with what a read returns and what Postgres holds.

An acknowledged update is lost when its value exceeds the stored one: since each student's
values only grow, that counts exactly the acks the store forgot. A backwards move is a read
lower than an earlier read of the same student's progress.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
from google.protobuf.duration_pb2 import Duration

from devstack.stack import Stack, StackConfig
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from mesh.db import libpq_url
from svc_user.tokens import AccessTokens, load_private_key

TARGETS = {
    "course": ("course", 0),
    "progress-flusher": ("progress-flusher", 0),
    "state-valkey": ("valkey-state", 0),
}
ONLY_COURSE = {"user": 1, "course": 1, "quiz": 0, "live": 0, "analytics": 0}
# A short flush interval and lease keep the run short; neither changes what may be lost.
FAST_FLUSH = {
    "PROGRESS_FLUSHER_FLUSH_INTERVAL_SECONDS": "0.5",
    "PROGRESS_FLUSHER_FLUSH_LEASE_SECONDS": "3",
}
STEP_MS = 1000
VIDEO_SECONDS = 36_000
CALL_TIMEOUT = 2.0
FINAL_READ_TIMEOUT = 20.0


@dataclass
class Viewer:
    user_id: str
    video_id: str
    auth: tuple[tuple[str, str]]
    acked: list[int] = field(default_factory=list)  # every acknowledged `watched`, in order
    reads: list[int] = field(default_factory=list)  # every `watched` a read returned, in order
    sent: int = 0
    failed: int = 0
    codes: Counter[str] = field(default_factory=Counter)  # the failures' status codes


@dataclass(frozen=True)
class Report:
    target: str
    students: int
    sent: int
    acked: int
    failed: int
    lost_read: int  # acked updates above what GetVideoProgress returns after the run
    lost_postgres: int  # acked updates above courses.video_progress after the flush
    backwards: int  # reads lower than an earlier read of the same progress
    reads: int
    flushed_in_s: float
    failure_codes: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        share = 100.0 * max(self.lost_read, self.lost_postgres) / max(self.acked, 1)
        return (
            f"kill -9 {self.target}: {self.students} students, sent {self.sent}, "
            f"acked {self.acked}, failed {self.failed} {self.failure_codes or ''}; lost after "
            "restart: "
            f"{self.lost_read} (read-back) / {self.lost_postgres} (Postgres) = {share:.3f} %; "
            f"backwards moves {self.backwards} in {self.reads} reads; "
            f"Postgres caught up in {self.flushed_in_s:.1f} s"
        )


@contextmanager
def fast_flush_env() -> Iterator[None]:
    """The services inherit the environment at start (and keep it on restart)."""
    saved = {k: os.environ.get(k) for k in FAST_FLUSH}
    os.environ.update(FAST_FLUSH)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def private_stack(data_dir: Path) -> Stack:
    with fast_flush_env():
        stack = Stack(StackConfig.for_tests(data_dir, replicas=ONLY_COURSE, with_envoy=False))
        stack.start(timeout=180)
    return stack


async def set_up(stub: CourseServiceStub, signer: AccessTokens, students: int) -> list[Viewer]:
    """One published course with one video per student, every student enrolled."""

    def auth(user_id: str, *roles: str) -> tuple[tuple[str, str]]:
        token = signer.mint(user_id, ["student", *roles], session_id=str(uuid.uuid4()))
        return (("authorization", f"Bearer {token}"),)

    teacher = auth(str(uuid.uuid4()), "instructor")
    course = pb.Course(
        title=f"Loss {uuid.uuid4().hex[:8]}",
        description="Progress loss measurement.",
        category="bench",
        level=pb.COURSE_LEVEL_BEGINNER,
        language="en",
    )
    created = await stub.CreateCourse(
        pb.CreateCourseRequest(course=course, idempotency_key=uuid.uuid4().hex), metadata=teacher
    )
    course_id = created.course.course_id
    viewers = []
    for _ in range(students):
        video = pb.Video(title="Loss video", duration=Duration(seconds=VIDEO_SECONDS))
        made = await stub.CreateVideo(
            pb.CreateVideoRequest(
                course_id=course_id, video=video, idempotency_key=uuid.uuid4().hex
            ),
            metadata=teacher,
        )
        user_id = str(uuid.uuid4())
        viewers.append(Viewer(user_id, made.video.video_id, auth(user_id)))
    await stub.PublishCourse(pb.PublishCourseRequest(course_id=course_id), metadata=teacher)
    for v in viewers:
        await stub.Enroll(pb.EnrollRequest(course_id=course_id), metadata=v.auth)
    return viewers


async def send(stub: CourseServiceStub, viewer: Viewer, period: float, until: float) -> None:
    """Strictly increasing `watched` every `period` s; an update counts only once acked."""
    next_at = time.monotonic()
    while time.monotonic() < until and (viewer.sent + 1) * STEP_MS <= VIDEO_SECONDS * 1000:
        viewer.sent += 1
        watched = viewer.sent * STEP_MS
        ms = Duration(seconds=watched // 1000, nanos=(watched % 1000) * 1_000_000)
        try:
            await stub.UpdateVideoProgress(
                pb.UpdateVideoProgressRequest(video_id=viewer.video_id, position=ms, watched=ms),
                metadata=viewer.auth,
                timeout=CALL_TIMEOUT,
            )
            viewer.acked.append(watched)
        except grpc.aio.AioRpcError as exc:
            viewer.failed += 1
            viewer.codes[exc.code().name] += 1
        next_at += period
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def read(
    stub: CourseServiceStub, viewer: Viewer, *, limit_s: float = CALL_TIMEOUT, wait: bool = False
) -> int | None:
    """The viewer's watched value; `wait` holds the call until the channel has reconnected
    (the final read-back must not count a channel still in reconnect back-off as a loss)."""
    try:
        reply = await stub.GetVideoProgress(
            pb.GetVideoProgressRequest(video_id=viewer.video_id),
            metadata=viewer.auth,
            timeout=limit_s,
            wait_for_ready=wait,
        )
    except grpc.aio.AioRpcError:
        return None
    watched = reply.progress.watched.ToMilliseconds()
    viewer.reads.append(watched)
    return watched


async def poll_reads(
    stub: CourseServiceStub, viewers: list[Viewer], period: float, until: float
) -> None:
    while time.monotonic() < until:
        await asyncio.gather(*(read(stub, v) for v in viewers))
        await asyncio.sleep(period)


def postgres_watched(database_url: str, viewers: list[Viewer]) -> dict[str, int]:
    libpq = libpq_url(database_url)
    with psycopg.connect(libpq, autocommit=True) as sql:
        rows = sql.execute(
            "SELECT user_id, watched_ms FROM courses.video_progress WHERE video_id = ANY(%s)",
            ([uuid.UUID(v.video_id) for v in viewers],),
        ).fetchall()
    return {str(user): int(watched) for user, watched in rows}


async def measure(
    stack: Stack,
    target: str,
    *,
    students: int = 20,
    rate_per_student: float = 10.0,
    before_s: float = 3.0,
    after_s: float = 3.0,
    flush_deadline_s: float = 30.0,
) -> Report:
    """Run the senders, SIGKILL `target` after `before_s`, restart it, keep sending for
    `after_s`, then wait (bounded) for Postgres to catch up and count the losses."""
    name, index = TARGETS[target]
    endpoints = stack.endpoints
    signer = AccessTokens(load_private_key(endpoints.jwt_private_key_file), 3600)
    async with grpc.aio.insecure_channel(endpoints.services["course"][0]) as channel:
        stub = CourseServiceStub(channel)
        viewers = await set_up(stub, signer, students)
        start = time.monotonic()
        until = start + before_s + after_s
        period = 1.0 / rate_per_student
        load = [asyncio.create_task(send(stub, v, period, until)) for v in viewers]
        load.append(asyncio.create_task(poll_reads(stub, viewers, 0.2, until)))
        await asyncio.sleep(max(0.0, start + before_s - time.monotonic()))
        stack.kill(name, index)
        await asyncio.to_thread(stack.restart, name, index)
        await asyncio.gather(*load)

        # The read-back first: what a viewer sees right after the run.
        finals = [await read(stub, v, limit_s=FINAL_READ_TIMEOUT, wait=True) for v in viewers]
        caught_up = time.monotonic()
        deadline = caught_up + flush_deadline_s
        while True:
            stored = await asyncio.to_thread(postgres_watched, endpoints.database_url, viewers)
            if all(stored.get(v.user_id, 0) >= max(v.acked, default=0) for v in viewers):
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        flushed_in = time.monotonic() - caught_up

    lost_read = sum(
        sum(a > (f if f is not None else -1) for a in v.acked)
        for v, f in zip(viewers, finals, strict=True)
    )
    lost_pg = sum(sum(a > stored.get(v.user_id, 0) for a in v.acked) for v in viewers)
    backwards = sum(backward_moves(v.reads) for v in viewers)
    return Report(
        target=target,
        students=students,
        sent=sum(v.sent for v in viewers),
        acked=sum(len(v.acked) for v in viewers),
        failed=sum(v.failed for v in viewers),
        lost_read=lost_read,
        lost_postgres=lost_pg,
        backwards=backwards,
        reads=sum(len(v.reads) for v in viewers),
        flushed_in_s=flushed_in,
        failure_codes=dict(sum((v.codes for v in viewers), Counter[str]())),
    )


def backward_moves(reads: list[int]) -> int:
    """Reads lower than the highest read before them."""
    moves, top = 0, -1
    for value in reads:
        moves += value < top
        top = max(top, value)
    return moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kill", choices=sorted(TARGETS), required=True)
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="updates/s per student")
    parser.add_argument("--before", type=float, default=5.0, help="seconds before the kill")
    parser.add_argument("--after", type=float, default=5.0, help="seconds after the restart")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="progress-loss-") as tmp:
        stack = private_stack(Path(tmp))
        try:
            report = asyncio.run(
                measure(
                    stack,
                    args.kill,
                    students=args.students,
                    rate_per_student=args.rate,
                    before_s=args.before,
                    after_s=args.after,
                )
            )
        finally:
            stack.stop()
    print(report.render())


if __name__ == "__main__":
    main()
