"""The launcher against real Postgres, Valkey, NATS and Envoy from the wheels, with stand-in
services. One stack serves the whole module (started once: ~3 s cold)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import nats
import psycopg
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.runstate import ENDPOINTS_FILE, Endpoints
from devstack.seaweedfs import S3Env
from devstack.stack import Stack, StackConfig
from mesh.db import libpq_url

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory,
    fake_command: Callable[..., Callable[[str], list[str]]],
    stub_edge_config: Callable[..., str],
) -> Iterator[Stack]:
    config = StackConfig.for_tests(
        tmp_path_factory.mktemp("devstack"),
        replicas={"user": 2, "course": 0, "quiz": 0, "analytics": 0, "quiz-worker": 0},
        service_command=fake_command(),
        migrate_command=None,
        render_envoy=stub_edge_config,
    )
    stack = Stack(config)
    stack.start(timeout=120)
    yield stack
    stack.stop()


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)


def reported_env(log: Path) -> dict[str, str | None]:
    """The environment the stand-in service printed on its latest start."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("FAKE_ENV ")]
    return dict(json.loads(lines[-1].removeprefix("FAKE_ENV ")))


def test_postgres_answers_as_elearn_with_dev_settings(running: Stack) -> None:
    with psycopg.connect(libpq_url(running.endpoints.database_url)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "elearn",
            "elearn",
        )
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'elearn'"
        ).fetchone()
        assert owner == ("elearn",)
        assert conn.execute("SHOW max_connections").fetchone() == ("200",)
        assert conn.execute("SHOW shared_buffers").fetchone() == ("128MB",)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("18")  # type: ignore[index]


def test_postgres_has_the_extensions_services_rely_on(running: Stack) -> None:
    with psycopg.connect(libpq_url(running.endpoints.database_url)) as conn:
        installed = dict(
            conn.execute(
                "SELECT e.extname, n.nspname FROM pg_extension e "
                "JOIN pg_namespace n ON n.oid = e.extnamespace"
            ).fetchall()
        )
        assert {
            name: installed.get(name) for name in ("pg_stat_statements", "pg_trgm", "unaccent")
        } == dict.fromkeys(("pg_stat_statements", "pg_trgm", "unaccent"), "public")
        # Each works for the unprivileged app role, not merely exists.
        assert conn.execute("SELECT unaccent('Élève')").fetchone() == ("Eleve",)
        assert conn.execute("SELECT similarity('postgres', 'postgre') > 0.5").fetchone() == (True,)
        # The view fails to read unless the library was preloaded at server start, and its
        # counters must move: each statement of ours is counted.
        calls = "SELECT sum(calls) FROM pg_stat_statements WHERE userid = current_user::regrole"
        before = conn.execute(calls).fetchone()
        after = conn.execute(calls).fetchone()
        assert before is not None and after is not None and after[0] > before[0]


def valkey_config(url: str, *names: str) -> dict[str, str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert client.ping() is True
        return {name: client.config_get(name)[name] for name in names}
    finally:
        client.close()


SETTINGS = ("maxmemory-policy", "maxmemory", "appendonly", "appendfsync", "save", "bind", "dir")


def test_cache_valkey_evicts_lru_and_keeps_nothing_on_disk(running: Stack) -> None:
    cache = valkey_config(running.endpoints.cache_url, *SETTINGS)
    assert cache["maxmemory-policy"] == "allkeys-lru"
    assert cache["maxmemory"] == str(256 * 1024 * 1024)
    assert cache["appendonly"] == "no"
    assert cache["save"] == ""
    assert cache["bind"] == "127.0.0.1"
    assert cache["dir"] == str(Path(running.endpoints.data_dir) / "valkey-cache")


def test_state_valkey_never_evicts_and_appends_every_write(running: Stack) -> None:
    state = valkey_config(running.endpoints.state_url, *SETTINGS)
    assert state["maxmemory-policy"] == "noeviction"
    assert state["appendonly"] == "yes"
    assert state["appendfsync"] == "everysec"
    assert state["save"] == ""
    assert state["bind"] == "127.0.0.1"
    assert state["dir"] == str(Path(running.endpoints.data_dir) / "valkey-state")


def test_cache_and_state_are_separate_server_processes(running: Stack) -> None:
    cache, state = running.process("valkey-cache"), running.process("valkey-state")
    assert cache.pid != state.pid and cache.running() and state.running()
    assert running.endpoints.cache_url != running.endpoints.state_url
    client = redis.Redis.from_url(running.endpoints.state_url)
    try:
        client.set("devstack:role-probe", b"state")
    finally:
        client.close()
    client = redis.Redis.from_url(running.endpoints.cache_url)
    try:
        assert client.get("devstack:role-probe") is None
    finally:
        client.close()


async def test_nats_has_jetstream_syncing_always_and_acks_a_stored_message(running: Stack) -> None:
    nc = await nats.connect(running.endpoints.nats_url, connect_timeout=5)
    try:
        js = nc.jetstream()
        await js.account_info()  # raises unless JetStream is enabled for the account
        await js.add_stream(name="DEVSTACK_TEST", subjects=["devstack.test"])
        ack = await js.publish("devstack.test", b"hello", headers={"Nats-Msg-Id": "one"})
        assert ack.stream == "DEVSTACK_TEST"
        message = await js.get_msg("DEVSTACK_TEST", seq=ack.seq)
        assert message.data == b"hello"
    finally:
        await nc.close()
    monitor = running.config.ports.nats_monitor
    async with httpx.AsyncClient(timeout=5) as client:
        varz = await client.get(f"http://127.0.0.1:{monitor}/varz")
    jetstream = varz.json()["jetstream"]["config"]
    assert jetstream["sync_always"] is True
    assert jetstream["store_dir"].startswith(running.endpoints.data_dir)


def test_every_replica_serves_with_its_own_environment(running: Stack) -> None:
    endpoints = running.endpoints
    assert set(endpoints.services) == {"user", "live"}
    assert len(endpoints.services["user"]) == 2
    for name, addresses in endpoints.services.items():
        for index, address in enumerate(addresses):
            assert health(address) == SERVING
            env = reported_env(running.process(name, index).log_path)
            assert env["ELEARN_INSTANCE"] == f"{name}-{index}"
            assert env["GRPC_PORT"] == address.rsplit(":", 1)[1]
            assert env["METRICS_PORT"] == endpoints.metrics[name][index].rsplit(":", 1)[1]
            assert env["DATABASE_URL"] == endpoints.database_url
            assert env["CACHE_URL"] == endpoints.cache_url
            assert env["STATE_URL"] == endpoints.state_url
            assert env["NATS_URL"] == endpoints.nats_url
            assert env["ELEARN_JWT_PUBLIC_KEY_FILE"] == endpoints.jwt_public_key_file
            assert env["ELEARN_LOG_LEVEL"] == "INFO"
            if name == "user":
                assert env["USER_JWT_PRIVATE_KEY_FILE"] == endpoints.jwt_private_key_file
                assert env["USER_ADMIN_EMAIL"] == "admin@elearn.local"
                assert env["USER_ADMIN_PASSWORD"] == endpoints.admin_password
            else:
                assert env["USER_JWT_PRIVATE_KEY_FILE"] is None


def test_endpoints_json_matches_what_start_returned(running: Stack) -> None:
    path = Path(running.endpoints.data_dir) / ENDPOINTS_FILE
    assert Endpoints.load(path) == running.endpoints
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_jwt_keys_are_an_owner_only_ed25519_pair(running: Stack) -> None:
    private_path = Path(running.endpoints.jwt_private_key_file)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    public = serialization.load_pem_public_key(
        Path(running.endpoints.jwt_public_key_file).read_bytes()
    )
    assert isinstance(private, Ed25519PrivateKey)
    assert isinstance(public, Ed25519PublicKey)
    public.verify(private.sign(b"token"), b"token")


def test_edge_forwards_grpc_to_the_services(running: Stack) -> None:
    assert running.endpoints.edge is not None
    assert health(running.endpoints.edge) == SERVING


def test_a_killed_replica_restarts_on_its_port(running: Stack) -> None:
    proc = running.process("user", 1)
    old_pid = proc.pid
    running.kill("user", 1)
    assert not proc.running()
    assert proc.exit_code() == -9
    running.restart("user", 1)
    assert proc.running() and proc.pid != old_pid
    assert health(running.endpoints.services["user"][1]) == SERVING


def test_a_killed_postgres_restarts_with_its_data(running: Stack) -> None:
    url = libpq_url(running.endpoints.database_url)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survivor (id int)")
        conn.execute("INSERT INTO survivor VALUES (42)")
    running.kill("postgres")
    running.restart("postgres")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id FROM survivor").fetchall() == [(42,)]


def external_s3(endpoints: Endpoints) -> S3Env:
    return S3Env(
        endpoints.s3_url, endpoints.s3_access_key, endpoints.s3_secret_key, endpoints.s3_bucket
    )


def test_external_servers_are_used_instead_of_starting_ours(
    running: Stack, tmp_path: Path, fake_command: Callable[..., Callable[[str], list[str]]]
) -> None:
    shared = running.endpoints
    config = StackConfig.for_tests(
        tmp_path,
        replicas={"course": 0, "quiz": 0, "live": 0, "analytics": 0, "quiz-worker": 0},
        service_command=fake_command(),
        migrate_command=None,
        with_envoy=False,
        database_url=shared.database_url,
        redis_url=shared.state_url,
        nats_url=shared.nats_url,
        s3=external_s3(shared),
    )
    with Stack(config) as second:
        assert list(second.processes) == ["user-0"]
        assert second.endpoints.database_url == shared.database_url
        env = reported_env(second.process("user").log_path)
        assert env["NATS_URL"] == shared.nats_url
        # REDIS_URL-style: one external server for both roles.
        assert env["CACHE_URL"] == env["STATE_URL"] == shared.state_url


def test_an_external_state_server_leaves_the_cache_to_us(
    running: Stack, tmp_path: Path, fake_command: Callable[..., Callable[[str], list[str]]]
) -> None:
    shared = running.endpoints
    config = StackConfig.for_tests(
        tmp_path,
        replicas={"course": 0, "quiz": 0, "live": 0, "analytics": 0},
        service_command=fake_command(),
        migrate_command=None,
        with_envoy=False,
        database_url=shared.database_url,
        state_url=shared.state_url,
        nats_url=shared.nats_url,
        s3=external_s3(shared),
    )
    with Stack(config) as second:
        assert sorted(second.processes) == ["user-0", "valkey-cache-0"]
        env = reported_env(second.process("user").log_path)
        assert env["STATE_URL"] == shared.state_url
        assert env["CACHE_URL"] == second.endpoints.cache_url != shared.cache_url
