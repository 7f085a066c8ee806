"""svc_live settings, read from LIVE_* variables plus the shared ones (see mesh.config)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from mesh.config import MeshSettings


class LiveSettings(MeshSettings):
    model_config = SettingsConfigDict(env_prefix="LIVE_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "live"

    # CourseService target for CheckEnrollment: host:port, or `ipv4:h:p1,h:p2` for several
    # replicas (the launcher passes its course replicas).
    course_address: str = ""
    # An enrollment answer is reused this long in-process: a join storm of 1,000 students
    # costs one CheckEnrollment per student, not one per reconnect.
    enrollment_cache_seconds: float = 5.0
    # UserService target for display names (optional: without it names stay empty).
    user_address: str = ""
    display_name_cache_seconds: float = 300.0
    # Limits (C3): refused with RESOURCE_EXHAUSTED.
    max_participants: int = 1000
    max_streams_per_pod: int = 5000
    max_live_sessions: int = 100
    # Events kept per session for resume, in the state Valkey.
    history_size: int = 1000
    # Per-stream send buffer: the review's 10 KB per connection, or this many events.
    stream_buffer_bytes: int = 10_240
    stream_buffer_events: int = 256
    # A stream that lost events on this many flushes in a row is too slow and is closed.
    slow_consumer_strikes: int = 3
    # While a pod's loop is under pressure (svc_live.turns), at most writes_in_flight stream
    # writes that started less than write_stall_seconds ago and have not finished: few
    # enough that the loop's passes stay short and the send path prompt. Measured at 3,000
    # streams: with 1 s instead of 50 ms the Sends fell seconds behind again.
    writes_in_flight: int = 64
    write_stall_seconds: float = 0.05
    # Pressure starts with a loop pass this long (0: always bounded).
    write_press_lag_seconds: float = 0.05
    # S4: a stream without a client heartbeat this long is closed; presence entries live
    # presence_ttl_seconds past each heartbeat, so a killed client leaves the count by then.
    heartbeat_timeout_seconds: float = 300.0
    presence_ttl_seconds: float = 60.0
    # The server heartbeat on quiet streams, and how often presence changes are published.
    server_heartbeat_seconds: float = 15.0
    presence_interval_seconds: float = 1.0
    # Instructor broadcasts: a token bucket per session shared by all pods.
    broadcast_rate_per_second: float = 10.0
    broadcast_burst: int = 10
    # Students' chat and questions, per user per session.
    student_rate_per_second: float = 1.0
    student_burst: int = 5
    # How long a client event id is remembered, so a retry is acknowledged, not applied twice.
    client_event_dedup_seconds: int = 600
