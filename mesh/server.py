"""Server bootstrap on grpc.aio: health, reflection, keepalive, limits, the mesh interceptor,
metrics endpoint, background tasks, and graceful shutdown on SIGTERM/SIGINT.

Health says NOT_SERVING until the service's dependencies are connected and its servicers are
registered, then SERVING; on a signal it goes back to NOT_SERVING (so Envoy and readiness probes
stop sending new calls), drains in-flight calls for the grace period, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mesh.auth import Policy, TokenVerifier, load_public_key
from mesh.config import MeshSettings
from mesh.interceptor import MeshInterceptor
from mesh.metrics import serve_metrics
from mesh.reflection import SERVICE_NAME as REFLECTION_SERVICE
from mesh.reflection import enable_server_reflection

log = logging.getLogger("mesh.server")

# Keepalive: ping idle connections so dead peers (a closed laptop, a killed pod) are found in
# about a minute rather than at the next write (finding S4); allow clients to ping every 10 s.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_connection_age_grace_ms", 30_000),
)


@dataclass
class ServiceSpec:
    """What a service contributes to the shared bootstrap."""

    name: str
    # Fully-qualified gRPC service names served (health and reflection list them).
    services: Sequence[str]
    register: Callable[[grpc.aio.Server], None]
    policy: Policy
    # Extra names reflection lists; the edge routes reflection to one service, which lists the
    # whole platform so `grpcurl <edge> list` shows every service.
    reflection_extra: Sequence[str] = ()
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


def build_server(settings: MeshSettings, spec: ServiceSpec) -> grpc.aio.Server:
    verifier = None
    if settings.jwt_public_key_file:
        verifier = TokenVerifier(load_public_key(settings.jwt_public_key_file))
    interceptor = MeshInterceptor(
        spec.policy,
        verifier,
        access_log=settings.access_log,
        slow_call_ms=settings.slow_call_ms,
        max_concurrent=settings.max_concurrent_rpcs,
    )
    options = (
        *KEEPALIVE_OPTIONS,
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    )
    return grpc.aio.server(interceptors=[interceptor], options=options)


async def run(settings: MeshSettings, spec: ServiceSpec) -> None:
    """Serve until SIGTERM/SIGINT, then drain and stop."""
    server = build_server(settings, spec)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    spec.register(server)
    _check_policy(server, spec)
    names = (*spec.services, *spec.reflection_extra, health.SERVICE_NAME, REFLECTION_SERVICE)
    enable_server_reflection(tuple(dict.fromkeys(names)), server)

    address = f"{settings.grpc_host}:{settings.grpc_port}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"{spec.name}: cannot listen on {address}")
    await server.start()
    serve_metrics(settings.metrics_port, settings.grpc_host)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    tasks = [asyncio.create_task(job(), name=job.__name__) for job in spec.background]
    for name in ("", *spec.services):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving", extra={"address": f"{settings.grpc_host}:{port}", "services": spec.services}
    )

    stopped_by = asyncio.create_task(stop.wait())
    crashed = [asyncio.create_task(_watch(t)) for t in tasks]
    done, _ = await asyncio.wait([stopped_by, *crashed], return_when=asyncio.FIRST_COMPLETED)
    if stopped_by not in done:
        log.error("a background task died; shutting down")

    await health_servicer.enter_graceful_shutdown()
    log.info("draining", extra={"grace_seconds": settings.shutdown_grace_seconds})
    await server.stop(settings.shutdown_grace_seconds)
    for t in (*tasks, *crashed, stopped_by):
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    log.info("stopped")


async def _watch(task: asyncio.Task[None]) -> None:
    """Completes (re-raising) only if a background task ends on its own."""
    await task


def _check_policy(server: grpc.aio.Server, spec: ServiceSpec) -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    methods = [
        f"/{name}/{m.name}" for name in spec.services for m in pool.FindServiceByName(name).methods
    ]
    spec.policy.check_complete(methods)
