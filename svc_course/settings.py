"""svc_course settings, read from COURSE_* variables plus the shared ones (see mesh.config)."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class CourseSettings(MeshSettings):
    model_config = SettingsConfigDict(env_prefix="COURSE_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "course"

    # Enough pooled connections for the calls one replica holds in flight at its peak (enroll
    # load, relay, flusher): beyond the pool, overflow connections are opened and closed per
    # checkout, and each one forks a Postgres backend, which on 2 cores cost more than the
    # enrollment itself. 3 replicas x (24 + 10) stays well inside max_connections (200).
    db_pool_size: int = 24

    # Cache TTLs from the review (M1); writes invalidate sooner, the TTL only bounds a miss.
    course_cache_ttl_seconds: int = 3600
    video_cache_ttl_seconds: int = 24 * 3600
    enrollment_cache_ttl_seconds: int = 300
    # Near cache in each replica's memory over the Valkey one: hot reads (CheckEnrollment)
    # skip the round trip. Another replica's write reaches it only by expiry, so these are
    # the cross-replica staleness bounds: an unenroll shows on every replica within 1 s.
    course_cache_local_seconds: float = 1.0
    enrollment_cache_local_seconds: float = 0.5
    # Search result pages; catalog changes invalidate them at once (see svc_course.lookups).
    search_cache_ttl_seconds: int = 60
    # Write-behind progress (S1); the flush itself is ProgressFlusherSettings'. How long a
    # flushed sample stays in Valkey after the viewer's last update, so a viewer
    # who keeps watching costs no Postgres read.
    progress_keep_seconds: int = 86_400
    # How long "this viewer is enrolled in this course" is trusted without asking Postgres;
    # an unenroll drops the mark at once through Progress.forget_enrollment.
    progress_enrollment_ttl_seconds: int = 300
    # How long a video's (course, duration) is kept in process memory.
    progress_video_cache_seconds: float = 60.0

    # Video pipeline (M4). Uploads larger than this are refused before any byte is sent.
    upload_max_bytes: int = 20 * 1024**3
    # Parts of about 10 MiB (the review's size): small enough to retry cheaply, large enough
    # that a 20 GiB file stays within S3's 10,000 parts (raised automatically beyond that).
    upload_part_bytes: int = 10 * 1024 * 1024
    # Presigned part URLs live this long; GetVideoUpload hands out fresh ones.
    upload_url_ttl_seconds: int = 3600
    # Uploads still open after this long are aborted by the sweeper, freeing their slot.
    upload_abandon_seconds: float = 24 * 3600.0
    upload_sweep_interval_seconds: float = 300.0
    # At most this many uploads-to-be-transcoded at once (the review's 100 pending jobs).
    transcode_queue_limit: int = 100
    # RetryInfo's delay on a full queue: about the time a short job takes.
    transcode_queue_retry_seconds: int = 60
    probe_timeout_seconds: float = 30.0
    # How long a playback link (playlists and segment URLs) works.
    playback_url_ttl_seconds: int = 900


class ProgressFlusherSettings(CourseSettings):
    """The write-behind flusher (python -m svc_course.progress_worker): PROGRESS_FLUSHER_*
    variables, plus the course settings it shares under the same prefix."""

    model_config = SettingsConfigDict(
        env_prefix="PROGRESS_FLUSHER_", extra="ignore", populate_by_name=True
    )
    service: ClassVar[str] = "progress-flusher"

    # One flush at a time and the outbox relay.
    db_pool_size: int = 4
    # How often pending samples are flushed to Postgres, and the most rows one flush
    # statement carries.
    flush_interval_seconds: float = 5.0
    flush_batch: int = 1000
    # A claimed batch not released within this time (its flusher died) is re-taken by any
    # flusher; long enough that a slow but live flush is never taken over.
    flush_lease_seconds: float = 60.0
    # How long a graceful shutdown may spend flushing before it gives up (the samples stay).
    drain_seconds: float = 10.0


class TranscoderSettings(CourseSettings):
    """The transcoder worker (python -m svc_course.transcoder): TRANSCODER_* variables, plus the
    course settings it shares (queue limit, probe timeout, cache TTLs) under the same prefix."""

    model_config = SettingsConfigDict(
        env_prefix="TRANSCODER_", extra="ignore", populate_by_name=True
    )
    service: ClassVar[str] = "transcoder"

    # ffmpeg runs at this nice level with this many threads, so the API keeps its CPU (M4).
    threads: int = 2
    nice: int = 19
    # SCHED_IDLE on Linux: the API's threads preempt ffmpeg whenever they wake (isolation, M4).
    sched_idle: bool = True
    # ffmpeg's own session is its own scheduling group (autogroup) at this nice: SCHED_IDLE and
    # nice only rank threads inside a group, and each service runs in a group of its own
    # (media_probe.lower_priority). 0 leaves the group at full weight, as the test suites do.
    group_nice: int = 19
    # ffmpeg keeps off the first `api_cpus` CPUs, so a waking API thread finds an idle core
    # instead of preempting an encoder and working in caches it just filled: measured, nice and
    # SCHED_IDLE alone left the API's p95 at 1.4-1.6x. 0 lets ffmpeg use every CPU; a machine
    # with no more CPUs than this runs it everywhere.
    api_cpus: int = 1
    # A job is redelivered when its worker has not acked (or said "still working") for this
    # long; the worker says so every heartbeat_seconds while ffmpeg runs.
    ack_wait_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    # Deliveries before a job is dead-lettered and its video marked FAILED.
    max_deliveries: int = 3
    segment_seconds: int = 4
    # Scratch space for one job's renditions (default: the system's temp dir).
    work_dir: str = ""

    def encoder_cpus(self) -> frozenset[int] | None:
        """The CPUs ffmpeg may run on; None leaves its affinity alone."""
        available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if self.api_cpus <= 0 or len(available) <= self.api_cpus:
            return None
        return frozenset(available[self.api_cpus :])
