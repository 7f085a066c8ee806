"""Upload a video file the way a client should: parts PUT straight to storage through the
edge's presigned URLs, with a progress bar, resuming after an interruption.

    python -m svc_course.upload lecture.mp4 --course COURSE_ID --title "Lecture 1" \\
        --target 127.0.0.1:8080 --token "$ACCESS_TOKEN"

Run it again after an interruption: the idempotency keys derive from the file (name, size,
modification time), so it finds the same video and upload, asks which parts storage holds
already (GetVideoUpload) and sends only the missing ones.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import mimetypes
import os
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from elearn.course.v1 import course_service_pb2 as pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub

Progress = Callable[[int, int], None]
PUT_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class UploadResult:
    video: pb.Video
    upload_id: str
    parts_sent: int


def file_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def put_part(url: str, path: Path, offset: int, length: int) -> str:
    """PUT one part (blocking; run in a thread) and return the ETag storage gave it."""
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(length)
    request = urllib.request.Request(url, data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=PUT_TIMEOUT_SECONDS) as reply:
        return str(reply.headers["ETag"])


async def upload_file(
    stub: CourseServiceStub,
    auth: tuple[tuple[str, str], ...],
    path: Path,
    *,
    video_id: str,
    content_type: str | None = None,
    progress: Progress | None = None,
    stop_after_parts: int | None = None,
    concurrency: int = 4,
) -> UploadResult:
    """Start (or find) the upload, send the missing parts, complete it. `stop_after_parts`
    simulates an interruption (tests): it returns after sending that many parts."""
    size = (await asyncio.to_thread(path.stat)).st_size
    kind = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    started = await stub.StartVideoUpload(
        pb.StartVideoUploadRequest(
            video_id=video_id,
            file_name=path.name,
            content_type=kind,
            size_bytes=size,
            idempotency_key=file_key(path),
        ),
        metadata=auth,
    )
    state = await stub.GetVideoUpload(
        pb.GetVideoUploadRequest(video_id=video_id, upload_id=started.upload_id), metadata=auth
    )
    etags = {p.part_number: p.etag for p in state.stored_parts}
    done = sum(p.size_bytes for p in state.stored_parts)
    if progress:
        progress(done, size)
    part_size = state.part_size_bytes
    todo = list(state.missing_parts)
    if stop_after_parts is not None:
        todo = todo[:stop_after_parts]
    limit = asyncio.Semaphore(concurrency)

    async def send(part: pb.UploadPart) -> None:
        nonlocal done
        offset = (part.part_number - 1) * part_size
        length = min(part_size, size - offset)
        async with limit:
            etags[part.part_number] = await asyncio.to_thread(
                put_part, part.url, path, offset, length
            )
        done += length
        if progress:
            progress(done, size)

    await asyncio.gather(*(send(p) for p in todo))
    if stop_after_parts is not None:
        return UploadResult(pb.Video(video_id=video_id), started.upload_id, len(todo))
    completed = await stub.CompleteVideoUpload(
        pb.CompleteVideoUploadRequest(
            video_id=video_id,
            upload_id=started.upload_id,
            parts=[pb.CompletedPart(part_number=n, etag=e) for n, e in sorted(etags.items())],
        ),
        metadata=auth,
    )
    return UploadResult(completed.video, started.upload_id, len(todo))


def progress_bar(done: int, total: int) -> None:
    width = 40
    filled = int(width * done / total) if total else width
    percent = 100 * done / total if total else 100
    bar = "#" * filled + "-" * (width - filled)
    print(f"\r[{bar}] {percent:5.1f}% {done / 2**20:8.1f}/{total / 2**20:.1f} MiB", end="",
          file=sys.stderr, flush=True)  # fmt: skip


async def _main(args: argparse.Namespace) -> int:
    auth = (("authorization", f"Bearer {args.token}"),)
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = CourseServiceStub(channel)
        video_id = args.video
        if not video_id:
            created = await stub.CreateVideo(
                pb.CreateVideoRequest(
                    course_id=args.course,
                    video=pb.Video(title=args.title or args.file.stem),
                    idempotency_key=file_key(args.file),
                ),
                metadata=auth,
            )
            video_id = created.video.video_id
        result = await upload_file(stub, auth, args.file, video_id=video_id, progress=progress_bar)
    print(f"\nvideo {video_id}: upload {result.upload_id} complete, transcoding", file=sys.stderr)
    print(video_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--course", required=True, help="course id (UUID)")
    parser.add_argument("--video", help="an existing video id; default: create one")
    parser.add_argument("--title", help="title of the created video (default: file name)")
    parser.add_argument("--target", default=os.environ.get("ELEARN_EDGE", "127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("ELEARN_TOKEN", ""))
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or ELEARN_TOKEN) is required: an instructor's access token")
    try:
        return asyncio.run(_main(args))
    except grpc.aio.AioRpcError as exc:
        print(f"\n{exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
