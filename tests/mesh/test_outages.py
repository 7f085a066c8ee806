"""Outages of the real Postgres and Valkey reach callers as UNAVAILABLE, never INTERNAL, and
svc_user recovers by itself once the server is back (issue 10, item 8).

The session `stack` is shared by every test, so its servers are never stopped: this module
starts a private stack (svc_user only, no Envoy) and stops and restarts its servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import grpc
import nats
import psutil
import psycopg
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2

from devstack.processes import ManagedProcess
from devstack.stack import Stack, StackConfig
from elearn.events.v1 import user_events_pb2
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from mesh.db import libpq_url
from tests.conftest import Account, make_account

ONLY_USER = {"user": 1, "course": 0, "quiz": 0, "live": 0, "analytics": 0}
RECOVERY_SECONDS = 30.0


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig.for_tests(
        tmp_path_factory.mktemp("outages"), replicas=ONLY_USER, with_envoy=False
    )
    stack = Stack(config)
    stack.start(timeout=180)
    try:
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def users(private: Stack) -> AsyncIterator[UserServiceStub]:
    async with grpc.aio.insecure_channel(private.endpoints.services["user"][0]) as channel:
        yield UserServiceStub(channel)


def serving(stack: Stack, url: str) -> list[ManagedProcess]:
    """The stack's server processes listening on the URL's port (the launcher may run one
    Valkey for both roles or one per role)."""
    port = urlparse(url).port
    found = [proc for proc in stack.processes.values() if port in listening_ports(proc)]
    assert found, f"no process of the stack serves {url}"
    return found


def listening_ports(proc: ManagedProcess) -> set[int]:
    if proc.pid is None or not proc.running():
        return set()
    try:
        connections = psutil.Process(proc.pid).net_connections(kind="inet")
    except psutil.Error:
        return set()
    return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}


async def stop(procs: list[ManagedProcess]) -> None:
    for proc in procs:
        await asyncio.to_thread(proc.stop)
        assert not proc.running()


async def restart(stack: Stack, procs: list[ManagedProcess]) -> None:
    for proc in procs:
        await asyncio.to_thread(stack.restart, proc.name, proc.index)


async def status_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def recovers(call: Callable[[], Awaitable[Any]]) -> list[grpc.StatusCode]:
    """Retry `call` until it succeeds (bounded); the codes seen on the way, OK last."""
    seen: list[grpc.StatusCode] = []
    deadline = time.monotonic() + RECOVERY_SECONDS
    while time.monotonic() < deadline:
        seen.append(await status_of(call()))
        if seen[-1] is grpc.StatusCode.OK:
            return seen
        await asyncio.sleep(0.2)  # a client's retry back-off, bounded by the deadline
    return seen


def login(users: UserServiceStub, account: Account) -> Awaitable[Any]:
    request = pb.LoginRequest(email=account.user.email, password=account.password)
    return users.Login(request, timeout=10)


async def test_valkey_outage_is_unavailable_and_writes_still_succeed(
    private: Stack, users: UserServiceStub
) -> None:
    account = await make_account(users, "valkey-outage")
    service_pid = private.process("user").pid
    valkeys = {
        p.key: p
        for url in (private.endpoints.state_url, private.endpoints.cache_url)
        for p in serving(private, url)
    }
    await stop(list(valkeys.values()))
    try:
        # Sign-in throttles live in the state Valkey: no answer there is UNAVAILABLE.
        assert await status_of(login(users, account)) is grpc.StatusCode.UNAVAILABLE
        # A committed rename must not fail because the cache could not be invalidated.
        rename = pb.UpdateMeRequest(
            user=pb.User(display_name="Renamed While Down"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
        renamed = await users.UpdateMe(rename, metadata=account.auth, timeout=10)
        assert renamed.user.display_name == "Renamed While Down"
        me = await users.GetMe(pb.GetMeRequest(), metadata=account.auth, timeout=10)
        assert me.user.display_name == "Renamed While Down", "reads fall back to Postgres"
    finally:
        await restart(private, list(valkeys.values()))
    seen = await recovers(lambda: login(users, account))
    assert seen[-1] is grpc.StatusCode.OK, f"no recovery within {RECOVERY_SECONDS} s: {seen}"
    assert set(seen[:-1]) <= {grpc.StatusCode.UNAVAILABLE}, seen
    assert private.process("user").pid == service_pid, "recovered without a service restart"


async def test_postgres_outage_is_unavailable_and_the_service_reconnects(
    private: Stack, users: UserServiceStub
) -> None:
    account = await make_account(users, "postgres-outage")
    service_pid = private.process("user").pid
    postgres = serving(private, private.endpoints.database_url)
    await stop(postgres)
    try:
        # GetMe misses the cache (never read before) and must load from Postgres.
        get_me = users.GetMe(pb.GetMeRequest(), metadata=account.auth, timeout=10)
        assert await status_of(get_me) is grpc.StatusCode.UNAVAILABLE
        assert await status_of(login(users, account)) is grpc.StatusCode.UNAVAILABLE
    finally:
        await restart(private, postgres)
    for call in (
        lambda: users.GetMe(pb.GetMeRequest(), metadata=account.auth, timeout=10),
        lambda: login(users, account),
    ):
        seen = await recovers(call)
        assert seen[-1] is grpc.StatusCode.OK, f"no recovery within {RECOVERY_SECONDS} s: {seen}"
        assert set(seen[:-1]) <= {grpc.StatusCode.UNAVAILABLE}, seen
    assert private.process("user").pid == service_pid, "recovered without a service restart"


async def test_pooled_connections_that_died_in_a_restart_are_replaced(
    private: Stack, users: UserServiceStub
) -> None:
    """No call while the server is down: the pool still holds connections to the old server
    process. The first statement on one of them fails; SQLAlchemy then drops the whole pool,
    so a caller sees at most one UNAVAILABLE, not one per pooled connection."""
    account = await make_account(users, "postgres-restart")
    postgres = serving(private, private.endpoints.database_url)
    await stop(postgres)
    await restart(private, postgres)
    seen = await recovers(lambda: users.GetMe(pb.GetMeRequest(), metadata=account.auth))
    assert seen[-1] is grpc.StatusCode.OK, seen
    assert seen[:-1] in ([], [grpc.StatusCode.UNAVAILABLE]), seen
    for _ in range(10):
        assert await status_of(login(users, account)) is grpc.StatusCode.OK


async def test_events_written_while_nats_is_down_go_out_after_it_returns(
    private: Stack, users: UserServiceStub
) -> None:
    """A NATS outage is nobody's poison: registration still commits (the event waits in the
    outbox), and once NATS is back the relay publishes it without a service restart and
    without parking anything in the dead-letter table."""
    endpoints = private.endpoints
    broker = serving(private, endpoints.nats_url)
    await stop(broker)
    try:
        account = await make_account(users, "nats-outage")
    finally:
        await restart(private, broker)
    nc = await nats.connect(endpoints.nats_url)
    try:
        sub = await nc.jetstream().subscribe("elearn.user.user_registered", ordered_consumer=True)
        found = False
        deadline = time.monotonic() + RECOVERY_SECONDS
        while not found and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            except (TimeoutError, nats.errors.TimeoutError):
                break
            found = user_events_pb2.UserRegistered.FromString(msg.data).user_id == (
                account.user.user_id
            )
    finally:
        await nc.close()
    assert found, "the event written during the outage was not published after it"
    url = libpq_url(endpoints.database_url)
    with psycopg.connect(url, autocommit=True) as sql:
        dead = sql.execute("SELECT count(*) FROM users.outbox_dead_letter").fetchone()
    assert dead == (0,)
