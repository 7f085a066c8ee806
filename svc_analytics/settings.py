"""svc_analytics settings: ANALYTICS_* variables plus the shared ones (see mesh.config)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class AnalyticsSettings(MeshSettings):
    model_config = SettingsConfigDict(
        env_prefix="ANALYTICS_", extra="ignore", populate_by_name=True
    )
    service: ClassVar[str] = "analytics"

    # Durable consumer name: replicas share it, so each event is applied by one of them.
    consumer_name: str = "analytics"
    # Events per batch: one transaction and one statement per table per batch.
    consumer_batch: int = 500
    # A fetch that got less than a full batch waits this long after the previous one
    # (mesh.bus.consume_batches): at a steady rate, a transaction's fixed cost (its statements,
    # the touched courses' recount, the page retirement) is shared by the events of 200 ms
    # instead of the one or two of the last batch's handling time. Exam rush at 600/s: 50 ms
    # cost 200 µs of analytics CPU per submission and 200 ms 132, Postgres 12 % less. Adds
    # at most this much to freshness (target p95 under 2 s); 0 turns it off.
    consumer_pace_seconds: float = 0.2
    # How often courses whose learners went idle get their active/at-risk counters refreshed.
    idle_refresh_seconds: float = 60.0
