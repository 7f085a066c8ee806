"""Stopping leaves nothing behind, after a good start and after a failed one; failures name
the process and show its log. The tests share one data dir, so only the first runs initdb."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from devstack.processes import ManagedProcess, StackError
from devstack.runstate import ENDPOINTS_FILE, SupervisorLock
from devstack.stack import Stack, StackConfig, Timeouts

FakeCommand = Callable[..., Callable[[str], list[str]]]
StillRunning = Callable[[Iterable[ManagedProcess]], list[str]]
# Only what the tests need: two services keep start-up short on a 2-core box.
REPLICAS = {"user": 1, "course": 0, "quiz": 1, "live": 0, "analytics": 0}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lifecycle")


def test_stop_leaves_no_process_behind(
    data_root: Path,
    fake_command: FakeCommand,
    stub_edge_config: Callable[..., str],
    spawned: list[ManagedProcess],
    still_running: StillRunning,
) -> None:
    config = StackConfig.for_tests(
        data_root,
        replicas=REPLICAS,
        service_command=fake_command(),
        migrate_command=None,
        render_envoy=stub_edge_config,
    )
    stack = Stack(config)
    stack.start(timeout=120)
    assert {p.name for p in spawned} >= {
        "postgres",
        "valkey-cache",
        "valkey-state",
        "nats",
        "envoy",
        "user",
        "quiz",
    }
    assert still_running(spawned)
    stack.stop()
    assert still_running(spawned) == []
    assert not SupervisorLock.held(config.data_dir)
    assert not (config.data_dir / ENDPOINTS_FILE).exists()
    for proc in spawned:
        if proc.name in ("user", "quiz"):
            assert "stopped gracefully" in proc.log_tail()


def test_failed_start_names_the_process_and_leaves_nothing(
    data_root: Path,
    fake_command: FakeCommand,
    spawned: list[ManagedProcess],
    still_running: StillRunning,
) -> None:
    config = StackConfig.for_tests(
        data_root,
        replicas=REPLICAS,
        service_command=fake_command(exit_at_start=["quiz"]),
        migrate_command=None,
        with_envoy=False,
    )
    stack = Stack(config)
    with pytest.raises(StackError, match="quiz-0 exited with code 3") as failure:
        stack.start(timeout=120)
    assert "quiz: failing on purpose" in str(failure.value)
    assert still_running(spawned) == []
    assert not SupervisorLock.held(config.data_dir)
    stack.stop()  # a no-op after a failed start


def test_replica_that_never_serves_times_out_with_its_log(
    data_root: Path,
    fake_command: FakeCommand,
    spawned: list[ManagedProcess],
    still_running: StillRunning,
) -> None:
    config = StackConfig.for_tests(
        data_root,
        replicas=REPLICAS,
        service_command=fake_command(never_ready=["user"]),
        migrate_command=None,
        with_envoy=False,
        timeouts=Timeouts(services=3.0),
    )
    with pytest.raises(StackError, match=r"user-0 did not become ready within 3 s") as failure:
        Stack(config).start(timeout=120)
    assert "FAKE_ENV" in str(failure.value)
    assert "quiz-0" not in str(failure.value)
    assert still_running(spawned) == []


def test_failing_migrations_stop_the_start_with_their_output(
    data_root: Path,
    fake_command: FakeCommand,
    spawned: list[ManagedProcess],
    still_running: StillRunning,
) -> None:
    config = StackConfig.for_tests(
        data_root,
        replicas=REPLICAS,
        service_command=fake_command(),
        migrate_command=["python3", "-c", "import sys; sys.exit('no such revision: abc')"],
        with_envoy=False,
    )
    with pytest.raises(StackError, match=r"(?s)migrations failed \(exit 1\).*no such revision"):
        Stack(config).start(timeout=120)
    assert "user" not in {p.name for p in spawned}
    assert still_running(spawned) == []
