"""Typed settings from the environment, one class per service with its own prefix.

Shared infrastructure URLs keep their conventional unprefixed names (DATABASE_URL, CACHE_URL,
STATE_URL, NATS_URL) so one environment can serve every service; anything per service is prefixed
(USER_GRPC_PORT, LIVE_DB_POOL_SIZE, ...). A missing required value fails at start-up with the
variable's name, not at the first request.
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class MeshSettings(BaseSettings):
    """What every service reads. Subclasses set `service` and the env prefix."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "mesh"

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0
    metrics_port: int = 0
    # Seconds in-flight calls get to finish after SIGTERM before they are cancelled.
    shutdown_grace_seconds: float = 10.0
    # Seconds a process keeps serving after health turns NOT_SERVING on SIGTERM, before its
    # listener stops: Envoy health-checks every second, and a call sent in that window would
    # otherwise meet a closed server and come back CANCELLED, which clients do not retry.
    shutdown_delay_seconds: float = 3.0
    # grpc.aio spends ~150 µs per call; beyond this many concurrent unary RPCs a process only
    # adds queueing delay, so it answers RESOURCE_EXHAUSTED instead (Envoy retries elsewhere).
    # Open streams do not count: their services bound them (LIVE_MAX_STREAMS_PER_POD).
    max_concurrent_rpcs: int = 2000
    # Calls grpc's core holds for the process before its handlers take them. Past its default
    # (1,000, refusing some at random up to 3,000) the core answers CANCELLED at once, a code
    # that says the caller gave up and that no client retries: 771 of an overloaded exam rush.
    # Up to this bound such calls wait instead, and max_queue_ms bounds the wait; Envoy's
    # circuit breakers refuse with UNAVAILABLE before the bound is reached.
    max_pending_calls: int = Field(default=10_000, ge=1)
    # Waits between the edge and a handler (mesh.queue_time): a unary call that waited longer
    # than max_queue_ms is refused with RESOURCE_EXHAUSTED and RetryInfo before any work (0
    # never refuses); once no call in queue_interval_ms waited under queue_target_ms, the
    # queue is standing and a wait past queue_target_ms is refused. At 10 % over capacity
    # with no bound, an exam rush's p95 was 4.1-8.3 s.
    max_queue_ms: float = Field(default=1000.0, ge=0)
    queue_target_ms: float = Field(default=250.0, gt=0)
    queue_interval_ms: float = Field(default=1000.0, gt=0)
    # Calls of each hot method accepted at once (mesh.acceptors): grpc.aio alone takes one at
    # a time, a few loop passes each, and a busy pod (a live fan-out) fell behind its Sends.
    accept_depth: int = Field(
        default=4, ge=1, le=64, validation_alias=AliasChoices("ELEARN_ACCEPT_DEPTH")
    )
    max_message_bytes: int = 4 * 1024 * 1024

    database_url: str = Field(default="", validation_alias=AliasChoices("DATABASE_URL"))
    # Two Valkey roles (M1): the cache (allkeys-lru, no persistence) holds only what can be
    # recomputed; the state server (noeviction, AOF) holds what must not vanish. REDIS_URL
    # points both roles at one external server for those who want that; nothing else reads it.
    cache_url: str = Field(default="", validation_alias=AliasChoices("CACHE_URL", "REDIS_URL"))
    state_url: str = Field(default="", validation_alias=AliasChoices("STATE_URL", "REDIS_URL"))
    nats_url: str = Field(default="", validation_alias=AliasChoices("NATS_URL"))
    # Object storage (S3 API: SeaweedFS locally, or AWS S3, MinIO, Ceph). s3_public_url is the
    # base of presigned URLs handed to clients (locally the edge, which forwards /<bucket>/ to
    # the gateway); it defaults to s3_url.
    s3_url: str = Field(default="", validation_alias=AliasChoices("S3_URL"))
    s3_public_url: str = Field(default="", validation_alias=AliasChoices("S3_PUBLIC_URL"))
    s3_access_key: str = Field(default="", validation_alias=AliasChoices("S3_ACCESS_KEY"))
    s3_secret_key: str = Field(default="", validation_alias=AliasChoices("S3_SECRET_KEY"))
    s3_bucket: str = Field(default="media", validation_alias=AliasChoices("S3_BUCKET"))
    s3_region: str = Field(default="us-east-1", validation_alias=AliasChoices("S3_REGION"))
    jwt_public_key_file: str = Field(
        default="", validation_alias=AliasChoices("ELEARN_JWT_PUBLIC_KEY_FILE")
    )
    # Clock skew tolerated on access tokens' exp/nbf/iat; tokens living longer than the max are
    # refused, since revocations are remembered only that long (mesh.auth).
    jwt_leeway_seconds: float = Field(
        default=30.0, validation_alias=AliasChoices("ELEARN_JWT_LEEWAY_SECONDS")
    )
    jwt_max_ttl_seconds: float = Field(
        default=3600.0, validation_alias=AliasChoices("ELEARN_JWT_MAX_TTL_SECONDS")
    )
    instance: str = Field(default="", validation_alias=AliasChoices("ELEARN_INSTANCE"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("ELEARN_LOG_LEVEL"))
    # "all" logs every call; "errors" logs failed and slow calls only. Each JSON line costs
    # tens of µs of this process's CPU, as much as a cheap RPC, while metrics count every call.
    access_log: str = Field(default="errors", validation_alias=AliasChoices("ELEARN_ACCESS_LOG"))
    slow_call_ms: float = Field(default=500.0, validation_alias=AliasChoices("ELEARN_SLOW_CALL_MS"))
    # Tracing (mesh.tracing): the OTLP/gRPC collector (e.g. http://127.0.0.1:4317); unset, no
    # span is recorded or exported. The ratio applies to traces this process starts; calls and
    # events arriving with a trace context follow their caller's decision. 1 % keeps a few
    # traces a second at a few hundred requests a second while costing the hot paths little
    # (measured in the README: who-am-I and progress within 10 % of tracing off).
    otlp_endpoint: str = Field(
        default="", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    trace_sample_ratio: float = Field(
        default=0.01, ge=0.0, le=1.0, validation_alias=AliasChoices("TRACE_SAMPLE_RATIO")
    )

    # Pools (S2): sized to the process's concurrency, with bounded waits.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout_seconds: float = 2.0
    db_statement_timeout_ms: int = 5000
    # Connections older than this are replaced at their next checkout, so a server-side limit
    # (or a failover behind a proxy) never meets a connection it has forgotten.
    db_pool_recycle_seconds: int = 1800
    # A connection held longer than this is logged and counted when it comes back: a
    # transaction that long blocks others' locks and starves the pool.
    db_hold_warning_seconds: float = 2.0
    # Replicas of this service that share the server (<PREFIX>DB_EXPECTED_REPLICAS, e.g.
    # USER_DB_EXPECTED_REPLICAS); start-up refuses to run when replicas x (pool size +
    # overflow) exceeds the server's max_connections less its reserved slots.
    db_expected_replicas: int = 1
    # Publish attempts of one outbox row before it is parked in the dead-letter table.
    outbox_max_attempts: int = 10
    redis_max_connections: int = 64
    redis_pool_timeout_seconds: float = 1.0
    redis_socket_timeout_seconds: float = 1.0

    @classmethod
    def load(cls) -> Self:
        """Read the environment; exit with every missing or malformed variable named."""
        try:
            return cls()
        except ValidationError as exc:
            prefix = cls.model_config.get("env_prefix", "")
            problems = "; ".join(
                f"{prefix}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in exc.errors()
            )
            raise SystemExit(f"{cls.service}: bad configuration: {problems}") from None

    def require(self, *fields: str) -> None:
        """Fail fast when a setting the service cannot run without is empty."""
        missing = [f for f in fields if not getattr(self, f)]
        if missing:
            names = [self.env_name(f) for f in missing]
            raise SystemExit(f"{self.service}: missing required setting(s): {', '.join(names)}")

    def env_name(self, field: str) -> str:
        """The environment variable a field is read from, for messages that name it."""
        alias = type(self).model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return f"{self.model_config.get('env_prefix', '')}{field}".upper()

    @property
    def instance_name(self) -> str:
        return self.instance or f"{self.service}-0"
