"""Start-up of the servers the services use — Postgres, the two Valkeys, NATS — and of the
migrations, each returning the URL services get; plus the early check for busy ports."""

from __future__ import annotations

import functools
import logging
import os

from devstack import (
    detached_pgdata,
    jaeger,
    nats,
    pg_install,
    postgres,
    prometheus,
    seaweedfs,
    valkey,
)
from devstack.config import ROOT, StackConfig
from devstack.ports import LOOPBACK, port_in_use
from devstack.processes import Deadline, ManagedProcess, StackError
from devstack.supervisor import Supervisor

log = logging.getLogger("devstack")


def start_postgres(sup: Supervisor, cfg: StackConfig, deadline: Deadline) -> str:
    port = cfg.ports.postgres
    owner = postgres.run_as()
    data = cfg.postgres_dir or cfg.data_dir / "postgres"
    if owner is not None and cfg.postgres_dir is None:
        data.parent.mkdir(parents=True, exist_ok=True)
        if not pg_install.reachable(data.parent, owner):
            # A checkout in a private folder: keep the data where the postgres user can reach
            # it rather than open up folders that are not ours.
            data = detached_pgdata.path_for(cfg.data_dir)
    if detached_pgdata.is_detached(data):
        detached_pgdata.adopt(data, cfg.data_dir)
    install = pg_install.for_owner(cfg.postgres_install or postgres.install_dir(), owner)
    postgres.remove_stale_pid_file(data)
    if postgres.prepare(
        data,
        install=install,
        owner=owner,
        log_path=cfg.logs_dir / "initdb.log",
        deadline=deadline,
        abort=sup.abort,
    ):
        log.info("initdb done in %.1f s", deadline.seconds - deadline.remaining())
    proc = postgres.server(
        data, install=install, port=port, owner=owner, log_path=cfg.logs_dir / "postgres.log"
    )
    sup.launch(proc, lambda: postgres.is_ready(data, port), [port])
    sup.await_ready([proc], deadline)
    postgres.bootstrap(data, port)
    return postgres.database_url(port)


def valkey_port(cfg: StackConfig, role: valkey.Role) -> int:
    return cfg.ports.valkey_cache if role == "cache" else cfg.ports.valkey_state


def start_valkeys(sup: Supervisor, cfg: StackConfig, deadline: Deadline) -> dict[str, str]:
    """The URL of each role: the external one when configured, else a server of ours (both
    ours start together and are awaited together)."""
    external = {"cache": cfg.external_cache_url, "state": cfg.external_state_url}
    urls: dict[str, str] = {}
    started = []
    for role in valkey.ROLES:
        if url := external[role]:
            urls[role] = url
            continue
        port = valkey_port(cfg, role)
        name = valkey.process_name(role)
        proc = valkey.server(
            role, cfg.data_dir / name, port=port, log_path=cfg.logs_dir / f"{name}.log"
        )
        sup.launch(proc, functools.partial(valkey.is_ready, port), [port])
        started.append(proc)
        urls[role] = valkey.redis_url(port)
    sup.await_ready(started, deadline)
    return urls


def start_nats(sup: Supervisor, cfg: StackConfig, deadline: Deadline) -> str:
    port, monitor = cfg.ports.nats, cfg.ports.nats_monitor
    proc = nats.server(
        config_path=cfg.data_dir / "config" / "nats.conf",
        store_dir=cfg.data_dir / "nats",
        port=port,
        monitor_port=monitor,
        log_path=cfg.logs_dir / "nats.log",
    )
    sup.launch(proc, lambda: nats.is_ready(monitor), [port, monitor])
    sup.await_ready([proc], deadline)
    return nats.nats_url(port)


def start_seaweedfs(sup: Supervisor, cfg: StackConfig, deadline: Deadline) -> seaweedfs.S3Env:
    """Object storage: the external S3 when configured, else our SeaweedFS with the media
    bucket created (its readiness check)."""
    if cfg.s3 is not None:
        return cfg.s3
    media = cfg.ports.media
    root = cfg.data_dir / seaweedfs.NAME
    creds = seaweedfs.ensure_credentials(cfg.data_dir / "config" / "s3-identities.json")
    env = seaweedfs.S3Env(
        url=seaweedfs.s3_url(media.s3),
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        bucket=seaweedfs.DEFAULT_BUCKET,
    )
    proc = seaweedfs.server(
        root,
        ports=media.by_name(),
        s3_config=cfg.data_dir / "config" / "s3-identities.json",
        log_path=cfg.logs_dir / "seaweedfs.log",
    )
    sup.launch(proc, lambda: seaweedfs.ensure_bucket(env), list(media.by_name().values()))
    sup.await_ready([proc], deadline)
    return env


def start_jaeger(sup: Supervisor, cfg: StackConfig, deadline: Deadline) -> str:
    """Jaeger with --observe; returns the OTLP endpoint services and Envoy export to."""
    ports = cfg.ports.jaeger
    proc = jaeger.server(
        config_path=cfg.data_dir / "config" / "jaeger.yaml",
        ports=ports,
        log_path=cfg.logs_dir / "jaeger.log",
    )
    sup.launch(proc, lambda: jaeger.is_ready(ports), ports.all())
    sup.await_ready([proc], deadline)
    return jaeger.otlp_endpoint(ports)


def start_prometheus(sup: Supervisor, cfg: StackConfig, deadline: Deadline) -> str:
    """Prometheus with --observe, once services and Envoy run: it scrapes what was started
    (every replica's metrics port, Envoy's admin stats). Returns its URL."""
    port = cfg.ports.prometheus
    started = {name: cfg.ports.services[name][:count] for name, count in cfg.replicas.items()}
    jobs = prometheus.scrape_jobs(started, cfg.ports.envoy_admin if cfg.with_envoy else None)
    proc = prometheus.server(
        config_path=cfg.data_dir / "config" / "prometheus.yml",
        config_text=prometheus.render_config(jobs, prometheus.rule_files()),
        data_dir=cfg.data_dir / "prometheus",
        port=port,
        log_path=cfg.logs_dir / "prometheus.log",
    )
    sup.launch(proc, lambda: prometheus.is_ready(port), [port])
    sup.await_ready([proc], deadline)
    return prometheus.ui_url(port)


def migrate(sup: Supervisor, cfg: StackConfig, database_url: str, deadline: Deadline) -> None:
    assert cfg.migrate_command is not None
    proc = ManagedProcess(
        name="migrate",
        index=0,
        argv=list(cfg.migrate_command),
        log_path=cfg.logs_dir / "migrate.log",
        env={**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
    )
    proc.start()
    code = proc.wait_exit(deadline, sup.abort)
    log.info("migrations finished in %.1f s", deadline.seconds - deadline.remaining())
    if code != 0:
        last = proc.log_tail()
        hint = ""
        if "No module named" in last:
            hint = "\n(the migration command is missing; pass migrate_command=None to skip it)"
        raise StackError(f"migrations failed (exit {code}); last log lines:\n{last}{hint}")


def check_ports(cfg: StackConfig) -> None:
    """Fail early, naming every busy port, rather than with one server's bind error."""
    plan = cfg.ports
    wanted: list[tuple[str, int]] = []
    if not cfg.database_url:
        wanted.append(("postgres", plan.postgres))
    if not cfg.external_cache_url:
        wanted.append(("valkey cache", plan.valkey_cache))
    if not cfg.external_state_url:
        wanted.append(("valkey state", plan.valkey_state))
    if not cfg.nats_url:
        wanted += [("nats", plan.nats), ("nats monitoring", plan.nats_monitor)]
    if cfg.s3 is None:
        wanted += [(f"seaweedfs {name}", port) for name, port in plan.media.by_name().items()]
    for name, count in cfg.replicas.items():
        for index, ports in enumerate(plan.services[name][:count]):
            wanted += [(f"{name}-{index} grpc", ports.grpc)]
            wanted += [(f"{name}-{index} metrics", ports.metrics)]
    if cfg.with_envoy:
        wanted += [("envoy edge", plan.edge), ("envoy admin", plan.envoy_admin)]
    if cfg.observe:
        wanted += [(f"jaeger {name}", port) for name, port in vars(plan.jaeger).items()]
        wanted += [("prometheus", plan.prometheus)]
    busy = [f"{port} ({what})" for what, port in wanted if port_in_use(port)]
    if busy:
        raise StackError(
            f"port(s) already in use on {LOOPBACK}: {', '.join(busy)}; another stack or "
            "server holds them (`make stop`, or choose other ports)"
        )
