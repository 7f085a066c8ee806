"""The local stack as one object: start everything in order, wait until each part is ready,
stop everything in reverse, and restart a single process on demand (tests kill -9 replicas).

    cfg = StackConfig.for_tests(tmp_path, replicas={"live": 3})
    stack = Stack(cfg)
    endpoints = stack.start(timeout=120)
    ...
    stack.stop()   # leaves no process behind, also after a failed start

Start order: Postgres, the cache and state Valkeys, NATS, object storage, Jaeger (with
`observe`), JWT keys, migrations, the services' replicas (all at once), Envoy, Prometheus (with
`observe`, scraping what started). Stop order: services (SIGTERM together, then a grace), Envoy,
NATS, Valkeys, Postgres, then Jaeger and Prometheus: each part
stops only after everything that uses it. The servers' start-up lives in devstack.infra,
process bookkeeping in devstack.supervisor.
"""

from __future__ import annotations

import atexit

from devstack import envoy, envoy_media, envoy_tracing, infra, jaeger
from devstack.config import ROOT, StackConfig, Timeouts
from devstack.keys import ensure_admin_password, ensure_jwt_keys
from devstack.ports import LOOPBACK
from devstack.processes import Abort, Deadline, ManagedProcess, StackAborted, StackError
from devstack.runstate import ENDPOINTS_FILE, Endpoints, SupervisorLock
from devstack.seaweedfs import DEFAULT_BUCKET
from devstack.services import (
    GRPC_SERVICES,
    HealthProbe,
    SharedEnv,
    service_env,
)
from devstack.supervisor import Supervisor

__all__ = ["Endpoints", "Stack", "StackAborted", "StackConfig", "StackError", "Timeouts"]


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._abort = Abort()
        self._sup = Supervisor(config.data_dir, self._abort)
        self._probes: dict[str, HealthProbe] = {}
        self._lock: SupervisorLock | None = None
        self._endpoints: Endpoints | None = None

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            raise StackError("the stack is not running")
        return self._endpoints

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """Running and exited children by key (`postgres-0`, `valkey-state-0`, `live-2`)."""
        return self._sup.processes

    def process(self, name: str, index: int = 0) -> ManagedProcess:
        return self._sup.process(name, index)

    def start(self, timeout: float = 180.0) -> Endpoints:
        """Start everything and return once all of it is ready; on any failure stop what was
        started and raise StackError with the failing process's last log lines."""
        with self._sup.mutex:
            if self._lock is not None:
                raise StackError("this stack is already started")
            self._abort.clear()
            lock = SupervisorLock(self.config.data_dir)
            lock.acquire()
            self._lock = lock
        atexit.register(self.stop)
        try:
            return self._start_all(Deadline(timeout))
        except BaseException:
            self.stop()
            raise

    def request_stop(self) -> None:
        """Make a start in progress give up at its next poll; safe from a signal handler."""
        self._abort.set()

    def wait_for_stop_request(self, timeout: float) -> bool:
        """Block up to `timeout` s; True once request_stop() was called (the CLI's idle loop)."""
        return self._abort.wait(timeout)

    def stop(self) -> None:
        """Stop every process this stack started; idempotent."""
        self._abort.set()
        with self._sup.mutex:
            if self._lock is None:
                return
            try:
                self._sup.stop_all(self.config.service_grace)
            finally:
                for probe in self._probes.values():
                    probe.close()
                self._probes.clear()
                self._endpoints = None
                (self.config.data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
                self._lock.release()
                self._lock = None
        atexit.unregister(self.stop)

    def kill(self, name: str, index: int = 0) -> None:
        """SIGKILL one process and its group, as a crash would; restart() brings it back."""
        self.process(name, index).kill()

    def restart(self, name: str, index: int = 0, timeout: float = 60.0) -> None:
        """Stop one process gracefully if it still runs, start it again with the same ports
        and environment, and wait until it is ready."""
        proc = self.process(name, index)
        proc.stop()
        self._sup.relaunch(proc)
        self._sup.await_ready([proc], Deadline(timeout))

    def exited(self) -> list[ManagedProcess]:
        """Children that are no longer running (the CLI reports them while `up`)."""
        return self._sup.exited()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- start phases -----------------------------------------------------------------

    def _start_all(self, overall: Deadline) -> Endpoints:
        cfg, sup, timeouts = self.config, self._sup, self.config.timeouts
        (cfg.data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        sup.kill_leftovers()
        infra.check_ports(cfg)
        database_url = cfg.database_url or infra.start_postgres(
            sup, cfg, self._phase(timeouts.infra, overall)
        )
        valkeys = infra.start_valkeys(sup, cfg, self._phase(timeouts.infra, overall))
        nats_url = cfg.nats_url or infra.start_nats(sup, cfg, self._phase(timeouts.infra, overall))
        s3 = infra.start_seaweedfs(sup, cfg, self._phase(timeouts.infra, overall))
        otlp = (
            infra.start_jaeger(sup, cfg, self._phase(timeouts.infra, overall))
            if cfg.observe
            else ""
        )
        keys = ensure_jwt_keys(cfg.data_dir / "keys")
        shared = SharedEnv(
            database_url=database_url,
            cache_url=valkeys["cache"],
            state_url=valkeys["state"],
            nats_url=nats_url,
            jwt_public_key_file=keys.public_key_file,
            jwt_private_key_file=keys.private_key_file,
            admin_email=cfg.admin_email,
            admin_password=cfg.admin_password
            or ensure_admin_password(cfg.data_dir / "admin-password"),
            log_level=cfg.log_level,
            s3_url=s3.url,
            s3_public_url=self._s3_public_url(s3.url),
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            s3_bucket=s3.bucket,
            s3_region=s3.region,
            course_address=_first_replica(cfg, "course"),
            user_address=_first_replica(cfg, "user"),
            otlp_endpoint=otlp,
            trace_sample_ratio=cfg.trace_sample_ratio,
        )
        if cfg.migrate_command is not None:
            infra.migrate(sup, cfg, database_url, self._phase(timeouts.migrate, overall))
        self._start_services(shared, self._phase(timeouts.services, overall))
        if cfg.with_envoy:
            self._start_envoy(self._phase(timeouts.envoy, overall))
        prometheus_url = (
            infra.start_prometheus(sup, cfg, self._phase(timeouts.infra, overall))
            if cfg.observe
            else ""
        )
        endpoints = self._make_endpoints(shared, prometheus_url)
        endpoints.write(cfg.data_dir / ENDPOINTS_FILE)
        self._endpoints = endpoints
        return endpoints

    def _start_services(self, shared: SharedEnv, deadline: Deadline) -> None:
        cfg = self.config
        started = []
        for name, count in cfg.replicas.items():
            for index in range(count):
                ports = cfg.ports.services[name][index]
                proc = ManagedProcess(
                    name=name,
                    index=index,
                    argv=list(cfg.service_command(name)),
                    log_path=cfg.logs_dir / f"{name}-{index}.log",
                    env=service_env(name, index, ports, shared),
                    cwd=ROOT,
                    grace=cfg.service_grace,
                )
                probe = HealthProbe(ports.grpc)
                self._probes[proc.key] = probe
                self._sup.launch(proc, probe.serving, [ports.grpc, ports.metrics])
                started.append(proc)
        # All replicas start at once and are awaited together: Python start-up dominates.
        self._sup.await_ready(started, deadline)

    def _s3_public_url(self, s3_url: str) -> str:
        """Clients reach our SeaweedFS through the edge (so a browser on the edge's origin can
        upload); an external S3 they reach directly."""
        cfg = self.config
        if cfg.s3 is None and cfg.with_envoy:
            return f"http://{LOOPBACK}:{cfg.ports.edge}"
        return s3_url

    def _start_envoy(self, deadline: Deadline) -> None:
        cfg = self.config
        upstreams = [
            envoy.UpstreamSpec(
                name=name,
                grpc_service=GRPC_SERVICES[name],
                endpoints=[(LOOPBACK, p.grpc) for p in cfg.ports.services[name][:count]],
            )
            for name, count in cfg.replicas.items()
            if name in GRPC_SERVICES
        ]
        render = cfg.render_envoy or envoy.render_edge_config
        config_yaml = render(
            edge_host=LOOPBACK,
            edge_port=cfg.ports.edge,
            admin_port=cfg.ports.envoy_admin,
            protoset=cfg.protoset,
            upstreams=upstreams,
        )
        if cfg.s3 is None and cfg.render_envoy is None:
            config_yaml = envoy_media.with_media_route(
                config_yaml, bucket=DEFAULT_BUCKET, host=LOOPBACK, port=cfg.ports.media.s3
            )
        if cfg.observe:
            config_yaml = envoy_tracing.with_tracing(
                config_yaml,
                collector=(LOOPBACK, cfg.ports.jaeger.otlp_grpc),
                sample_ratio=cfg.trace_sample_ratio,
            )
        proc = envoy.server(
            config_path=cfg.data_dir / "config" / "envoy.yaml",
            config_yaml=config_yaml,
            log_path=cfg.logs_dir / "envoy.log",
            workers=cfg.edge_workers,
        )
        admin = cfg.ports.envoy_admin
        self._sup.launch(proc, lambda: envoy.is_ready(admin), [cfg.ports.edge, admin])
        self._sup.await_ready([proc], deadline)

    def _phase(self, seconds: float, overall: Deadline) -> Deadline:
        if overall.expired():
            raise StackError(f"the stack did not start within {overall.seconds:.0f} s")
        return Deadline(min(seconds, overall.remaining()))

    def _make_endpoints(self, shared: SharedEnv, prometheus_url: str) -> Endpoints:
        cfg = self.config
        replicas = {name: cfg.ports.services[name][:count] for name, count in cfg.replicas.items()}
        return Endpoints(
            edge=f"{LOOPBACK}:{cfg.ports.edge}" if cfg.with_envoy else None,
            envoy_admin=f"{LOOPBACK}:{cfg.ports.envoy_admin}" if cfg.with_envoy else None,
            services={n: [f"{LOOPBACK}:{p.grpc}" for p in ps] for n, ps in replicas.items()},
            metrics={n: [f"{LOOPBACK}:{p.metrics}" for p in ps] for n, ps in replicas.items()},
            database_url=shared.database_url,
            cache_url=shared.cache_url,
            state_url=shared.state_url,
            nats_url=shared.nats_url,
            admin_email=shared.admin_email,
            admin_password=shared.admin_password,
            jwt_public_key_file=str(shared.jwt_public_key_file),
            jwt_private_key_file=str(shared.jwt_private_key_file),
            data_dir=str(cfg.data_dir),
            s3_url=shared.s3_url,
            s3_public_url=shared.s3_public_url,
            s3_access_key=shared.s3_access_key,
            s3_secret_key=shared.s3_secret_key,
            s3_bucket=shared.s3_bucket,
            jaeger_ui=jaeger.ui_url(cfg.ports.jaeger) if cfg.observe else "",
            otlp_endpoint=shared.otlp_endpoint,
            prometheus=prometheus_url,
        )


def _first_replica(cfg: StackConfig, name: str) -> str:
    ports = cfg.ports.services.get(name, ())
    return f"{LOOPBACK}:{ports[0].grpc}" if cfg.replicas.get(name) and ports else ""
