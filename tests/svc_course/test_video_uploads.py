"""Uploads against the real stack: resuming, refusals that leave nothing behind, abort, the
bounded queue (RESOURCE_EXHAUSTED with RetryInfo) and who may upload."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from pathlib import Path

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2, status_pb2

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from mesh.cache import open_cache
from mesh.db import Database
from mesh.objectstore import open_objectstore
from svc_course.lookups import Lookups
from svc_course.models import SCHEMA
from svc_course.settings import CourseSettings
from svc_course.testclip import make_clip
from svc_course.upload import upload_file
from svc_course.uploads import Uploads
from tests.people import People, Person
from tests.svc_course.video_support import (
    course_with_video,
    eventually,
    keys_under,
    open_multipart_uploads,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
GIB = 1024**3


def held_by(sql: psycopg.Connection, video_id: str) -> int:
    """Queue slots the video's uploads hold (the global counter also moves as other tests'
    jobs finish in the background)."""
    row = sql.execute(
        "SELECT count(*) FROM courses.video_uploads WHERE video_id = %s AND slot_held = 1",
        (video_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def busy_jobs(sql: psycopg.Connection) -> int:
    row = sql.execute(
        "SELECT count(*) FROM courses.video_uploads WHERE job_state IN ('queued', 'running')"
    ).fetchone()
    assert row is not None
    return int(row[0])


def slots_used(sql: psycopg.Connection) -> int:
    row = sql.execute("SELECT used FROM courses.transcode_slots WHERE id = 1").fetchone()
    assert row is not None
    return int(row[0])


async def start(
    courses: CourseServiceStub, who: Person, video_id: str, **over: object
) -> pb.StartVideoUploadResponse:
    fields: dict[str, object] = {
        "video_id": video_id,
        "file_name": "lecture.mp4",
        "content_type": "video/mp4",
        "size_bytes": 1000,
        "idempotency_key": uuid.uuid4().hex,
    }
    fields.update(over)
    return await courses.StartVideoUpload(
        pb.StartVideoUploadRequest(**fields),  # type: ignore[arg-type]
        metadata=who.auth,
    )


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_video_upload_resumes_with_only_the_missing_parts(
    stack: Endpoints, courses: CourseServiceStub, people: People, tmp_path: Path
) -> None:
    teacher = people.instructor()
    _, video = await course_with_video(courses, teacher)
    # Two parts of 10 MiB: a 4 s clip at a high bitrate, a little over 10 MiB.
    source = make_clip(tmp_path / "big.mp4", seconds=4.0, size="1280x720")
    source.write_bytes(source.read_bytes())  # stable mtime for the key below
    size = source.stat().st_size
    if size <= 10 * 1024 * 1024:
        with source.open("ab") as f:  # pad inside the MP4's trailing free space
            f.write(b"\0" * (10 * 1024 * 1024 + 4096 - size))
    first = await upload_file(
        courses, teacher.auth, source, video_id=video.video_id, stop_after_parts=1
    )
    assert first.parts_sent == 1

    state = await courses.GetVideoUpload(
        pb.GetVideoUploadRequest(video_id=video.video_id, upload_id=first.upload_id),
        metadata=teacher.auth,
    )
    assert state.state == pb.UPLOAD_STATE_OPEN
    assert [p.part_number for p in state.stored_parts] == [1]
    assert [p.part_number for p in state.missing_parts] == [2]
    assert state.missing_parts[0].url.startswith(f"http://{stack.edge}/media/")

    second = await upload_file(courses, teacher.auth, source, video_id=video.video_id)
    assert second.upload_id == first.upload_id
    assert second.parts_sent == 1
    assert second.video.state == pb.VIDEO_STATE_PROCESSING


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"size_bytes": 20 * GIB + 1}, "size_bytes"),
        ({"size_bytes": 0}, "size_bytes"),
        ({"content_type": "text/plain"}, "content_type"),
    ],
)
async def test_video_upload_refuses_bad_declarations_before_any_byte(
    stack: Endpoints,
    courses: CourseServiceStub,
    people: People,
    sql: psycopg.Connection,
    over: dict[str, object],
    field: str,
) -> None:
    teacher = people.instructor()
    _, video = await course_with_video(courses, teacher)
    error = await refused(start(courses, teacher, video.video_id, **over))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert held_by(sql, video.video_id) == 0
    assert open_multipart_uploads(stack, f"videos/{video.video_id}/") == []


@pytest.mark.parametrize("kind", ["text_named_mp4", "truncated", "size_mismatch"])
async def test_video_upload_unreadable_file_is_refused_and_nothing_is_left(
    stack: Endpoints,
    courses: CourseServiceStub,
    people: People,
    sql: psycopg.Connection,
    tmp_path: Path,
    kind: str,
) -> None:
    teacher = people.instructor()
    _, video = await course_with_video(courses, teacher)
    path = tmp_path / "lecture.mp4"
    if kind == "text_named_mp4":
        path.write_text("this is a text file, not a video\n" * 50)
    else:
        whole = make_clip(tmp_path / "whole.mp4", seconds=2.0).read_bytes()
        # moov sits at the end (no faststart): the first half has no index, so cannot play.
        path.write_bytes(whole[: len(whole) // 2])
    declared = path.stat().st_size + (100 if kind == "size_mismatch" else 0)
    upload = await start(
        courses, teacher, video.video_id, size_bytes=declared, idempotency_key=uuid.uuid4().hex
    )
    assert held_by(sql, video.video_id) == 1
    request = urllib.request.Request(upload.parts[0].url, data=path.read_bytes(), method="PUT")
    etag = await asyncio.to_thread(
        lambda: urllib.request.urlopen(request, timeout=30).headers["ETag"]
    )
    error = await refused(
        courses.CompleteVideoUpload(
            pb.CompleteVideoUploadRequest(
                video_id=video.video_id,
                upload_id=upload.upload_id,
                parts=[pb.CompletedPart(part_number=1, etag=etag)],
            ),
            metadata=teacher.auth,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected = "arrived" if kind == "size_mismatch" else "not a readable video"
    assert expected in (error.details() or "")
    assert keys_under(stack, f"videos/{video.video_id}/") == []
    assert open_multipart_uploads(stack, f"videos/{video.video_id}/") == []
    assert held_by(sql, video.video_id) == 0
    got = await courses.GetVideo(pb.GetVideoRequest(video_id=video.video_id))
    assert got.video.state == pb.VIDEO_STATE_AWAITING_UPLOAD
    queued = sql.execute(
        "SELECT count(*) FROM courses.video_uploads WHERE video_id = %s AND job_state IS NOT NULL",
        (video.video_id,),
    ).fetchone()
    assert queued == (0,)


async def test_video_upload_abort_discards_parts_and_frees_the_slot(
    stack: Endpoints, courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    teacher = people.instructor()
    _, video = await course_with_video(courses, teacher)
    upload = await start(courses, teacher, video.video_id)
    assert held_by(sql, video.video_id) == 1
    assert open_multipart_uploads(stack, f"videos/{video.video_id}/") != []
    aborted = await courses.AbortVideoUpload(
        pb.AbortVideoUploadRequest(video_id=video.video_id, upload_id=upload.upload_id),
        metadata=teacher.auth,
    )
    assert aborted.video.state == pb.VIDEO_STATE_AWAITING_UPLOAD
    assert open_multipart_uploads(stack, f"videos/{video.video_id}/") == []
    assert held_by(sql, video.video_id) == 0
    state = await courses.GetVideoUpload(
        pb.GetVideoUploadRequest(video_id=video.video_id, upload_id=upload.upload_id),
        metadata=teacher.auth,
    )
    assert state.state == pb.UPLOAD_STATE_ABORTED and not state.missing_parts


async def test_video_upload_only_by_the_course_instructor(
    courses: CourseServiceStub, people: People
) -> None:
    teacher, other_teacher, student = people.instructor(), people.instructor(), people.student()
    _, video = await course_with_video(courses, teacher)
    assert (await refused(start(courses, other_teacher, video.video_id))).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert (await refused(start(courses, student, video.video_id))).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )


async def test_video_upload_full_queue_refuses_with_retry_info_and_leaves_no_storage(
    stack: Endpoints, courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    """Ten concurrent starts with five slots free: five accepted, five RESOURCE_EXHAUSTED."""
    teacher = people.instructor()
    videos = [(await course_with_video(courses, teacher))[1] for _ in range(10)]
    # Jobs of earlier tests release their slots when they finish: let them, so the counter
    # holds still while this test reasons about it.
    await eventually(lambda: asyncio.to_thread(busy_jobs, sql), lambda n: n == 0, seconds=120)
    held = slots_used(sql)
    limit = 100  # COURSE_TRANSCODE_QUEUE_LIMIT's default, which the test stack runs with
    assert held <= limit - 5
    # Stand in for 95 - held uploads of other instructors holding slots.
    filler = limit - 5 - held
    sql.execute("UPDATE courses.transcode_slots SET used = used + %s WHERE id = 1", (filler,))
    try:
        results = await asyncio.gather(
            *(start(courses, teacher, v.video_id) for v in videos), return_exceptions=True
        )
    finally:
        sql.execute("UPDATE courses.transcode_slots SET used = used - %s WHERE id = 1", (filler,))
    accepted = [r for r in results if isinstance(r, pb.StartVideoUploadResponse)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(accepted) == 5 and len(errors) == 5
    for error in errors:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = status_pb2.Status.FromString(
            dict(error.trailing_metadata() or ())["grpc-status-details-bin"]  # type: ignore[arg-type]
        )
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry) and retry.retry_delay.seconds > 0
    # The refused ones left no multipart upload behind.
    refused_videos = [
        v
        for v, r in zip(videos, results, strict=True)
        if not isinstance(r, pb.StartVideoUploadResponse)
    ]
    for video in refused_videos:
        assert open_multipart_uploads(stack, f"videos/{video.video_id}/") == []
    for video, result in zip(videos, results, strict=True):
        if isinstance(result, pb.StartVideoUploadResponse):
            await courses.AbortVideoUpload(
                pb.AbortVideoUploadRequest(video_id=video.video_id, upload_id=result.upload_id),
                metadata=teacher.auth,
            )
    assert slots_used(sql) == held


async def test_video_upload_sweeper_aborts_abandoned_uploads(
    stack: Endpoints, courses: CourseServiceStub, people: People, sql: psycopg.Connection
) -> None:
    teacher = people.instructor()
    _, video = await course_with_video(courses, teacher)
    upload = await start(courses, teacher, video.video_id)
    _, other = await course_with_video(courses, teacher)
    fresh = await start(courses, teacher, other.video_id)
    sql.execute(
        "UPDATE courses.video_uploads SET created_at = now() - interval '2 days' WHERE id = %s",
        (upload.upload_id,),
    )
    settings = CourseSettings(
        database_url=stack.database_url,
        cache_url=stack.cache_url,
        state_url=stack.state_url,
        s3_url=stack.s3_url,
        s3_access_key=stack.s3_access_key,
        s3_secret_key=stack.s3_secret_key,
        s3_bucket=stack.s3_bucket,
    )
    async with (
        Database.open(settings, SCHEMA) as db,
        open_cache(settings) as cache,
        open_objectstore(settings) as store,
    ):
        uploads = Uploads(db, Lookups(db, cache, settings), store, None, settings)  # type: ignore[arg-type]
        assert await uploads.sweep(older_than_seconds=24 * 3600) >= 1
    assert open_multipart_uploads(stack, f"videos/{video.video_id}/") == []
    state = await courses.GetVideoUpload(
        pb.GetVideoUploadRequest(video_id=video.video_id, upload_id=upload.upload_id),
        metadata=teacher.auth,
    )
    assert state.state == pb.UPLOAD_STATE_ABORTED
    got = await courses.GetVideo(pb.GetVideoRequest(video_id=video.video_id))
    assert got.video.state == pb.VIDEO_STATE_AWAITING_UPLOAD
    # The fresh upload is untouched; only the swept one gave its slot back.
    still = sql.execute(
        "SELECT state FROM courses.video_uploads WHERE id = %s", (fresh.upload_id,)
    ).fetchone()
    assert still == ("open",)
    assert held_by(sql, video.video_id) == 0 and held_by(sql, other.video_id) == 1
