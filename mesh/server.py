"""Server bootstrap on grpc.aio: health, reflection, keepalive, limits, the mesh interceptor,
metrics endpoint, background tasks, and graceful shutdown on SIGTERM/SIGINT.

Health says NOT_SERVING until the service's dependencies are connected and its servicers are
registered, then SERVING; on a signal it goes back to NOT_SERVING (so Envoy and readiness probes
stop sending new calls), drains in-flight calls for the grace period, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mesh.acceptors import Acceptors
from mesh.auth import Policy, TokenVerifier, load_public_key
from mesh.bus import Bus, connect_bus
from mesh.config import MeshSettings
from mesh.interceptor import MeshInterceptor
from mesh.metrics import serve_metrics
from mesh.reflection import SERVICE_NAME as REFLECTION_SERVICE
from mesh.reflection import enable_server_reflection
from mesh.revocation import follow_revocations

log = logging.getLogger("mesh.server")

# The cyclic collector ran about every 700 allocations and, every few rounds, walked the
# whole heap (SQLAlchemy, protobuf descriptors, grpc): an eighth of a busy service's CPU in a
# profile of UpdateVideoProgress. What start-up built is frozen out of every collection, and
# young collections are rarer. grpc.aio (1.85) leaves every served call in a reference cycle
# (its `_find_method_handler` closure with the call's details and metadata, 13-14 objects),
# so a unary service frees that garbage in young collections whatever the threshold: at
# 20,000 a pause of 8-11 ms of CPU every 2 s per course replica under progress load. 2,000
# cut the pauses to about 1 ms for the same CPU there, but on a live pod at 4,000 streams it
# tripled the collector's CPU (events still queued are promoted and collected again), so
# 20,000 stays for every service (measured 2026-12-05).
GC_THRESHOLDS = (20_000, 20, 20)

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
    # The process's NATS connection, if the service opened one; otherwise the bootstrap opens
    # its own to follow session revocations (when NATS_URL is set).
    bus: Bus | None = None
    # Run after health turns NOT_SERVING and before in-flight calls drain (e.g. telling
    # long-lived streams to reconnect elsewhere, so the drain does not wait out their grace).
    on_shutdown: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Full method names accepted several calls at a time (mesh.acceptors): busy paths that do
    # not wait for a Postgres connection.
    hot_methods: Sequence[str] = ()


def worker_spec(
    name: str, background: Sequence[Callable[[], Coroutine[Any, Any, None]]], bus: Bus | None
) -> ServiceSpec:
    """A worker process (grading, transcoding, progress flushing): no gRPC API of its own,
    only the health and reflection every process serves, so the launcher's readiness check and
    Kubernetes probes treat it like a service."""
    return ServiceSpec(
        name=name,
        services=[],
        register=_no_services,
        policy=Policy({}),
        background=background,
        bus=bus,
    )


def _no_services(_: grpc.aio.Server) -> None:
    """Health and reflection are added by the bootstrap itself."""


class _Recorder:
    """Stands in for the server in a generated add_XServicer_to_server, to take its handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, _service: str, handlers: dict[str, Any]) -> None:
        self.handlers = dict(handlers)


def _identity(data: bytes) -> bytes:
    return data


def register_preserialized(
    server: grpc.aio.Server,
    service: str,
    add_servicer: Callable[[Any, Any], None],
    servicer: Any,
    methods: Sequence[str],
) -> None:
    """Register a servicer as its generated `add_XServicer_to_server` would, except that the
    named methods return (or stream) bytes already serialized: grpc writes them as they are.
    For answers built once and sent many times (a cached page, a broadcast event)."""
    recorder = _Recorder()
    add_servicer(servicer, recorder)
    unknown = set(methods) - set(recorder.handlers)
    if unknown:
        raise ValueError(f"{service} has no method {sorted(unknown)}")
    handlers = {
        name: h._replace(response_serializer=_identity) if name in methods else h
        for name, h in recorder.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def build_verifier(settings: MeshSettings, policy: Policy) -> TokenVerifier | None:
    """The token verifier, or None when no method reads tokens. A service whose rules need
    tokens but that has no key would refuse every caller (or, worse, trust none of them
    while looking healthy), so it refuses to start instead."""
    if settings.jwt_public_key_file:
        return TokenVerifier(
            load_public_key(settings.jwt_public_key_file),
            leeway_seconds=settings.jwt_leeway_seconds,
            max_ttl_seconds=settings.jwt_max_ttl_seconds,
        )
    needing = policy.methods_reading_tokens()
    if needing:
        raise SystemExit(
            f"{settings.service}: ELEARN_JWT_PUBLIC_KEY_FILE is not set, but {len(needing)} "
            f"method(s) verify access tokens (first: {needing[0]}); point it at svc_user's "
            "public key PEM"
        )
    return None


def build_server(
    settings: MeshSettings, spec: ServiceSpec, verifier: TokenVerifier | None
) -> tuple[grpc.aio.Server, Acceptors]:
    interceptor = MeshInterceptor(
        spec.policy,
        verifier,
        access_log=settings.access_log,
        slow_call_ms=settings.slow_call_ms,
        max_concurrent=settings.max_concurrent_rpcs,
        max_queue_ms=settings.max_queue_ms,
        queue_target_ms=settings.queue_target_ms,
        queue_interval_ms=settings.queue_interval_ms,
    )
    options = (
        *KEEPALIVE_OPTIONS,
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.server.max_pending_requests", settings.max_pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_pending_calls),
    )
    server = grpc.aio.server(interceptors=[interceptor], options=options)
    return server, Acceptors(server, [interceptor], settings.accept_depth)


async def run(settings: MeshSettings, spec: ServiceSpec) -> None:
    """Serve until SIGTERM/SIGINT, then drain and stop. A background task that dies stops the
    service too, and the process then exits non-zero (SystemExit) with the task's traceback
    logged, so a supervisor restarts it instead of leaving a half-working replica."""
    verifier = build_verifier(settings, spec.policy)
    server, acceptors = build_server(settings, spec, verifier)
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

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    async with contextlib.AsyncExitStack() as exits:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
            exits.callback(loop.remove_signal_handler, sig)
        await server.start()
        acceptors.start(spec.hot_methods)
        # Stops at once if start-up fails below; a no-op after the graceful stop.
        exits.push_async_callback(acceptors.stop)
        exits.push_async_callback(server.stop, None)
        serve_metrics(settings.metrics_port, settings.grpc_host)
        tasks = [asyncio.create_task(job(), name=job.__name__) for job in spec.background]
        if verifier is not None and settings.nats_url:
            tasks.append(await _follow_revocations(settings, spec, verifier, exits))
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        for name in ("", *spec.services):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving", extra={"address": f"{settings.grpc_host}:{port}", "services": spec.services}
        )
        died = await _until_stopped(stop, tasks)

        await health_servicer.enter_graceful_shutdown()
        if not died:
            await asyncio.sleep(settings.shutdown_delay_seconds)
        for hook in spec.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
        log.info("draining", extra={"grace_seconds": settings.shutdown_grace_seconds})
        await server.stop(settings.shutdown_grace_seconds)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    log.info("stopped")
    if died:
        raise SystemExit(f"{spec.name}: background task(s) {', '.join(died)} died; see the log")


async def _follow_revocations(
    settings: MeshSettings,
    spec: ServiceSpec,
    verifier: TokenVerifier,
    exits: contextlib.AsyncExitStack,
) -> asyncio.Task[None]:
    """Start following session revocations; returns once NATS has the subscription, so no
    revocation published after SERVING is missed."""
    bus = spec.bus
    if bus is None:
        bus = await exits.enter_async_context(connect_bus(settings))
    subscribed = asyncio.Event()
    task = asyncio.create_task(
        follow_revocations(bus, verifier, subscribed), name="follow_revocations"
    )
    ready = asyncio.create_task(subscribed.wait())
    await asyncio.wait((task, ready), timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if not subscribed.is_set():
        ready.cancel()
        task.cancel()
        cause = task.exception() if task.done() and not task.cancelled() else "timed out"
        raise SystemExit(f"{spec.name}: cannot subscribe to session revocations: {cause}")
    return task


async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> list[str]:
    """Wait for a stop signal or for a background task to end; returns the names of the tasks
    that ended (each logged with its exception)."""
    stopped_by = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopped_by, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stopped_by.cancel()
    died = []
    for t in tasks:
        if t not in done:
            continue
        died.append(t.get_name())
        exc = None if t.cancelled() else t.exception()
        log.error(
            "background task %s %s; shutting down",
            t.get_name(),
            "died" if exc is not None else "ended on its own",
            exc_info=exc,
        )
    return died


def _check_policy(server: grpc.aio.Server, spec: ServiceSpec) -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    methods = [
        f"/{name}/{m.name}" for name in spec.services for m in pool.FindServiceByName(name).methods
    ]
    spec.policy.check_complete(methods)
