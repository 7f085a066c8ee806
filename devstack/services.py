"""The services (listed once, in mesh.platform): what each is called, the environment each
process gets, and how the launcher tells that a replica is ready (the standard gRPC health
service says SERVING)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.ports import LOOPBACK, ServicePorts
from mesh.platform import BY_NAME, SERVICES
from mesh.platform import WORKERS as PLATFORM_WORKERS

# Fully qualified gRPC service name of each service, as Envoy routes and transcodes them
# (derived from mesh.platform, the one list).
GRPC_SERVICES: Mapping[str, str] = {s.name: s.grpc_service for s in SERVICES}
# Worker processes and the module each runs; they serve gRPC health only, so readiness works
# the same, but Envoy routes nothing to them.
WORKERS: Mapping[str, str] = {w.name: w.module for w in PLATFORM_WORKERS}

DEFAULT_ADMIN_EMAIL = "admin@elearn.local"


@dataclass(frozen=True)
class SharedEnv:
    """Settings every service process receives, whichever service it is."""

    database_url: str
    cache_url: str
    state_url: str
    nats_url: str
    jwt_public_key_file: Path
    jwt_private_key_file: Path
    admin_email: str
    admin_password: str
    log_level: str = "INFO"
    # host:port of the first course replica, for services that call CourseService.
    course_address: str = ""
    # host:port of the first user replica, for display names (svc_live).
    user_address: str = ""
    # Object storage (empty: none configured). s3_public_url is the base of the presigned URLs
    # clients get: the edge, whose /<bucket>/ route forwards to the S3 gateway unchanged.
    s3_url: str = ""
    s3_public_url: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    # Tracing (--observe): where spans go, and the sampling ratio (None: mesh's default).
    otlp_endpoint: str = ""
    trace_sample_ratio: float | None = None


def s3_env(shared: SharedEnv) -> dict[str, str]:
    if not shared.s3_url:
        return {}
    return {
        "S3_URL": shared.s3_url,
        "S3_PUBLIC_URL": shared.s3_public_url or shared.s3_url,
        "S3_ACCESS_KEY": shared.s3_access_key,
        "S3_SECRET_KEY": shared.s3_secret_key,
        "S3_BUCKET": shared.s3_bucket,
        "S3_REGION": shared.s3_region,
    }


def default_command(name: str) -> list[str]:
    """`<venv python> -m svc_<name>`; sys.executable is the venv's interpreter under make."""
    module = WORKERS[name] if name in WORKERS else BY_NAME[name].module
    return [sys.executable, "-m", module]


def service_env(
    name: str,
    index: int,
    ports: ServicePorts,
    shared: SharedEnv,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of replica `index` of service `name` (the services' settings read
    exactly these names; the prefix is the service name in upper case)."""
    prefix = name.upper().replace("-", "_")
    env = dict(os.environ if base is None else base)
    env.update(
        {
            f"{prefix}_GRPC_HOST": LOOPBACK,
            f"{prefix}_GRPC_PORT": str(ports.grpc),
            f"{prefix}_METRICS_PORT": str(ports.metrics),
            "DATABASE_URL": shared.database_url,
            "CACHE_URL": shared.cache_url,
            "STATE_URL": shared.state_url,
            "NATS_URL": shared.nats_url,
            "ELEARN_JWT_PUBLIC_KEY_FILE": str(shared.jwt_public_key_file),
            "ELEARN_INSTANCE": f"{name}-{index}",
            "ELEARN_LOG_LEVEL": shared.log_level,
            # Logs reach the file as they are written, so a failed start shows its last lines.
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(s3_env(shared))
    if shared.otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = shared.otlp_endpoint
        if shared.trace_sample_ratio is not None:
            env["TRACE_SAMPLE_RATIO"] = str(shared.trace_sample_ratio)
    if name == "quiz":
        env["QUIZ_COURSE_ADDRESS"] = shared.course_address
    if name == "live":
        env["LIVE_COURSE_ADDRESS"] = shared.course_address
        env["LIVE_USER_ADDRESS"] = shared.user_address
    if name == "user":
        env.update(
            {
                "USER_JWT_PRIVATE_KEY_FILE": str(shared.jwt_private_key_file),
                "USER_ADMIN_EMAIL": shared.admin_email,
                "USER_ADMIN_PASSWORD": shared.admin_password,
            }
        )
    return env


class HealthProbe:
    """Asks one replica's grpc.health.v1.Health/Check (service "") whether it is SERVING."""

    # Short reconnect backoff: the default grows to seconds while the server is still
    # starting, which would delay noticing that it came up.
    _OPTIONS = [
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500),
    ]

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        self._channel = grpc.insecure_channel(f"{host}:{port}", options=self._OPTIONS)
        self._stub = health_pb2_grpc.HealthStub(self._channel)

    def serving(self) -> bool:
        try:
            response = self._stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self._channel.close()
