"""Upload to playable HLS against the real stack: parts PUT through the edge's /media/ route,
checked with ffprobe, transcoded by the transcoder worker, played through signed links."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from svc_course.media_probe import probe
from svc_course.upload import upload_file
from tests.people import People
from tests.svc_course.video_support import clip, course_with_video, keys_under

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def watch_until_final(
    courses: CourseServiceStub, auth: tuple[tuple[str, str]], video_id: str
) -> list[pb.TranscodingStatus]:
    seen = []
    stream = courses.WatchTranscodingStatus(
        pb.WatchTranscodingStatusRequest(video_id=video_id), metadata=auth, timeout=120
    )
    async for reply in stream:
        seen.append(reply.status)
    return seen


async def test_video_upload_through_edge_transcodes_to_playable_hls(
    stack: Endpoints, courses: CourseServiceStub, people: People, tmp_path: Path
) -> None:
    teacher, student, stranger = people.instructor(), people.student(), people.student()
    course, video = await course_with_video(courses, teacher)
    source = clip(tmp_path, seconds=3.0, size="640x360")

    result = await upload_file(courses, teacher.auth, source, video_id=video.video_id)
    assert result.video.state == pb.VIDEO_STATE_PROCESSING
    # Every part went to the edge, not to the storage port.
    assert stack.s3_public_url.endswith(stack.edge or "no edge")

    statuses = await watch_until_final(courses, teacher.auth, video.video_id)
    final = statuses[-1]
    assert final.state == pb.TRANSCODING_STATE_SUCCEEDED, final.error_message
    assert final.progress_percent == 100.0
    assert [r.name for r in final.renditions] == ["360p"]  # never above the 360p source
    assert final.renditions[0].width == 640

    got = await courses.GetVideo(pb.GetVideoRequest(video_id=video.video_id))
    assert got.video.state == pb.VIDEO_STATE_READY
    assert got.video.duration.seconds == 3  # the probed value replaced the declared 60 s
    stored = keys_under(stack, f"videos/{video.video_id}/hls/")
    assert f"videos/{video.video_id}/hls/master.m3u8" in stored
    assert f"videos/{video.video_id}/hls/poster.jpg" in stored

    await courses.Enroll(
        pb.EnrollRequest(course_id=course.course_id, idempotency_key=uuid.uuid4().hex),
        metadata=student.auth,
    )
    link = await courses.GetPlaybackUrl(
        pb.GetPlaybackUrlRequest(video_id=video.video_id), metadata=student.auth
    )
    assert link.url.startswith(f"http://{stack.edge}/media/")
    # Fetch the whole ladder the way a player does, every URL from the playlists.
    async with httpx.AsyncClient(timeout=10) as http:
        master = await http.get(link.url)
        assert master.status_code == 200
        variant_url = next(line for line in master.text.splitlines() if line.startswith("http"))
        variant = await http.get(variant_url)
        assert variant.status_code == 200
        segment_urls = [line for line in variant.text.splitlines() if line.startswith("http")]
        assert all(f"{stack.edge}/media/" in u for u in segment_urls)
        segments = [await http.get(u) for u in segment_urls]
        assert all(s.status_code == 200 for s in segments)
        # The same segment without its signature is refused.
        unsigned = await http.get(segment_urls[0].split("?", 1)[0])
        assert unsigned.status_code == 403
    # The ladder covers the 3 s video, and each segment is MPEG-TS (sync byte every 188 bytes).
    extinf = [
        float(line[8:].rstrip(","))
        for line in variant.text.splitlines()
        if line.startswith("#EXTINF:")
    ]
    assert abs(sum(extinf) - 3.0) < 0.2
    for segment in segments:
        assert len(segment.content) % 188 == 0
        assert segment.content[::188] == b"\x47" * (len(segment.content) // 188)
    # A player's view: the wheel's ffprobe opens the signed master playlist through the edge
    # and follows it into the variants and their segments.
    played = await probe(link.url, timeout_seconds=60)
    assert abs(played.duration_seconds - 3.0) < 0.2
    assert (played.width, played.height) == (640, 360)
    assert played.has_audio

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await courses.GetPlaybackUrl(
            pb.GetPlaybackUrlRequest(video_id=video.video_id), metadata=stranger.auth
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
