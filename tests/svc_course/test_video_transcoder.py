"""The transcoder worker on a stack of its own (short ack wait, two deliveries): a worker
killed with SIGKILL mid-job hands the job to its successor, which finishes it once; a job that
keeps failing is dead-lettered and its video marked FAILED with the reason."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import nats
import psycopg
import pytest
import pytest_asyncio

from devstack import seaweedfs
from devstack.runstate import Endpoints
from devstack.stack import Stack, StackConfig
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.events.v1 import course_events_pb2 as events
from mesh.db import libpq_url
from mesh.platform import NAMES
from svc_course.testclip import make_clip
from svc_course.transcode_queue import DEAD_LETTER_SUBJECT
from svc_course.upload import upload_file
from svc_course.upload_repository import SLOT_ROW
from svc_user.tokens import AccessTokens, load_private_key
from tests.people import People
from tests.svc_course.video_support import course_with_video, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

WORKER_ENV = {
    "TRANSCODER_ACK_WAIT_SECONDS": "3",
    "TRANSCODER_HEARTBEAT_SECONDS": "1",
    "TRANSCODER_MAX_DELIVERIES": "2",
    "COURSE_PLAYBACK_URL_TTL_SECONDS": "6",
}


@pytest.fixture(scope="module")
def worker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    replicas = {**dict.fromkeys(NAMES, 0), "course": 1}
    config = StackConfig.for_tests(
        tmp_path_factory.mktemp("transcoder"), replicas=replicas, with_envoy=False
    )
    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    stack = Stack(config)
    try:
        stack.start(timeout=180)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stub(worker_stack: Stack) -> AsyncIterator[CourseServiceStub]:
    async with grpc.aio.insecure_channel(worker_stack.endpoints.services["course"][0]) as ch:
        yield CourseServiceStub(ch)


@pytest.fixture(scope="module")
def team(worker_stack: Stack) -> People:
    key = load_private_key(worker_stack.endpoints.jwt_private_key_file)
    return People(AccessTokens(key, 3600))


def db(endpoints: Endpoints) -> psycopg.Connection:
    url = libpq_url(endpoints.database_url)
    return psycopg.connect(url, autocommit=True)


async def status_of(stub: CourseServiceStub, auth: object, video_id: str) -> pb.TranscodingStatus:
    reply = await stub.GetTranscodingStatus(
        pb.GetTranscodingStatusRequest(video_id=video_id),
        metadata=auth,  # type: ignore[arg-type]
    )
    return reply.status


async def stream_messages(endpoints: Endpoints, subject: str) -> list[bytes]:
    nc = await nats.connect(endpoints.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject, ordered_consumer=True)
        found = []
        for _ in range(1000):
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                break
            found.append(msg.data)
        return found
    finally:
        await nc.close()


async def test_video_transcoder_killed_mid_job_is_redelivered_and_finishes_once(
    worker_stack: Stack, stub: CourseServiceStub, team: People, tmp_path: Path
) -> None:
    teacher = team.instructor()
    _, video = await course_with_video(stub, teacher)
    source = make_clip(tmp_path / "long.mp4", seconds=20.0, size="1280x720")
    await upload_file(stub, teacher.auth, source, video_id=video.video_id)

    running = await eventually(
        lambda: status_of(stub, teacher.auth, video.video_id),
        lambda s: s.state == pb.TRANSCODING_STATE_RUNNING and s.progress_percent > 0,
        seconds=120,
    )
    assert running.attempt == 1
    worker_stack.kill("transcoder")
    worker_stack.restart("transcoder")

    final = await eventually(
        lambda: status_of(stub, teacher.auth, video.video_id),
        lambda s: s.state in (pb.TRANSCODING_STATE_SUCCEEDED, pb.TRANSCODING_STATE_FAILED),
        seconds=240,
    )
    assert final.state == pb.TRANSCODING_STATE_SUCCEEDED, final.error_message
    assert final.attempt == 2
    assert [r.name for r in final.renditions] == ["360p", "720p"]

    def transcoded(data: bytes) -> bool:
        return events.VideoTranscoded.FromString(data).video_id == video.video_id

    async def ours() -> list[bytes]:
        found = await stream_messages(worker_stack.endpoints, "elearn.course.video_transcoded")
        return [d for d in found if transcoded(d)]

    assert len(await eventually(ours, lambda found: len(found) >= 1, seconds=30)) == 1


async def test_video_transcoder_dead_letters_a_job_that_keeps_failing(
    worker_stack: Stack, stub: CourseServiceStub, team: People, tmp_path: Path
) -> None:
    endpoints = worker_stack.endpoints
    teacher = team.instructor()
    _, video = await course_with_video(stub, teacher)
    worker_stack.process("transcoder").stop()
    source = make_clip(tmp_path / "ok.mp4", seconds=2.0)
    result = await upload_file(stub, teacher.auth, source, video_id=video.video_id)
    # The source rots in storage after its check: every attempt will fail to read it.
    s3 = seaweedfs.client(
        seaweedfs.S3Env(
            endpoints.s3_url, endpoints.s3_access_key, endpoints.s3_secret_key, endpoints.s3_bucket
        )
    )
    key = f"videos/{video.video_id}/source/{result.upload_id}"
    s3.put_object(Bucket=endpoints.s3_bucket, Key=key, Body=b"corrupted" * 100)
    worker_stack.restart("transcoder")

    final = await eventually(
        lambda: status_of(stub, teacher.auth, video.video_id),
        lambda s: s.state == pb.TRANSCODING_STATE_FAILED,
        seconds=120,
    )
    assert final.attempt == 2  # TRANSCODER_MAX_DELIVERIES
    assert final.error_message
    got = await stub.GetVideo(pb.GetVideoRequest(video_id=video.video_id))
    assert got.video.state == pb.VIDEO_STATE_FAILED
    with db(endpoints) as conn:
        held = conn.execute(
            "SELECT slot_held FROM courses.video_uploads WHERE id = %s", (result.upload_id,)
        ).fetchone()
        assert held == (0,)
        used = conn.execute(
            "SELECT used FROM courses.transcode_slots WHERE id = %s", (SLOT_ROW,)
        ).fetchone()
        assert used is not None and used[0] >= 0
    dead = await stream_messages(endpoints, DEAD_LETTER_SUBJECT)
    assert any(json.loads(d)["upload_id"] == result.upload_id for d in dead)
    assert uuid.UUID(result.upload_id)


async def test_video_playback_link_stops_working_when_it_expires(
    worker_stack: Stack, stub: CourseServiceStub, team: People, tmp_path: Path
) -> None:
    teacher = team.instructor()
    _, video = await course_with_video(stub, teacher)
    await upload_file(stub, teacher.auth, make_clip(tmp_path / "c.mp4", seconds=2.0),
                      video_id=video.video_id)  # fmt: skip
    await eventually(
        lambda: status_of(stub, teacher.auth, video.video_id),
        lambda s: s.state == pb.TRANSCODING_STATE_SUCCEEDED,
        seconds=120,
    )
    link = await stub.GetPlaybackUrl(
        pb.GetPlaybackUrlRequest(video_id=video.video_id), metadata=teacher.auth
    )
    expires = link.expire_time.ToDatetime().replace(tzinfo=UTC)
    async with httpx.AsyncClient(timeout=5) as http:
        fresh = await http.get(link.url)
        assert fresh.status_code == 200
        segment = next(line for line in (await http.get(
            next(line for line in fresh.text.splitlines() if line.startswith("http"))
        )).text.splitlines() if line.startswith("http"))  # fmt: skip

        async def statuses() -> tuple[int, int]:
            return (await http.get(link.url)).status_code, (await http.get(segment)).status_code

        refused = await eventually(statuses, lambda codes: codes == (403, 403), seconds=30)
    assert refused == (403, 403)
    # Refused only once the promised lifetime was over (S3 counts whole seconds).
    assert datetime.now(UTC) >= expires - timedelta(seconds=1)
