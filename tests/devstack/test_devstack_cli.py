"""`python -m devstack start|status|stop` end to end: a detached supervisor that returns once
everything is SERVING, refuses a second start, and leaves nothing behind on stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from devstack.config import ROOT
from devstack.processes import Deadline, alive, group_members, wait_gone
from devstack.runstate import ENDPOINTS_FILE, Endpoints, read_pids

FAKE_SERVICE = Path(__file__).with_name("fake_service.py")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir outside pytest's temp root: as root, Postgres runs as another user who must
    traverse every parent, and pytest resets its root to 0700 whenever a session starts
    (StackConfig.for_tests handles that for the Python API; the CLI has no such switch)."""
    path = Path(tempfile.mkdtemp(prefix="devstack-cli-"))
    yield path / "stack"
    shutil.rmtree(path, ignore_errors=True)


def devstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )


# The fewest Python processes that still show what each test checks: they dominate start-up.
ONE_SERVICE = "user=1,course=0,quiz=0,live=0,analytics=0,quiz-worker=0"


def start_args(data_dir: Path, replicas: str = ONE_SERVICE) -> list[str]:
    return [
        "--data-dir",
        str(data_dir),
        "--free-ports",
        "--replicas",
        replicas,
        "--service-command",
        f"{sys.executable} {FAKE_SERVICE} {{name}}",
        "--skip-migrations",
        "--no-envoy",
        "--timeout",
        "90",
    ]


def live_pids(records: Iterable[tuple[int, float]]) -> list[int]:
    found = [pid for pid, created in records if alive(pid, created)]
    return found + [p.pid for pid, _ in records for p in group_members(pid)]


def test_cli_start_status_stop(data_dir: Path) -> None:
    try:
        replicas = "user=1,course=0,quiz=0,live=2,analytics=0,quiz-worker=0"
        started = devstack("start", *start_args(data_dir, replicas))
        assert started.returncode == 0, started.stdout + started.stderr
        assert "elearn stack is up" in started.stdout
        endpoints = Endpoints.load(data_dir / ENDPOINTS_FILE)
        assert len(endpoints.services["live"]) == 2
        assert endpoints.cache_url != endpoints.state_url
        table = started.stdout.splitlines()
        for role, url in (("cache", endpoints.cache_url), ("state", endpoints.state_url)):
            assert any(f"valkey ({role})" in line and line.endswith(url) for line in table)

        supervisor, children = read_pids(data_dir)
        assert supervisor is not None
        keys = {c.key for c in children}
        assert keys == {
            "postgres-0",
            "valkey-cache-0",
            "valkey-state-0",
            "nats-0",
            "seaweedfs-0",
            "user-0",
            "live-0",
            "live-1",
        }

        status = devstack("status", "--data-dir", str(data_dir))
        assert status.returncode == 0
        assert "ready" in status.stdout and "live-1" in status.stdout

        again = devstack("start", *start_args(data_dir, replicas))
        assert again.returncode == 1
        assert "already running" in again.stdout + again.stderr
    finally:
        stopped = devstack("stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    records = [(supervisor.pid, supervisor.create_time)] + [
        (c.pid, c.create_time) for c in children
    ]
    assert live_pids(records) == []
    assert not (data_dir / ENDPOINTS_FILE).exists()
    assert "no stack running" in devstack("status", "--data-dir", str(data_dir)).stdout


def test_cli_start_cleans_up_after_a_killed_supervisor(data_dir: Path) -> None:
    generations = []
    try:
        for _ in range(2):
            started = devstack("start", *start_args(data_dir))
            assert started.returncode == 0, started.stdout + started.stderr
            supervisor, children = read_pids(data_dir)
            assert supervisor is not None
            generations += [(c.pid, c.create_time) for c in children]
            os.kill(supervisor.pid, signal.SIGKILL)
            assert wait_gone([(supervisor.pid, supervisor.create_time)], Deadline(10)) == []
            status = devstack("status", "--data-dir", str(data_dir)).stdout
            assert "leftover" in status
    finally:
        stopped = devstack("stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0
    assert "killing leftover postgres-0" in stopped.stdout
    assert live_pids(generations) == []


def test_cli_stop_with_nothing_running_exits_0(tmp_path: Path) -> None:
    result = devstack("stop", "--data-dir", str(tmp_path))
    assert result.returncode == 0
    assert "nothing was running" in result.stdout


def test_cli_start_failure_shows_the_log_and_exits_1(data_dir: Path) -> None:
    args = start_args(data_dir)
    index = args.index("--service-command")
    args[index + 1] += " --exit-at-start"
    result = devstack("start", *args)
    assert result.returncode == 1
    assert "exited with code 3" in result.stderr
    assert "failing on purpose" in result.stderr
    supervisor, _ = read_pids(data_dir)
    assert supervisor is not None and not alive(supervisor.pid, supervisor.create_time)
