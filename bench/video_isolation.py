"""Issue 15's isolation figure: GetCourse and who-am-I (GetMe) p95 with one transcode running,
beside the same with none, in one run (target <= 1.5x).

The headline load is an open loop at a fixed, moderate rate (`rate` calls/s of each, 100 by
default: about a tenth of what the two API processes serve flat out on two cores, i.e. the
API has head room, as a production box should). That is what a user feels: the same requests
arriving whether or not a video is being transcoded, each timed from its planned start. A
closed loop of callers at saturation is reported too, but it mostly measures throughput lost
to the encoder (every caller always has a call in flight, so any CPU ffmpeg gets lengthens the
queue), not the latency of a request that arrives at a healthy load.

"None" is the same transcode paused: during one job the bench alternates windows with its
ffmpeg stopped (SIGSTOP) and running (SIGCONT), `rounds` times, so a neighbour's load that
rises or falls during the run weighs on both sides (this box is shared; runs minutes apart
differ by more than the effect). One idle window before the upload checks that a paused
transcode costs the same as none.
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench.schedule import Window, arrivals
from bench.video_runs import auth_for, new_video
from devstack.runstate import Endpoints, read_pids
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from svc_course.testclip import make_clip
from svc_course.upload import upload_file

Call = Callable[[], Awaitable[object]]
# Long enough that the job outlives every busy window even on an idle box (~3 video-s per s).
CLIP_SECONDS = 240.0
CLOSED_CALLERS = 8


def p95(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")


async def open_loop(calls: list[Call], rate: float, seconds: float) -> list[list[float]]:
    """Each call at `rate` per second on a fixed schedule (staggered), ms from planned start."""
    latencies: list[list[float]] = [[] for _ in calls]
    start = time.perf_counter_ns()
    window = Window.after(start, 0.0, seconds)
    planned = sorted(
        (t, i)
        for i in range(len(calls))
        for t in arrivals(rate, window, poisson=False, rng=random.Random(i), phase=i / len(calls))
    )

    async def one(i: int, due_ns: int) -> None:
        await calls[i]()
        latencies[i].append((time.perf_counter_ns() - due_ns) / 1e6)

    tasks = []
    for due_ns, i in planned:
        delay = (due_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due_ns)))
    await asyncio.gather(*tasks)
    return latencies


async def closed_loop(call: Call, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < end:
            began = time.perf_counter()
            await call()
            latencies.append(1000 * (time.perf_counter() - began))

    await asyncio.gather(*(caller() for _ in range(CLOSED_CALLERS)))
    return latencies


def encoder(e: Endpoints) -> psutil.Process | None:
    """The transcoder's running ffmpeg (the HLS ladder, not the poster or a probe)."""
    for record in read_pids(Path(e.data_dir))[1]:
        if record.key.startswith("transcoder-"):
            for child in psutil.Process(record.pid).children(recursive=True):
                try:
                    if child.name() == "ffmpeg" and "-filter_complex" in child.cmdline():
                        return child
                except psutil.NoSuchProcess:
                    continue
    return None


def group_nice(pid: int, nice: int) -> bool:
    """Nice the scheduling group (autogroup) of ffmpeg's session; False where we may not."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        return False
    return True


class Figures:
    """Latencies per (load, state, call) pooled over rounds, plus per-round p95 for the noise."""

    def __init__(self) -> None:
        self.pooled: dict[tuple[str, str, int], list[float]] = {}
        self.rounds: dict[tuple[str, str, int], list[float]] = {}

    def add(self, load: str, state: str, i: int, latencies: list[float]) -> None:
        self.pooled.setdefault((load, state, i), []).extend(latencies)
        self.rounds.setdefault((load, state, i), []).append(round(p95(latencies), 2))

    def ratio(self, load: str, i: int, state: str = "busy") -> float:
        return p95(self.pooled[(load, state, i)]) / p95(self.pooled[(load, "paused", i)])

    def report(self, load: str, i: int) -> dict[str, Any]:
        paused = self.rounds[(load, "paused", i)]
        busy = self.rounds[(load, "busy", i)]
        full = self.rounds.get((load, "full_weight", i))
        return {
            "idle_p95_ms": round(p95(self.pooled.get((load, "idle", i), [])), 2),
            "paused_p95_ms": round(p95(self.pooled[(load, "paused", i)]), 2),
            "busy_p95_ms": round(p95(self.pooled[(load, "busy", i)]), 2),
            "ratio": self.ratio(load, i),
            # Each round's running window against its own paused one: steadier on a shared box.
            "median_round_ratio": statistics.median(
                b / p for b, p in zip(busy, paused, strict=True)
            ),
            "paused_rounds_p95_ms": paused,
            "busy_rounds_p95_ms": busy,
            # ffmpeg's session group at nice 0, as before the worker niced it: the A/B.
            "full_weight_p95_ms": round(p95(self.pooled[(load, "full_weight", i)]), 2)
            if full
            else None,
            "full_weight_ratio": self.ratio(load, i, "full_weight") if full else None,
            "full_weight_rounds_p95_ms": full,
            "calls": len(self.pooled[(load, "busy", i)]),
        }


async def isolation(
    stub: CourseServiceStub, e: Endpoints, rate: float, rounds: int, window: float, work: Path
) -> dict[str, Any]:
    auth = auth_for(e, "instructor")
    video_id = await new_video(stub, auth)
    got = await stub.GetVideo(pb.GetVideoRequest(video_id=video_id), metadata=auth)
    course_id = got.video.course_id
    clip = make_clip(work / "iso.mp4", seconds=CLIP_SECONDS, size="1280x720")
    async with grpc.aio.insecure_channel(e.services["user"][0]) as user_channel:
        users = UserServiceStub(user_channel)
        email = f"bench-{uuid.uuid4().hex[:8]}@bench.local"
        await users.Register(user_pb.RegisterRequest(
            email=email, password="correct horse", display_name="B",
            idempotency_key=uuid.uuid4().hex,
        ))  # fmt: skip
        login = await users.Login(user_pb.LoginRequest(email=email, password="correct horse"))
        me_auth = (("authorization", f"Bearer {login.tokens.access_token}"),)

        async def get_course() -> object:
            return await stub.GetCourse(pb.GetCourseRequest(course_id=course_id), metadata=auth)

        async def who_am_i() -> object:
            return await users.GetMe(user_pb.GetMeRequest(), metadata=me_auth)

        calls: list[Call] = [get_course, who_am_i]
        figures = Figures()
        await open_loop(calls, rate, 2.0)  # warm channels, caches and pools
        for i, latencies in enumerate(await open_loop(calls, rate, window)):
            figures.add("open", "idle", i, latencies)
        await upload_file(stub, auth, clip, video_id=video_id)
        await wait_state(stub, auth, video_id, (pb.TRANSCODING_STATE_RUNNING,), 120.0)
        ffmpeg = None
        for _ in range(300):  # the worker starts ffmpeg right after marking the job RUNNING
            if (ffmpeg := encoder(e)) is not None:
                break
            await asyncio.sleep(0.1)
        if ffmpeg is None:
            raise RuntimeError("the transcoder's ffmpeg did not show up")
        states = ["paused", "busy"]
        if group_nice(ffmpeg.pid, 19):  # what the worker set; writable means we may A/B it
            states.append("full_weight")
        cpu = ffmpeg_busy = 0.0
        try:
            for _ in range(rounds):
                for state in states:
                    ffmpeg.send_signal(signal.SIGSTOP if state == "paused" else signal.SIGCONT)
                    if state != "paused":
                        group_nice(ffmpeg.pid, 0 if state == "full_weight" else 19)
                        await asyncio.sleep(0.5)  # let its threads spin up again
                        began, t = time.monotonic(), ffmpeg.cpu_times()
                    for i, latencies in enumerate(await open_loop(calls, rate, window)):
                        figures.add("open", state, i, latencies)
                    for i, call in enumerate(calls):
                        figures.add("closed", state, i, await closed_loop(call, window / 2))
                    if state == "busy":
                        now = ffmpeg.cpu_times()
                        cpu += now.user + now.system - t.user - t.system
                        ffmpeg_busy += time.monotonic() - began
            running_throughout = ffmpeg.is_running() and ffmpeg.status() != psutil.STATUS_ZOMBIE
        finally:
            ffmpeg.send_signal(signal.SIGCONT)
            group_nice(ffmpeg.pid, 19)
        # The rest of the job runs out before anything else is measured on this box.
        await wait_state(stub, auth, video_id, FINISHED, 1200.0)
    names = ("get_course", "who_am_i")
    return {
        "rate_per_call": rate,
        "rounds": rounds,
        "window_s": window,
        **{f"{n}_open": figures.report("open", i) for i, n in enumerate(names)},
        **{f"{n}_closed": figures.report("closed", i) for i, n in enumerate(names)},
        # Flat out with ffmpeg paused: what the fixed rate is a fraction of.
        **{
            f"{n}_closed_paused_calls_per_s": len(figures.pooled[("closed", "paused", i)])
            / (rounds * window / 2)
            for i, n in enumerate(names)
        },
        # What the encoder still got while the API was served: the price of isolation.
        "ffmpeg_cores_while_busy": cpu / ffmpeg_busy if ffmpeg_busy else 0.0,
        "transcode_running_throughout": running_throughout,
    }


FINISHED = (pb.TRANSCODING_STATE_SUCCEEDED, pb.TRANSCODING_STATE_FAILED)


async def wait_state(
    stub: CourseServiceStub, auth: tuple[tuple[str, str], ...], video_id: str,
    states: tuple[int, ...], within: float,
) -> None:  # fmt: skip
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        reply = await stub.GetTranscodingStatus(
            pb.GetTranscodingStatusRequest(video_id=video_id), metadata=auth
        )
        if reply.status.state in states:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the transcode did not reach {states} within {within:.0f} s")
