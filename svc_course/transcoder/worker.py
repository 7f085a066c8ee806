"""One transcoding job: probe, run the ladder under ffmpeg at low priority, store the HLS files
and the poster under keys derived from the video id (a retried job overwrites), record the
outcome. While ffmpeg runs the worker tells JetStream it is still working, so only a dead
worker's job is redelivered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from nats.aio.msg import Msg

from mesh.objectstore import ObjectStore
from svc_course.media_probe import FFMPEG, MEDIA_ENV, MediaInfo, ProbeFailed, lower_priority, probe
from svc_course.playback import hls_prefix
from svc_course.settings import TranscoderSettings
from svc_course.transcoder.jobs import JobStore
from svc_course.transcoder.ladder import hls_command, poster_command, rungs_for, width_for

log = logging.getLogger("svc_course.transcoder")

CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}
# Progress is written to Postgres at most this often (watchers re-read the row).
PROGRESS_EVERY_SECONDS = 1.0


class JobFailed(Exception):
    """The job cannot succeed as it is (retrying may help if it was a transient failure)."""


@dataclass(frozen=True)
class Job:
    video_id: str
    upload_id: str

    @classmethod
    def parse(cls, data: bytes) -> Job:
        body = json.loads(data)
        return cls(str(uuid.UUID(body["video_id"])), str(uuid.UUID(body["upload_id"])))


class Transcoder:
    def __init__(self, store: ObjectStore, jobs: JobStore, settings: TranscoderSettings) -> None:
        self._store = store
        self._jobs = jobs
        self._settings = settings
        self._cpus = settings.encoder_cpus()

    async def handle(self, msg: Msg) -> None:
        try:
            job = Job.parse(msg.data)
        except (ValueError, KeyError, TypeError):
            log.error("malformed job dropped", extra={"data": msg.data[:200]})
            await msg.term()
            return
        attempt = msg.metadata.num_delivered or 1
        if not await self._jobs.start(job.upload_id, attempt):
            await msg.ack()  # finished (or gone) already: a duplicate delivery
            return
        heartbeat = asyncio.create_task(self._keep_lease(msg))
        try:
            await self._run(job)
        except (JobFailed, ProbeFailed, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            final = attempt >= self._settings.max_deliveries
            log.warning("job failed", extra={"upload": job.upload_id, "final": final})
            await self._jobs.fail(job.upload_id, reason, final=final)
            if final:
                await self._jobs.dead_letter(msg.data, reason)
                await msg.ack()
            else:
                await msg.nak(delay=2.0 * attempt)
            return
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await msg.ack()

    async def _keep_lease(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _run(self, job: Job) -> None:
        source_key = await self._jobs.source_key(job.upload_id)
        source = await self._store.internal_get_url(source_key, 6 * 3600)
        info = await probe(source, self._settings.probe_timeout_seconds)
        base = self._settings.work_dir or None
        work = Path(tempfile.mkdtemp(prefix=f"transcode-{job.video_id}-", dir=base))
        try:
            rungs = rungs_for(info.height)
            await self._ffmpeg(job, source, work, info, rungs)
            poster = work / "poster.jpg"
            await self._run_quiet(
                poster_command(
                    FFMPEG, source, poster, min(1.0, info.duration_seconds / 2), info.height
                )
            )
            await self._upload_dir(work, hls_prefix(job.video_id))
            renditions = [
                {
                    "name": r.name,
                    "width": width_for(r.height, info.width, info.height),
                    "height": r.height,
                    "bitrate_bps": r.video_bps,
                }
                for r in rungs
            ]
            await self._jobs.succeed(job.upload_id, info.duration_seconds, renditions)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _ffmpeg(
        self, job: Job, source: str, work: Path, info: MediaInfo, rungs: list
    ) -> None:  # type: ignore[type-arg]
        argv = hls_command(
            FFMPEG,
            source,
            work,
            rungs,
            has_audio=info.has_audio,
            threads=self._settings.threads,
            segment_seconds=self._settings.segment_seconds,
        )
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=MEDIA_ENV,
            preexec_fn=self._lower_priority,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.create_task(proc.stderr.read())
        last = 0.0
        try:
            async for line in proc.stdout:
                key, _, value = line.decode(errors="replace").strip().partition("=")
                if (
                    key == "out_time_us"
                    and value.isdigit()
                    and time.monotonic() - last > PROGRESS_EVERY_SECONDS
                ):
                    last = time.monotonic()
                    done = int(value) / 1e6 / info.duration_seconds
                    await self._jobs.progress(job.upload_id, min(99.0, 100.0 * done))
            code = await proc.wait()
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        err = (await stderr_task).decode(errors="replace").strip().splitlines()
        if code != 0:
            raise JobFailed(f"ffmpeg exit {code}: {err[-1] if err else 'no message'}")

    def _lower_priority(self) -> None:
        # Runs in the child before exec: ffmpeg yields the CPU to the API processes.
        s = self._settings
        lower_priority(s.nice, s.sched_idle, s.group_nice, self._cpus)

    async def _run_quiet(self, argv: list[str]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=MEDIA_ENV,
            preexec_fn=self._lower_priority,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise JobFailed(f"poster: {err.decode(errors='replace').strip()[-200:]}")

    async def _upload_dir(self, root: Path, prefix: str) -> None:
        files = await asyncio.to_thread(lambda: sorted(p for p in root.rglob("*") if p.is_file()))
        limit = asyncio.Semaphore(8)

        async def put(path: Path) -> None:
            kind = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
            async with limit:
                await self._store.upload_file(
                    prefix + path.relative_to(root).as_posix(),
                    str(path),
                    kind or "application/octet-stream",
                )

        # Playlists last: a reader never finds a playlist naming a segment not yet stored.
        media = [p for p in files if p.suffix != ".m3u8"]
        await asyncio.gather(*(put(p) for p in media))
        await asyncio.gather(*(put(p) for p in files if p.suffix == ".m3u8"))
