"""Helpers for the video pipeline tests: clips made with ffmpeg's test sources, a course with
a video, an S3 client on the stack's storage, and waiting on a condition with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from devstack import seaweedfs
from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from svc_course.testclip import make_clip
from tests.people import Person
from tests.svc_course.conftest import new_course, new_video

T = TypeVar("T")


def storage(stack: Endpoints) -> object:
    env = seaweedfs.S3Env(stack.s3_url, stack.s3_access_key, stack.s3_secret_key, stack.s3_bucket)
    return seaweedfs.client(env)


def keys_under(stack: Endpoints, prefix: str) -> list[str]:
    s3 = storage(stack)
    reply = s3.list_objects_v2(Bucket=stack.s3_bucket, Prefix=prefix)  # type: ignore[attr-defined]
    return [o["Key"] for o in reply.get("Contents", [])]


def open_multipart_uploads(stack: Endpoints, prefix: str) -> list[str]:
    s3 = storage(stack)
    reply = s3.list_multipart_uploads(Bucket=stack.s3_bucket, Prefix=prefix)  # type: ignore[attr-defined]
    return [u["UploadId"] for u in reply.get("Uploads", [])]


async def course_with_video(
    courses: CourseServiceStub, owner: Person
) -> tuple[pb.Course, pb.Video]:
    course = await new_course(courses, owner, publish=True)
    video = await new_video(courses, owner, course.course_id, seconds=60)
    return course, video


def clip(tmp_path: Path, name: str = "clip.mp4", **options: object) -> Path:
    return make_clip(tmp_path / name, **options)  # type: ignore[arg-type]


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], seconds: float = 60.0
) -> T:
    """Poll `probe` until `done(result)` or the deadline; the last result on timeout fails."""
    deadline = time.monotonic() + seconds
    while True:
        result = await probe()
        if done(result):
            return result
        assert time.monotonic() < deadline, f"condition not met within {seconds} s: {result}"
        await asyncio.sleep(0.2)
