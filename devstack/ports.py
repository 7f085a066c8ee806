"""Which loopback port each process of the local stack listens on.

`make up` uses fixed, non-standard ports so that a developer's own Postgres or Redis on the
usual ports never collides with ours and so that URLs stay the same from run to run. Tests ask
the kernel for free ports instead, so parallel runs never collide.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from mesh.platform import PROCESS_NAMES

LOOPBACK = "127.0.0.1"

# The platform's order (mesh.platform) fixes the default port of each service's first replica
# (user 20051 … analytics 20055); further replicas add 10 per replica index (user-1 20061, live-2
# 20074), and metrics ports sit 1000 above their gRPC port (user-0 21051). Workers come after
# the services (quiz-worker-0 20056). Every fixed port stays below Linux's ephemeral range
# (32768-60999): a listener there can find its port taken by an outgoing connection of the
# stack itself (SeaweedFS and the pools open hundreds), which failed `make start` at random.
SERVICE_ORDER = PROCESS_NAMES
GRPC_BASE_PORT = 20051
REPLICA_PORT_STRIDE = 10
METRICS_PORT_OFFSET = 1000
MAX_REPLICAS = 9


@dataclass(frozen=True)
class ServicePorts:
    grpc: int
    metrics: int


MEDIA_PORT_COUNT = 8


@dataclass(frozen=True)
class MediaPorts:
    """SeaweedFS (devstack.seaweedfs): the S3 gateway clients use, and its inner servers."""

    s3: int = 18333
    s3_grpc: int = 18334
    master: int = 18335
    master_grpc: int = 18336
    volume: int = 18337
    volume_grpc: int = 18338
    filer: int = 18339
    filer_grpc: int = 18340

    def by_name(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class JaegerPorts:
    """Jaeger (devstack.jaeger, with --observe): OTLP receivers, query API/UI, health."""

    otlp_grpc: int = 24317
    otlp_http: int = 24318
    query_http: int = 26686
    query_grpc: int = 26685
    health: int = 23133

    def all(self) -> list[int]:
        return [self.otlp_grpc, self.otlp_http, self.query_http, self.query_grpc, self.health]


@dataclass(frozen=True)
class PortPlan:
    postgres: int
    valkey_cache: int
    valkey_state: int
    nats: int
    nats_monitor: int
    edge: int
    envoy_admin: int
    # service name -> one entry per replica, indexed by replica number
    services: Mapping[str, tuple[ServicePorts, ...]]
    media: MediaPorts = MediaPorts()
    jaeger: JaegerPorts = JaegerPorts()
    # Prometheus (devstack.prometheus, with --observe): its UI and query API.
    prometheus: int = 29090

    @classmethod
    def defaults(cls, replicas: Mapping[str, int], *, edge_port: int = 8080) -> PortPlan:
        services: dict[str, tuple[ServicePorts, ...]] = {}
        for name, count in replicas.items():
            offset = SERVICE_ORDER.index(name)
            grpc_ports = [
                GRPC_BASE_PORT + offset + REPLICA_PORT_STRIDE * index for index in range(count)
            ]
            services[name] = tuple(ServicePorts(p, p + METRICS_PORT_OFFSET) for p in grpc_ports)
        return cls(
            postgres=15432,
            valkey_cache=16379,
            valkey_state=16380,
            nats=14222,
            nats_monitor=18222,
            edge=edge_port,
            envoy_admin=19901,
            services=services,
        )

    @classmethod
    def free(cls, replicas: Mapping[str, int]) -> PortPlan:
        needed = 8 + MEDIA_PORT_COUNT + 2 * sum(replicas.values())
        ports = iter(free_ports(needed))
        services = {
            name: tuple(ServicePorts(next(ports), next(ports)) for _ in range(count))
            for name, count in replicas.items()
        }
        return cls(
            postgres=next(ports),
            valkey_cache=next(ports),
            valkey_state=next(ports),
            nats=next(ports),
            nats_monitor=next(ports),
            edge=next(ports),
            envoy_admin=next(ports),
            services=services,
            media=MediaPorts(*(next(ports) for _ in range(MEDIA_PORT_COUNT))),
            # Picked even when not observing: five ports are cheap, a second plan is not.
            jaeger=JaegerPorts(*free_ports(len(JaegerPorts().all()))),
            prometheus=next(ports),
        )


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel reports free on loopback right now.

    All sockets stay bound until every port is picked, so the list holds no duplicates. Another
    process could still take one before our server binds it; the server then fails with a clear
    "address in use" in its log, which is rare enough for tests.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something listens on host:port.

    SO_REUSEADDR lets the probe ignore connections lingering in TIME_WAIT from a previous run,
    so only a live listener counts as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
