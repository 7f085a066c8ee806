"""svc_course settings, read from COURSE_* variables plus the shared ones (see mesh.config)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class CourseSettings(MeshSettings):
    model_config = SettingsConfigDict(env_prefix="COURSE_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "course"

    # Cache TTLs from the review (M1); writes invalidate sooner, the TTL only bounds a miss.
    course_cache_ttl_seconds: int = 3600
    video_cache_ttl_seconds: int = 24 * 3600
    enrollment_cache_ttl_seconds: int = 300
    # Search result pages; catalog changes invalidate them at once (see svc_course.lookups).
    search_cache_ttl_seconds: int = 60
    # Write-behind progress (S1): how often pending samples are flushed to Postgres, and the
    # most rows one flush statement carries.
    progress_flush_interval_seconds: float = 5.0
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
