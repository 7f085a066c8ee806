"""Playback links (M4): short-lived, signed, and no segment byte through Python.

The transcoder stores HLS under videos/<id>/hls/ with relative URIs. A link is a presigned URL
of a master playlist written for this window under playback/<id>/<window>/, whose variant
URIs are presigned URLs of rewritten variant playlists, whose segment URIs are presigned GET
URLs of the stored segments (the window's folder also names the source playlist's ETag, so a
re-transcoded video never reuses a stale copy). The player fetches all of it from storage
through the edge's /media/ route; every URL stops working when the link expires. Links are
reused within half a TTL, so a class starting a video at once costs one rewrite, not one per
student.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from elearn.course.v1 import course_service_pb2 as pb
from mesh.context import Caller
from mesh.errors import FailedPrecondition, NotFound, PermissionDenied
from mesh.objectstore import ObjectStore
from svc_course import messages
from svc_course.lookups import Lookups, can_manage
from svc_course.settings import CourseSettings

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def hls_prefix(video_id: str) -> str:
    return f"videos/{video_id}/hls/"


def rewrite(playlist: str, sign: dict[str, str]) -> str:
    """Replace each URI line (not a #tag) by its signed URL."""
    lines = []
    for line in playlist.splitlines():
        stripped = line.strip()
        lines.append(
            sign.get(stripped, line) if stripped and not stripped.startswith("#") else line
        )
    return "\n".join(lines) + "\n"


def uri_lines(playlist: str) -> list[str]:
    return [s for s in (line.strip() for line in playlist.splitlines()) if s and s[0] != "#"]


class Playback:
    def __init__(self, lookups: Lookups, store: ObjectStore, settings: CourseSettings) -> None:
        self._lookups = lookups
        self._store = store
        self._ttl = settings.playback_url_ttl_seconds

    async def url(self, caller: Caller, video_id: uuid.UUID) -> pb.GetPlaybackUrlResponse:
        video = await self._lookups.video(video_id)
        if video is None:
            raise NotFound(f"video {video_id} not found")
        course = await self._lookups.course(uuid.UUID(video.course_id))
        if course is None:
            raise NotFound(f"video {video_id} not found")
        if not can_manage(caller, course) and not await self._lookups.enrolled(
            course.course_id, caller.user_id
        ):
            raise PermissionDenied("only the course's enrolled students, instructor or admins")
        if video.state != pb.VIDEO_STATE_READY:
            raise FailedPrecondition("the video is not ready for playback yet")
        source = await self._store.head(hls_prefix(str(video_id)) + "master.m3u8")
        if source is None:
            raise FailedPrecondition("the video's playlists are missing; transcode it again")
        window = int(time.time() // (self._ttl // 2))
        # The source's ETag in the path: a new transcode never shares a cached copy.
        base = f"playback/{video_id}/{source.etag[:16] or 'x'}-{window}/"
        signed_at = window * (self._ttl // 2)
        master_key = base + "master.m3u8"
        if await self._store.head(master_key) is None:
            signed_at = int(time.time())
            await self._publish(str(video_id), base)
        url = await self._store.public_get_url(master_key, self._ttl)
        expires = datetime.fromtimestamp(min(signed_at + self._ttl, time.time() + self._ttl), UTC)
        return pb.GetPlaybackUrlResponse(url=url, expire_time=messages.timestamp(expires))

    async def _publish(self, video_id: str, base: str) -> None:
        source = hls_prefix(video_id)
        master = await self._store.get_bytes(source + "master.m3u8")
        if master is None:
            raise FailedPrecondition("the video's playlists are missing; transcode it again")
        variant_urls: dict[str, str] = {}
        for variant in uri_lines(master.decode()):
            text = await self._store.get_bytes(source + variant)
            if text is None:
                raise FailedPrecondition(f"rendition {variant} is missing; transcode it again")
            folder = variant.rsplit("/", 1)[0] + "/" if "/" in variant else ""
            segments = {
                s: await self._store.public_get_url(source + folder + s, self._ttl)
                for s in uri_lines(text.decode())
            }
            key = base + variant
            await self._store.put_bytes(
                key, rewrite(text.decode(), segments).encode(), PLAYLIST_TYPE
            )
            variant_urls[variant] = await self._store.public_get_url(key, self._ttl)
        await self._store.put_bytes(
            base + "master.m3u8", rewrite(master.decode(), variant_urls).encode(), PLAYLIST_TYPE
        )
