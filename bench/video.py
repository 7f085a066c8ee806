"""Video pipeline figures (issue 15), beside their ceilings, in one run:

    python -m bench.video                     # against the running stack (.stack/endpoints.json)
    python -m bench.video --own-stack         # starts a stack of its own on free ports

- upload: MiB/s of a file sent as presigned parts through the edge, beside one plain presigned
  PUT of the same bytes straight to the S3 port; the course service's CPU seconds per GiB;
- transcoding: seconds of video per wall second for the ladder through the pipeline, beside
  the same ffmpeg command run by hand on the same clip;
- isolation: GetCourse and who-am-I p95 with one transcode running, beside none;
- queue bound: 150 concurrent StartVideoUpload against the free slots of the cap, with the
  multipart uploads left behind by the refused ones counted.

Not in the rate-driven scenario registry: these are one-shot workflows, not calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import psutil

from devstack import seaweedfs
from devstack.runstate import Endpoints, read_pids
from devstack.stack import Stack, StackConfig
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from svc_course.media_probe import FFMPEG
from svc_course.testclip import make_clip
from svc_course.transcoder.ladder import hls_command, rungs_for
from svc_course.upload import upload_file
from svc_user.tokens import AccessTokens, load_private_key

MIB = 1024 * 1024


def auth_for(e: Endpoints, *roles: str) -> tuple[tuple[str, str], ...]:
    signer = AccessTokens(load_private_key(e.jwt_private_key_file), 3600)
    token = signer.mint(str(uuid.uuid4()), ["student", *roles], session_id=str(uuid.uuid4()))
    return (("authorization", f"Bearer {token}"),)


async def new_video(stub: CourseServiceStub, auth: tuple[tuple[str, str], ...]) -> str:
    course = await stub.CreateCourse(
        pb.CreateCourseRequest(
            course=pb.Course(
                title="Bench", description="b", category="bench", language="en",
                level=pb.COURSE_LEVEL_BEGINNER,
            ),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=auth,
    )  # fmt: skip
    video = await stub.CreateVideo(
        pb.CreateVideoRequest(
            course_id=course.course.course_id,
            video=pb.Video(title="Bench video"),
            idempotency_key=uuid.uuid4().hex,
        ),
        metadata=auth,
    )
    return video.video.video_id


def course_cpu_seconds(e: Endpoints) -> float:
    _, children = read_pids(Path(e.data_dir))
    total = 0.0
    for child in children:
        if child.key.startswith("course-"):
            times = psutil.Process(child.pid).cpu_times()
            total += times.user + times.system
    return total


async def bench_upload(stub: CourseServiceStub, e: Endpoints, size_mib: int, work: Path) -> None:
    auth = auth_for(e, "instructor")
    path = work / "payload.mp4"
    with path.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))
    video_id = await new_video(stub, auth)
    cpu_before = course_cpu_seconds(e)
    began = time.perf_counter()
    # Parts only (random bytes are no video, so Complete would refuse them); then abort.
    result = await upload_file(
        stub, auth, path, video_id=video_id, content_type="video/mp4", stop_after_parts=10**6
    )
    presigned = time.perf_counter() - began
    cpu = course_cpu_seconds(e) - cpu_before
    await stub.AbortVideoUpload(
        pb.AbortVideoUploadRequest(video_id=video_id, upload_id=result.upload_id), metadata=auth
    )
    s3 = seaweedfs.client(seaweedfs.S3Env(e.s3_url, e.s3_access_key, e.s3_secret_key, e.s3_bucket))
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": e.s3_bucket, "Key": "bench/plain"}, ExpiresIn=3600
    )
    began = time.perf_counter()
    await asyncio.to_thread(_put_file, url, path)
    plain = time.perf_counter() - began
    s3.delete_object(Bucket=e.s3_bucket, Key="bench/plain")
    print(f"upload {size_mib} MiB: presigned parts via edge {size_mib / presigned:.0f} MiB/s, "
          f"plain PUT to S3 port {size_mib / plain:.0f} MiB/s "
          f"(ratio {plain / presigned:.2f}); course service CPU "
          f"{cpu / (size_mib / 1024):.2f} s per GiB")  # fmt: skip


def _put_file(url: str, path: Path) -> None:
    with path.open("rb") as f:
        request = urllib.request.Request(url, data=f, method="PUT")
        request.add_header("Content-Length", str(path.stat().st_size))
        urllib.request.urlopen(request, timeout=600).read()


async def bench_transcode(
    stub: CourseServiceStub, e: Endpoints, seconds: float, work: Path
) -> None:
    auth = auth_for(e, "instructor")
    clip = make_clip(work / "clip.mp4", seconds=seconds, size="1280x720")
    out = work / "by-hand"
    out.mkdir()
    argv = hls_command(FFMPEG, str(clip), out, rungs_for(720), has_audio=True, threads=2,
                       segment_seconds=4)  # fmt: skip
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await proc.wait()
    by_hand = time.perf_counter() - began
    video_id = await new_video(stub, auth)
    began = time.perf_counter()
    await upload_file(stub, auth, clip, video_id=video_id)
    stream = stub.WatchTranscodingStatus(
        pb.WatchTranscodingStatusRequest(video_id=video_id), metadata=auth, timeout=1800
    )
    final = None
    async for reply in stream:
        final = reply.status
    pipeline = time.perf_counter() - began
    assert final is not None and final.state == pb.TRANSCODING_STATE_SUCCEEDED, final
    print(f"transcode {seconds:.0f} s 720p clip (360p+720p ladder, 2 threads): pipeline "
          f"{seconds / pipeline:.2f} video-s per s (upload to READY), by hand "
          f"{seconds / by_hand:.2f} (overhead {100 * (pipeline / by_hand - 1):.0f} %); "
          f"per core {seconds / by_hand / 2:.2f}")  # fmt: skip


async def bench_queue(stub: CourseServiceStub, e: Endpoints, calls: int) -> None:
    auth = auth_for(e, "instructor")
    videos = await asyncio.gather(*(new_video(stub, auth) for _ in range(calls)))

    async def start(video_id: str) -> pb.StartVideoUploadResponse | grpc.aio.AioRpcError:
        try:
            return await stub.StartVideoUpload(
                pb.StartVideoUploadRequest(
                    video_id=video_id, file_name="a.mp4", content_type="video/mp4",
                    size_bytes=MIB, idempotency_key=uuid.uuid4().hex,
                ),
                metadata=auth,
            )  # fmt: skip
        except grpc.aio.AioRpcError as exc:
            return exc

    results = await asyncio.gather(*(start(v) for v in videos))
    accepted = [
        (v, r)
        for v, r in zip(videos, results, strict=True)
        if isinstance(r, pb.StartVideoUploadResponse)
    ]
    exhausted = sum(
        1 for r in results
        if isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    )  # fmt: skip
    s3 = seaweedfs.client(seaweedfs.S3Env(e.s3_url, e.s3_access_key, e.s3_secret_key, e.s3_bucket))
    refused_ids = {
        v
        for v, r in zip(videos, results, strict=True)
        if not isinstance(r, pb.StartVideoUploadResponse)
    }
    listing = s3.list_multipart_uploads(Bucket=e.s3_bucket, Prefix="videos/")
    orphans = sum(1 for u in listing.get("Uploads", []) if u["Key"].split("/")[1] in refused_ids)
    for video_id, reply in accepted:
        await stub.AbortVideoUpload(
            pb.AbortVideoUploadRequest(video_id=video_id, upload_id=reply.upload_id),
            metadata=auth,
        )
    print(f"queue bound: {calls} concurrent starts -> {len(accepted)} accepted, {exhausted} "
          f"RESOURCE_EXHAUSTED, {orphans} orphaned multipart uploads")  # fmt: skip


async def p95_ms(call: Callable[[], Awaitable[object]], calls: int, concurrency: int) -> float:
    latencies: list[float] = []
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            began = time.perf_counter()
            await call()
            latencies.append(1000 * (time.perf_counter() - began))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    return latencies[int(0.95 * (len(latencies) - 1))]


async def bench_isolation(stub: CourseServiceStub, e: Endpoints, work: Path) -> None:
    """GetCourse and who-am-I (GetMe) p95 with no transcode, then with one running."""
    auth = auth_for(e, "instructor")
    video_id = await new_video(stub, auth)
    course_id = (
        await stub.GetVideo(pb.GetVideoRequest(video_id=video_id), metadata=auth)
    ).video.course_id
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

        idle = [await p95_ms(get_course, 800, 8), await p95_ms(who_am_i, 800, 8)]
        clip = make_clip(work / "iso.mp4", seconds=90.0, size="1280x720")
        await upload_file(stub, auth, clip, video_id=video_id)
        for _ in range(600):
            status = await stub.GetTranscodingStatus(
                pb.GetTranscodingStatusRequest(video_id=video_id), metadata=auth
            )
            if status.status.state == pb.TRANSCODING_STATE_RUNNING:
                break
            await asyncio.sleep(0.1)
        busy = [await p95_ms(get_course, 800, 8), await p95_ms(who_am_i, 800, 8)]
        status = await stub.GetTranscodingStatus(
            pb.GetTranscodingStatusRequest(video_id=video_id), metadata=auth
        )
        still = status.status.state == pb.TRANSCODING_STATE_RUNNING
    print(f"isolation (p95 ms, 8 concurrent callers): GetCourse {idle[0]:.1f} idle, "
          f"{busy[0]:.1f} transcoding ({busy[0] / idle[0]:.2f}x); who-am-I {idle[1]:.1f} idle, "
          f"{busy[1]:.1f} transcoding ({busy[1] / idle[1]:.2f}x); transcode still running "
          f"at the end: {still}")  # fmt: skip


async def run(e: Endpoints, args: argparse.Namespace) -> None:
    target = e.services["course"][0]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = CourseServiceStub(channel)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if "queue" in args.only:
                await bench_queue(stub, e, args.queue_calls)
            if "upload" in args.only:
                await bench_upload(stub, e, args.size_mib, work)
            if "transcode" in args.only:
                await bench_transcode(stub, e, args.clip_seconds, work)
            if "isolation" in args.only:
                await bench_isolation(stub, e, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=Path, default=Path(".stack/endpoints.json"))
    parser.add_argument("--own-stack", action="store_true")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--clip-seconds", type=float, default=60.0)
    parser.add_argument("--queue-calls", type=int, default=150)
    parser.add_argument(
        "--only",
        default="queue,upload,transcode,isolation",
        help="comma-separated subset of queue,upload,transcode,isolation",
    )
    args = parser.parse_args()
    if not args.own_stack:
        asyncio.run(run(Endpoints.load(args.endpoints), args))
        return
    with tempfile.TemporaryDirectory() as tmp:
        replicas = {"quiz": 0, "live": 0, "analytics": 0}
        with Stack(StackConfig.for_tests(Path(tmp), replicas=replicas)) as stack:
            asyncio.run(run(stack.endpoints, args))


if __name__ == "__main__":
    main()
