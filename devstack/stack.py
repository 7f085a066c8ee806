"""The local stack as one object: start everything in order, wait until each part is ready,
stop everything in reverse, and restart a single process on demand (tests kill -9 replicas).

    cfg = StackConfig.for_tests(tmp_path, replicas={"live": 3})
    stack = Stack(cfg)
    endpoints = stack.start(timeout=120)
    ...
    stack.stop()   # leaves no process behind, also after a failed start

Start order: Postgres, Valkey, NATS, JWT keys, migrations, the services' replicas (all at
once), Envoy. Stop order: services (SIGTERM together, then a grace), Envoy, NATS, Valkey,
Postgres: each part stops only after everything that uses it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import psutil

from devstack import detached_pgdata, envoy, nats, postgres, valkey
from devstack.config import ROOT, StackConfig, Timeouts
from devstack.keys import ensure_admin_password, ensure_jwt_keys
from devstack.ports import LOOPBACK, port_in_use
from devstack.processes import (
    Abort,
    Deadline,
    ManagedProcess,
    StackAborted,
    StackError,
    alive,
    kill_group,
    wait_gone,
    wait_until,
)
from devstack.runstate import (
    ENDPOINTS_FILE,
    Endpoints,
    ProcessRecord,
    SupervisorLock,
    read_pids,
    write_pids,
)
from devstack.services import GRPC_SERVICES, WORKERS, HealthProbe, SharedEnv, service_env

__all__ = ["Endpoints", "Stack", "StackAborted", "StackConfig", "StackError", "Timeouts"]

log = logging.getLogger("devstack")

INFRA_STOP_ORDER = ("envoy", "nats", "valkey", "postgres")

Ready = Callable[[], bool]


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._procs: dict[str, ManagedProcess] = {}  # key -> process, in start order
        self._ready: dict[str, Ready] = {}
        self._ports: dict[str, list[int]] = {}
        self._probes: dict[str, HealthProbe] = {}
        self._abort = Abort()
        self._mutex = threading.RLock()
        self._lock: SupervisorLock | None = None
        self._endpoints: Endpoints | None = None

    # ----- public API -------------------------------------------------------------------

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            raise StackError("the stack is not running")
        return self._endpoints

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """Running and exited children by key (`postgres-0`, `user-0`, `live-2`)."""
        with self._mutex:
            return dict(self._procs)

    def process(self, name: str, index: int = 0) -> ManagedProcess:
        key = f"{name}-{index}"
        with self._mutex:
            if key not in self._procs:
                known = ", ".join(self._procs) or "none"
                raise StackError(f"no process {key} in this stack (running: {known})")
            return self._procs[key]

    def start(self, timeout: float = 180.0) -> Endpoints:
        """Start everything and return once all of it is ready; on any failure stop what was
        started and raise StackError with the failing process's last log lines."""
        with self._mutex:
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
        with self._mutex:
            if self._lock is None:
                return
            procs = list(self._procs.values())
            services = [p for p in procs if p.name in GRPC_SERVICES or p.name in WORKERS]
            infra = [p for name in INFRA_STOP_ORDER for p in procs if p.name == name]
            others = [p for p in procs if p not in services and p not in infra]
            try:
                _stop_together(services, self.config.service_grace)
                for proc in infra + others:
                    proc.stop()
            finally:
                # Whatever an error above skipped; a no-op for processes already stopped.
                for proc in procs:
                    proc.kill()
                for probe in self._probes.values():
                    probe.close()
                self._probes.clear()
                self._procs.clear()
                self._ready.clear()
                self._endpoints = None
                (self.config.data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
                self._write_pids()
                self._lock.release()
                self._lock = None
        atexit.unregister(self.stop)

    def kill(self, name: str, index: int = 0) -> None:
        """SIGKILL one process and its group, as a crash would; restart() brings it back."""
        proc = self.process(name, index)
        proc.kill()

    def restart(self, name: str, index: int = 0, timeout: float = 60.0) -> None:
        """Stop one process gracefully if it still runs, start it again with the same ports
        and environment, and wait until it is ready."""
        proc = self.process(name, index)
        proc.stop()
        with self._mutex:
            proc.start()
            self._write_pids()
        self._await_ready([proc], Deadline(timeout))

    def exited(self) -> list[ManagedProcess]:
        """Children that are no longer running (the CLI reports them while `up`)."""
        with self._mutex:
            return [p for p in self._procs.values() if not p.running()]

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- start phases -----------------------------------------------------------------

    def _start_all(self, overall: Deadline) -> Endpoints:
        cfg = self.config
        (cfg.data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        self._kill_leftovers()
        self._check_ports()
        database_url = cfg.database_url or self._start_postgres(overall)
        redis_url = cfg.redis_url or self._start_valkey(overall)
        nats_url = cfg.nats_url or self._start_nats(overall)
        keys = ensure_jwt_keys(cfg.data_dir / "keys")
        shared = SharedEnv(
            database_url=database_url,
            cache_url=redis_url,
            state_url=redis_url,
            nats_url=nats_url,
            jwt_public_key_file=keys.public_key_file,
            jwt_private_key_file=keys.private_key_file,
            admin_email=cfg.admin_email,
            admin_password=cfg.admin_password
            or ensure_admin_password(cfg.data_dir / "admin-password"),
            log_level=cfg.log_level,
            course_address=_first_replica(cfg, "course"),
        )
        if cfg.migrate_command is not None:
            self._migrate(database_url, self._phase(cfg.timeouts.migrate, overall))
        self._start_services(shared, self._phase(cfg.timeouts.services, overall))
        if cfg.with_envoy:
            self._start_envoy(self._phase(cfg.timeouts.envoy, overall))
        endpoints = self._make_endpoints(shared)
        endpoints.write(cfg.data_dir / ENDPOINTS_FILE)
        self._endpoints = endpoints
        return endpoints

    def _start_postgres(self, overall: Deadline) -> str:
        cfg = self.config
        port = cfg.ports.postgres
        data = cfg.postgres_dir or cfg.data_dir / "postgres"
        if detached_pgdata.is_detached(data):
            detached_pgdata.adopt(data, cfg.data_dir)
        deadline = self._phase(cfg.timeouts.infra, overall)
        owner = postgres.run_as()
        postgres.remove_stale_pid_file(data)
        if postgres.prepare(
            data,
            owner=owner,
            log_path=cfg.logs_dir / "initdb.log",
            deadline=deadline,
            abort=self._abort,
        ):
            log.info("initdb done in %.1f s", deadline.seconds - deadline.remaining())
        proc = postgres.server(data, port=port, owner=owner, log_path=cfg.logs_dir / "postgres.log")
        self._launch(proc, lambda: postgres.is_ready(data, port), [port])
        self._await_ready([proc], deadline)
        postgres.bootstrap(data, port)
        return postgres.database_url(port)

    def _start_valkey(self, overall: Deadline) -> str:
        cfg = self.config
        port = cfg.ports.valkey
        proc = valkey.server(
            cfg.data_dir / "valkey", port=port, log_path=cfg.logs_dir / "valkey.log"
        )
        self._launch(proc, lambda: valkey.is_ready(port), [port])
        self._await_ready([proc], self._phase(cfg.timeouts.infra, overall))
        return valkey.redis_url(port)

    def _start_nats(self, overall: Deadline) -> str:
        cfg = self.config
        port, monitor = cfg.ports.nats, cfg.ports.nats_monitor
        proc = nats.server(
            config_path=cfg.data_dir / "config" / "nats.conf",
            store_dir=cfg.data_dir / "nats",
            port=port,
            monitor_port=monitor,
            log_path=cfg.logs_dir / "nats.log",
        )
        self._launch(proc, lambda: nats.is_ready(monitor), [port, monitor])
        self._await_ready([proc], self._phase(cfg.timeouts.infra, overall))
        return nats.nats_url(port)

    def _migrate(self, database_url: str, deadline: Deadline) -> None:
        cfg = self.config
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
        code = proc.wait_exit(deadline, self._abort)
        log.info("migrations finished in %.1f s", deadline.seconds - deadline.remaining())
        if code != 0:
            last = proc.log_tail()
            hint = ""
            if "No module named" in last:
                hint = "\n(the migration command is missing; pass migrate_command=None to skip it)"
            raise StackError(f"migrations failed (exit {code}); last log lines:\n{last}{hint}")

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
                self._launch(proc, probe.serving, [ports.grpc, ports.metrics])
                started.append(proc)
        # All replicas start at once and are awaited together: Python start-up dominates.
        self._await_ready(started, deadline)

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
        proc = envoy.server(
            config_path=cfg.data_dir / "config" / "envoy.yaml",
            config_yaml=config_yaml,
            log_path=cfg.logs_dir / "envoy.log",
        )
        admin = cfg.ports.envoy_admin
        self._launch(proc, lambda: envoy.is_ready(admin), [cfg.ports.edge, admin])
        self._await_ready([proc], deadline)

    # ----- helpers ----------------------------------------------------------------------

    def _phase(self, seconds: float, overall: Deadline) -> Deadline:
        if overall.expired():
            raise StackError(f"the stack did not start within {overall.seconds:.0f} s")
        return Deadline(min(seconds, overall.remaining()))

    def _launch(self, proc: ManagedProcess, ready: Ready, ports: list[int]) -> None:
        with self._mutex:
            if self._abort.is_set():
                raise StackAborted("start interrupted by a stop request")
            self._procs[proc.key] = proc
            self._ready[proc.key] = ready
            self._ports[proc.key] = ports
            proc.start()
            self._write_pids()

    def _await_ready(self, procs: Iterable[ManagedProcess], deadline: Deadline) -> None:
        pending = {p.key: p for p in procs}

        def all_ready() -> bool:
            for key, proc in list(pending.items()):
                if not proc.running():
                    raise StackError(
                        f"{key} exited with code {proc.exit_code()} while starting; "
                        f"last log lines ({proc.log_path}):\n{proc.log_tail()}"
                    )
                if self._ready[key]():
                    del pending[key]
            return not pending

        keys, began = ", ".join(pending), time.monotonic()
        if not wait_until(all_ready, deadline=deadline, abort=self._abort):
            raise StackError(
                "\n\n".join(
                    f"{key} did not become ready within {deadline.seconds:.0f} s; "
                    f"last log lines ({proc.log_path}):\n{proc.log_tail()}"
                    for key, proc in pending.items()
                )
            )
        log.info("%s ready in %.1f s", keys, time.monotonic() - began)

    def _check_ports(self) -> None:
        """Fail early, naming every busy port, rather than with one server's bind error."""
        cfg, plan = self.config, self.config.ports
        wanted: list[tuple[str, int]] = []
        if not cfg.database_url:
            wanted.append(("postgres", plan.postgres))
        if not cfg.redis_url:
            wanted.append(("valkey", plan.valkey))
        if not cfg.nats_url:
            wanted += [("nats", plan.nats), ("nats monitoring", plan.nats_monitor)]
        for name, count in cfg.replicas.items():
            for index, ports in enumerate(plan.services[name][:count]):
                wanted += [(f"{name}-{index} grpc", ports.grpc)]
                wanted += [(f"{name}-{index} metrics", ports.metrics)]
        if cfg.with_envoy:
            wanted += [("envoy edge", plan.edge), ("envoy admin", plan.envoy_admin)]
        busy = [f"{port} ({what})" for what, port in wanted if port_in_use(port)]
        if busy:
            raise StackError(
                f"port(s) already in use on {LOOPBACK}: {', '.join(busy)}; another stack or "
                "server holds them (`make stop`, or choose other ports)"
            )

    def _kill_leftovers(self) -> None:
        """Kill children a previous supervisor of this data dir left behind when it died
        without cleaning up (SIGKILL, power loss): they would hold its ports and Postgres's
        lock file. We hold the data dir's lock, so none of them belongs to a live stack."""
        _, children = read_pids(self.config.data_dir)
        leftovers = [(c.pid, c.create_time) for c in children if alive(c.pid, c.create_time)]
        for pid, _ in leftovers:
            kill_group(pid)
        if still := wait_gone(leftovers, Deadline(10.0)):
            raise StackError(f"processes of an earlier run survive SIGKILL: {still}")

    def _write_pids(self) -> None:
        me = psutil.Process()
        supervisor = ProcessRecord("supervisor", me.pid, me.create_time())
        children = [
            ProcessRecord(key, p.pid, p.create_time, self._ports.get(key, []), str(p.log_path))
            for key, p in self._procs.items()
            if p.pid is not None
        ]
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        write_pids(self.config.data_dir, supervisor, children)

    def _make_endpoints(self, shared: SharedEnv) -> Endpoints:
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
        )


def _first_replica(cfg: StackConfig, name: str) -> str:
    ports = cfg.ports.services.get(name, ())
    return f"{LOOPBACK}:{ports[0].grpc}" if cfg.replicas.get(name) and ports else ""


def _stop_together(procs: list[ManagedProcess], grace: float) -> None:
    """Signal all, then wait for all under one deadline: N replicas stop in one grace."""
    for proc in procs:
        proc.send_stop()
    deadline = Deadline(grace)
    for proc in procs:
        proc.finish_stop(deadline)
