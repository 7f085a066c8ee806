"""The files a running stack keeps in its data dir, read by `stop`, `status`, bench and tests.

- `supervisor.lock`: held (flock) by the process that owns the stack for its whole life. The
  kernel drops it when that process dies, however it dies, so it never goes stale.
- `pids.json`: every child with pid, start time and ports, so `stop` can find leftovers even
  after the supervisor was SIGKILLed; the start time tells our process from a recycled pid.
- `endpoints.json`: written once everything is SERVING; its presence means "ready".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack.processes import StackError

PIDS_FILE = "pids.json"
ENDPOINTS_FILE = "endpoints.json"
LOCK_FILE = "supervisor.lock"


@dataclass(frozen=True)
class Endpoints:
    """Where everything listens; the same fields as endpoints.json."""

    edge: str | None
    envoy_admin: str | None
    services: dict[str, list[str]]
    metrics: dict[str, list[str]]
    database_url: str
    cache_url: str
    state_url: str
    nats_url: str
    admin_email: str
    admin_password: str
    jwt_public_key_file: str
    jwt_private_key_file: str
    data_dir: str
    # Object storage as services see it (empty when none is configured).
    s3_url: str = ""
    s3_public_url: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = ""
    # With --observe: Jaeger's UI and query API, and the OTLP endpoint spans go to.
    jaeger_ui: str = ""
    otlp_endpoint: str = ""
    # With --observe: Prometheus's UI and query API (scraping every process, rules loaded).
    prometheus: str = ""

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        return cls(**json.loads(path.read_text()))


def tool_database_url(from_env: str | None, endpoints: Path) -> str:
    """The database a command-line tool (a seed) writes to: DATABASE_URL when set, else the
    running stack's, so `make start` then the tool needs no environment."""
    if from_env:
        return from_env
    if not endpoints.is_file():
        raise StackError(f"set DATABASE_URL or start a stack first ({endpoints} not found)")
    return Endpoints.load(endpoints).database_url


@dataclass(frozen=True)
class ProcessRecord:
    key: str
    pid: int
    create_time: float
    ports: list[int] = field(default_factory=list)
    log: str = ""


def write_json(path: Path, data: Any) -> None:
    """Write-then-rename, so a reader polling the file never sees half of it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    # Owner-only: endpoints.json carries the admin password.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_pids(data_dir: Path, supervisor: ProcessRecord, children: list[ProcessRecord]) -> None:
    write_json(
        data_dir / PIDS_FILE,
        {"supervisor": asdict(supervisor), "processes": [asdict(c) for c in children]},
    )


def read_pids(data_dir: Path) -> tuple[ProcessRecord | None, list[ProcessRecord]]:
    try:
        data = json.loads((data_dir / PIDS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None, []
    supervisor = ProcessRecord(**data["supervisor"]) if data.get("supervisor") else None
    return supervisor, [ProcessRecord(**p) for p in data.get("processes", [])]


class SupervisorLock:
    """Exclusive ownership of a data dir: one stack per data dir at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC keeps children from inheriting the lock and holding it after we die.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.path.read_text().strip() or "unknown"
            raise StackError(
                f"a stack is already running from {self.path.parent} (supervisor pid {holder}); "
                "stop it first (`make stop` or `python -m devstack stop`)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def held(data_dir: Path) -> bool:
        """True while some process holds the lock of `data_dir`."""
        path = data_dir / LOCK_FILE
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
