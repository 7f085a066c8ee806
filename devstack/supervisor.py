"""The children of one stack: launch them, wait until they are ready, record them in pids.json,
and stop them in dependency order. It knows processes and readiness checks, not what they are
(devstack.infra and devstack.stack decide that)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

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
from devstack.runstate import ProcessRecord, read_pids, write_pids
from mesh.platform import PROCESS_NAMES

log = logging.getLogger("devstack")

Ready = Callable[[], bool]

# Each part stops only after everything that uses it; services (all of them, together) first.
INFRA_STOP_ORDER = ("envoy", "seaweedfs", "nats", "valkey-cache", "valkey-state", "postgres")


class Supervisor:
    def __init__(self, data_dir: Path, abort: Abort) -> None:
        self.data_dir = data_dir
        self.abort = abort
        self.mutex = threading.RLock()
        self._procs: dict[str, ManagedProcess] = {}  # key -> process, in start order
        self._ready: dict[str, Ready] = {}
        self._ports: dict[str, list[int]] = {}

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        with self.mutex:
            return dict(self._procs)

    def process(self, name: str, index: int = 0) -> ManagedProcess:
        key = f"{name}-{index}"
        with self.mutex:
            if key not in self._procs:
                known = ", ".join(self._procs) or "none"
                raise StackError(f"no process {key} in this stack (running: {known})")
            return self._procs[key]

    def exited(self) -> list[ManagedProcess]:
        with self.mutex:
            return [p for p in self._procs.values() if not p.running()]

    def launch(self, proc: ManagedProcess, ready: Ready, ports: list[int]) -> None:
        with self.mutex:
            if self.abort.is_set():
                raise StackAborted("start interrupted by a stop request")
            self._procs[proc.key] = proc
            self._ready[proc.key] = ready
            self._ports[proc.key] = ports
            proc.start()
            self.write_pids()

    def relaunch(self, proc: ManagedProcess) -> None:
        with self.mutex:
            proc.start()
            self.write_pids()

    def await_ready(self, procs: Iterable[ManagedProcess], deadline: Deadline) -> None:
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
        if not wait_until(all_ready, deadline=deadline, abort=self.abort):
            raise StackError(
                "\n\n".join(
                    f"{key} did not become ready within {deadline.seconds:.0f} s; "
                    f"last log lines ({proc.log_path}):\n{proc.log_tail()}"
                    for key, proc in pending.items()
                )
            )
        log.info("%s ready in %.1f s", keys, time.monotonic() - began)

    def stop_all(self, service_grace: float) -> None:
        """Services together under one grace, then infrastructure in INFRA_STOP_ORDER, then
        anything else; whatever an error skipped is killed. Forgets every child."""
        with self.mutex:
            procs = list(self._procs.values())
            services = [p for p in procs if p.name in PROCESS_NAMES]
            infra = [p for name in INFRA_STOP_ORDER for p in procs if p.name == name]
            others = [p for p in procs if p not in services and p not in infra]
            try:
                _stop_together(services, service_grace)
                for proc in infra + others:
                    proc.stop()
            finally:
                # A no-op for processes already stopped.
                for proc in procs:
                    proc.kill()
                self._procs.clear()
                self._ready.clear()
                self._ports.clear()
                self.write_pids()

    def kill_leftovers(self) -> None:
        """Kill children a previous supervisor of this data dir left behind when it died
        without cleaning up (SIGKILL, power loss): they would hold its ports and Postgres's
        lock file. The caller holds the data dir's lock, so none belongs to a live stack."""
        _, children = read_pids(self.data_dir)
        leftovers = [(c.pid, c.create_time) for c in children if alive(c.pid, c.create_time)]
        for pid, _ in leftovers:
            kill_group(pid)
        if still := wait_gone(leftovers, Deadline(10.0)):
            raise StackError(f"processes of an earlier run survive SIGKILL: {still}")

    def write_pids(self) -> None:
        me = psutil.Process()
        supervisor = ProcessRecord("supervisor", me.pid, me.create_time())
        children = [
            ProcessRecord(key, p.pid, p.create_time, self._ports.get(key, []), str(p.log_path))
            for key, p in self._procs.items()
            if p.pid is not None
        ]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_pids(self.data_dir, supervisor, children)


def _stop_together(procs: list[ManagedProcess], grace: float) -> None:
    """Signal all, then wait for all under one deadline: N replicas stop in one grace."""
    for proc in procs:
        proc.send_stop()
    deadline = Deadline(grace)
    for proc in procs:
        proc.finish_stop(deadline)
