"""The four video measurements of issue 15, each beside its ceiling in the same run (see
bench.video for the command line). Each returns a flat dict of figures for the report."""

from __future__ import annotations

import asyncio
import os
import resource
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import psutil

from devstack import seaweedfs
from devstack.runstate import Endpoints, read_pids
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from svc_course.media_probe import FFMPEG, MEDIA_ENV, lower_priority
from svc_course.settings import TranscoderSettings
from svc_course.testclip import make_clip
from svc_course.transcoder.ladder import hls_command, rungs_for
from svc_course.upload import upload_file
from svc_user.tokens import AccessTokens, load_private_key

MIB = 1024 * 1024
Auth = tuple[tuple[str, str], ...]
SERVICES = ("user-", "course-", "quiz-", "live-", "analytics-")


def auth_for(e: Endpoints, *roles: str) -> Auth:
    signer = AccessTokens(load_private_key(e.jwt_private_key_file), 3600)
    token = signer.mint(str(uuid.uuid4()), ["student", *roles], session_id=str(uuid.uuid4()))
    return (("authorization", f"Bearer {token}"),)


async def new_video(stub: CourseServiceStub, auth: Auth) -> str:
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


def cpu_seconds(e: Endpoints, prefixes: tuple[str, ...], *, children: bool = False) -> float:
    """CPU time of the stack's processes whose key starts with one of `prefixes` (with
    `children`, of the processes they started and reaped: the transcoder's ffmpeg runs)."""
    total = 0.0
    for record in read_pids(Path(e.data_dir))[1]:
        if record.key.startswith(prefixes):
            t = psutil.Process(record.pid).cpu_times()
            total += t.children_user + t.children_system if children else t.user + t.system
    return total


def s3_client(e: Endpoints) -> Any:
    return seaweedfs.client(
        seaweedfs.S3Env(e.s3_url, e.s3_access_key, e.s3_secret_key, e.s3_bucket)
    )


async def upload(stub: CourseServiceStub, e: Endpoints, size_mib: int, work: Path) -> dict:
    """Presigned ~10 MiB parts through the edge (4 at a time, as the upload tool sends them)
    against one plain presigned PUT of the same bytes straight to the S3 port."""
    auth = auth_for(e, "instructor")
    path = work / "payload.mp4"
    with path.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))
    video_id = await new_video(stub, auth)
    s3 = s3_client(e)
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": e.s3_bucket, "Key": "bench/plain"}, ExpiresIn=3600
    )

    async def plain_put() -> tuple[float, float]:
        """Wall seconds, and the services' CPU seconds meanwhile: they take no part in it, so
        that is their background (pollers, flushers, health), subtracted below."""
        cpu = cpu_seconds(e, SERVICES)
        began = time.perf_counter()
        await asyncio.to_thread(_put_file, url, path)
        wall = time.perf_counter() - began
        s3.delete_object(Bucket=e.s3_bucket, Key="bench/plain")
        return wall, cpu_seconds(e, SERVICES) - cpu

    # Plain, presigned, plain: the ceiling is the mean of the two around ours, so a neighbour's
    # load that rose or fell meanwhile weighs on both sides.
    before = await plain_put()
    cpu_before = cpu_seconds(e, SERVICES)
    envoy_before = cpu_seconds(e, ("envoy-",))
    began = time.perf_counter()
    # Parts only (random bytes are no video, so Complete would refuse them); then abort.
    result = await upload_file(
        stub, auth, path, video_id=video_id, content_type="video/mp4", stop_after_parts=10**6
    )
    presigned = time.perf_counter() - began
    cpu = cpu_seconds(e, SERVICES) - cpu_before
    envoy = cpu_seconds(e, ("envoy-",)) - envoy_before
    after = await plain_put()
    plain = (before[0] + after[0]) / 2
    background = (before[1] + after[1]) / (before[0] + after[0])
    await stub.AbortVideoUpload(
        pb.AbortVideoUploadRequest(video_id=video_id, upload_id=result.upload_id), metadata=auth
    )
    path.unlink()
    return {
        "size_mib": size_mib,
        "presigned_mib_s": size_mib / presigned,
        "plain_put_mib_s": size_mib / plain,
        "plain_put_runs_s": [round(before[0], 1), round(after[0], 1)],
        "ratio": plain / presigned,
        "services_cpu_s_per_gib": cpu / (size_mib / 1024),
        "services_cpu_s_per_gib_net": (cpu - background * presigned) / (size_mib / 1024),
        "envoy_cpu_s_per_gib": envoy / (size_mib / 1024),
    }


def _put_file(url: str, path: Path) -> None:
    with path.open("rb") as f:
        request = urllib.request.Request(url, data=f, method="PUT")
        request.add_header("Content-Length", str(path.stat().st_size))
        urllib.request.urlopen(request, timeout=600).read()


async def _by_hand(argv: list[str], settings: TranscoderSettings) -> tuple[float, float]:
    """Wall and CPU seconds of one ffmpeg run at the transcoder's own priority and CPUs."""
    cpus = settings.encoder_cpus()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=MEDIA_ENV,
        preexec_fn=lambda: lower_priority(
            settings.nice, settings.sched_idle, settings.group_nice, cpus
        ),
    )
    if await proc.wait() != 0:
        raise RuntimeError(f"ffmpeg by hand failed: {argv}")
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime


async def transcode(
    stub: CourseServiceStub, e: Endpoints, seconds: float, size: str, work: Path
) -> dict:
    """Upload to READY through the pipeline, between two runs of the same ffmpeg command by
    hand on the same clip (same threads, nice and scheduling class as the transcoder's)."""
    settings = TranscoderSettings()
    auth = auth_for(e, "instructor")
    clip = make_clip(work / "clip.mp4", seconds=seconds, size=size)
    height = int(size.split("x")[1])
    runs = []
    for i in range(2):
        out = work / f"by-hand-{i}"
        out.mkdir()
        argv = hls_command(
            FFMPEG,
            str(clip),
            out,
            rungs_for(height),
            has_audio=True,
            threads=settings.threads,
            segment_seconds=settings.segment_seconds,
        )
        runs.append(await _by_hand(argv, settings))
        if i == 0:
            video_id = await new_video(stub, auth)
            ffmpeg_cpu = cpu_seconds(e, ("transcoder-",), children=True)
            began = time.perf_counter()
            await upload_file(stub, auth, clip, video_id=video_id)
            stream = stub.WatchTranscodingStatus(
                pb.WatchTranscodingStatusRequest(video_id=video_id), metadata=auth, timeout=3600
            )
            final = None
            async for reply in stream:
                final = reply.status
            pipeline = time.perf_counter() - began
            ffmpeg_cpu = cpu_seconds(e, ("transcoder-",), children=True) - ffmpeg_cpu
            if final is None or final.state != pb.TRANSCODING_STATE_SUCCEEDED:
                raise RuntimeError(f"pipeline transcode did not succeed: {final}")
    by_hand = sum(wall for wall, _ in runs) / len(runs)
    by_hand_cpu = sum(cpu for _, cpu in runs) / len(runs)
    return {
        "clip": f"{seconds:.0f} s {size}, ladder {'+'.join(r.name for r in rungs_for(height))}",
        "threads": settings.threads,
        "pipeline_video_s_per_s": seconds / pipeline,
        "by_hand_video_s_per_s": seconds / by_hand,
        "by_hand_runs_s": [round(wall, 1) for wall, _ in runs],
        "overhead_pct": 100 * (pipeline / by_hand - 1),
        # Per core = per CPU second of ffmpeg: what a core yields whatever else the box runs.
        "by_hand_video_s_per_cpu_s": seconds / by_hand_cpu,
        "pipeline_video_s_per_cpu_s": seconds / ffmpeg_cpu if ffmpeg_cpu > 0 else None,
        # The pipeline's ffmpeg CPU against by hand: an overhead figure a busy box cannot blur.
        "cpu_overhead_pct": 100 * (ffmpeg_cpu / by_hand_cpu - 1),
        # The review's bar: an hour of video in 5 minutes on 8 cores.
        "review_bar_video_s_per_core_s": 3600 / (5 * 60) / 8,
    }


async def queue(stub: CourseServiceStub, e: Endpoints, calls: int) -> dict:
    """`calls` concurrent StartVideoUpload against the cap; what the refused ones (and, after
    their abort, the accepted ones) left in storage."""
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
    pairs = list(zip(videos, results, strict=True))
    accepted = [(v, r) for v, r in pairs if isinstance(r, pb.StartVideoUploadResponse)]
    codes = [r.code() for _, r in pairs if isinstance(r, grpc.aio.AioRpcError)]
    refused = {v for v, r in pairs if not isinstance(r, pb.StartVideoUploadResponse)}
    s3 = s3_client(e)

    def open_uploads(ids: set[str]) -> int:
        listing = s3.list_multipart_uploads(Bucket=e.s3_bucket, Prefix="videos/")
        return sum(1 for u in listing.get("Uploads", []) if u["Key"].split("/")[1] in ids)

    orphans = open_uploads(refused)
    for video_id, reply in accepted:
        await stub.AbortVideoUpload(
            pb.AbortVideoUploadRequest(video_id=video_id, upload_id=reply.upload_id),
            metadata=auth,
        )
    return {
        "calls": calls,
        "accepted": len(accepted),
        "resource_exhausted": codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED),
        "other_errors": len(codes) - codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED),
        "orphaned_multipart_uploads": orphans,
        "left_after_abort": open_uploads(set(videos)),
    }
