"""svc_course settings, read from COURSE_* variables plus the shared ones (see mesh.config)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class CourseSettings(MeshSettings):
    model_config = SettingsConfigDict(env_prefix="COURSE_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "course"
