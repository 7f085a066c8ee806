"""Progress survives crashes (issue 11, item 5 and the "Loss" benchmark): SIGKILL of svc_course
or of its progress-flusher worker or of the state Valkey during a burst of updates loses no
acknowledged update beyond what the AOF's one-second fsync allows, and progress never moves
backwards.

The session `stack` is shared, so its processes are never killed: this module starts a private
stack (svc_user and svc_course, no Envoy) with a short flush interval. The measurement itself
is bench.progress_loss, the same code the benchmark reports from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as redis
from google.protobuf.duration_pb2 import Duration

from bench.progress_loss import (
    STEP_MS,
    Report,
    backward_moves,
    measure,
    postgres_watched,
    private_stack,
    read,
    send,
    set_up,
)
from devstack.stack import Stack
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from svc_user.tokens import AccessTokens, load_private_key

STUDENTS = 10
RATE = 10.0  # updates/s per student
FLUSH_DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = private_stack(Path(tmp_path_factory.mktemp("progress-crash")))
    try:
        yield stack
    finally:
        stack.stop()


async def run(stack: Stack, target: str) -> Report:
    return await measure(
        stack,
        target,
        students=STUDENTS,
        rate_per_student=RATE,
        before_s=2.0,
        after_s=4.0,
        flush_deadline_s=FLUSH_DEADLINE_S,
    )


def test_backward_moves_counts_reads_below_an_earlier_read() -> None:
    assert backward_moves([1, 2, 2, 5]) == 0
    assert backward_moves([1, 5, 3, 4, 6, 2]) == 3


async def test_kill_9_of_svc_course_loses_no_acknowledged_update(private: Stack) -> None:
    report = await run(private, "course")
    assert report.acked > STUDENTS * RATE, report.render()  # the run did update, both sides
    assert report.lost_read == 0, report.render()
    assert report.lost_postgres == 0, report.render()
    assert report.backwards == 0, report.render()


async def test_kill_9_of_the_flusher_loses_nothing_and_no_update_waits_for_it(
    private: Stack,
) -> None:
    report = await run(private, "progress-flusher")
    # Updates never touch the flusher: none failed while it was down and restarting.
    assert report.acked > STUDENTS * RATE and report.failed == 0, report.render()
    # Its claims expired and were re-taken after the restart: all of it reached Postgres.
    assert report.lost_read == 0, report.render()
    assert report.lost_postgres == 0, report.render()
    assert report.backwards == 0, report.render()


async def test_kill_9_of_the_state_valkey_loses_at_most_one_second(private: Stack) -> None:
    report = await run(private, "state-valkey")
    one_second = int(STUDENTS * RATE)
    assert report.acked > one_second, report.render()
    # While it is down and restarting, a caller is told to retry, never INTERNAL.
    assert set(report.failure_codes) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, report.render()
    assert report.lost_read <= one_second, report.render()
    assert report.lost_postgres <= one_second, report.render()
    assert report.backwards == 0, report.render()


async def test_a_read_never_shows_less_than_postgres_after_the_state_lost_writes(
    private: Stack,
) -> None:
    """The window a machine crash costs the AOF: the flusher committed a sample to Postgres,
    then the state server came back without it. Rewinding the hash stands in for that replay."""
    endpoints = private.endpoints
    signer = AccessTokens(load_private_key(endpoints.jwt_private_key_file), 3600)
    async with grpc.aio.insecure_channel(endpoints.services["course"][0]) as channel:
        stub = CourseServiceStub(channel)
        [viewer] = await set_up(stub, signer, 1)
        await send(stub, viewer, 0.0, time.monotonic() + 0.5)
        top = max(viewer.acked)
        assert top >= 2 * STEP_MS
        deadline = time.monotonic() + FLUSH_DEADLINE_S
        while postgres_watched(endpoints.database_url, [viewer]).get(viewer.user_id, 0) < top:
            assert time.monotonic() < deadline, "the flusher never wrote the samples"
            await asyncio.sleep(0.1)
        state = redis.Redis.from_url(endpoints.state_url)
        try:
            key = f"vp:{viewer.user_id}:{viewer.video_id}"
            assert await state.hset(key, mapping={"w": STEP_MS, "p": STEP_MS}) == 0
        finally:
            await state.aclose()
        assert await read(stub, viewer) == top


async def test_an_update_after_the_state_restarted_behind_postgres_reseeds_first(
    private: Stack,
) -> None:
    """The same window seen by the write path: after a restart (a new run id, so the viewer's
    seeded mark belongs to the server's previous life) with a rewound hash, the next update
    merges the Postgres row back in before it applies, so its reply does not move backwards.
    Rewriting the mark's epoch stands in for the restart; the rewound hash for the lost second."""
    endpoints = private.endpoints
    signer = AccessTokens(load_private_key(endpoints.jwt_private_key_file), 3600)
    async with grpc.aio.insecure_channel(endpoints.services["course"][0]) as channel:
        stub = CourseServiceStub(channel)
        [viewer] = await set_up(stub, signer, 1)
        await send(stub, viewer, 0.0, time.monotonic() + 0.5)
        top = max(viewer.acked)
        assert top >= 3 * STEP_MS
        deadline = time.monotonic() + FLUSH_DEADLINE_S
        while postgres_watched(endpoints.database_url, [viewer]).get(viewer.user_id, 0) < top:
            assert time.monotonic() < deadline, "the flusher never wrote the samples"
            await asyncio.sleep(0.1)
        state = redis.Redis.from_url(endpoints.state_url, decode_responses=True)
        try:
            key = f"vp:{viewer.user_id}:{viewer.video_id}"
            course_id = await state.hget(key, "c")
            assert isinstance(course_id, str)
            assert await state.hset(key, mapping={"w": STEP_MS, "p": STEP_MS, "f": STEP_MS}) == 0
            mark = f"vp:seeded:{viewer.user_id}:{course_id}"
            assert await state.set(mark, "a-previous-life", xx=True, keepttl=True)
        finally:
            await state.aclose()
        ms = Duration(seconds=2 * STEP_MS // 1000, nanos=(2 * STEP_MS % 1000) * 1_000_000)
        reply = await stub.UpdateVideoProgress(
            pb.UpdateVideoProgressRequest(video_id=viewer.video_id, position=ms, watched=ms),
            metadata=viewer.auth,
        )
        assert reply.progress.watched.ToMilliseconds() == top
        assert reply.progress.furthest.ToMilliseconds() == top
        assert await read(stub, viewer) == top
