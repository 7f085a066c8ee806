"""svc_course settings, read from COURSE_* variables plus the shared ones (see mesh.config)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class CourseSettings(MeshSettings):
    model_config = SettingsConfigDict(env_prefix="COURSE_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "course"

    # Video progress (S1). Samples wait in the state Valkey this long before a flusher
    # upserts them; the review allows 5 minutes, and a crash of Valkey loses at most its AOF
    # second, not this interval.
    flush_interval_seconds: float = 5.0
    # Samples per flush statement (and per VideoProgressFlushed event).
    progress_flush_batch: int = 1000
    # A claimed batch not released within this time (its flusher died) is re-taken by any
    # replica; long enough that a slow but live flush is never taken over.
    progress_flush_lease_seconds: float = 60.0
    # How long a flushed sample stays in Valkey after the viewer's last update, so a viewer
    # who keeps watching costs no Postgres read.
    progress_keep_seconds: int = 86_400
    # How long "this viewer is enrolled in this course" is trusted without asking Postgres;
    # an unenroll drops the mark at once through Progress.forget_enrollment.
    progress_enrollment_ttl_seconds: int = 300
    # How long a video's (course, duration) is kept in process memory.
    progress_video_cache_seconds: float = 60.0
    # How long a graceful shutdown may spend flushing before it gives up (the samples stay).
    progress_drain_seconds: float = 10.0
