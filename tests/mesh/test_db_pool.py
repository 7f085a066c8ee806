"""The Postgres pool against the real server (issue 10 items 7-8, issue 11 item 8): parameters
stay out of errors and logs, statement timeouts are DEADLINE_EXCEEDED, an exhausted pool answers
UNAVAILABLE in bounded time, long holds are reported, connections are recycled, and a pool that
cannot fit the server's max_connections refuses to start."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import grpc
import psycopg
import pytest
from prometheus_client import REGISTRY

from devstack.stack import Endpoints
from mesh.config import MeshSettings
from mesh.db import Database, libpq_url
from mesh.errors import Unavailable, infrastructure_error


def settings(stack: Endpoints, **overrides: Any) -> MeshSettings:
    return MeshSettings(database_url=stack.database_url, **overrides)


async def test_failing_statement_shows_no_parameters(
    stack: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    email = f"secret-{uuid.uuid4().hex[:8]}@test.local"
    digest = "$argon2id$v=19$m=19456,t=2,p=1$c2VjcmV0c2FsdA$aGFzaGhhc2hoYXNo"
    caplog.set_level(logging.DEBUG)
    async with Database.open(settings(stack, db_pool_size=1), "public") as db:
        with pytest.raises(Exception) as caught:
            async with db.transaction() as conn:
                # A type error on the server: the failing statement carries both values.
                await conn.exec_driver_sql(
                    "SELECT %(email)s::text, %(hash)s::text, 1 / 0",
                    {"email": email, "hash": digest},
                )
        logging.getLogger("mesh.db").exception("statement failed", exc_info=caught.value)
    shown = str(caught.value) + caplog.text
    assert "division by zero" in shown, "the error itself is still reported"
    assert email not in shown
    assert digest not in shown


async def test_statement_timeout_is_deadline_exceeded(stack: Endpoints) -> None:
    async with Database.open(settings(stack, db_pool_size=1), "public") as db:
        with pytest.raises(Exception) as caught:
            async with db.transaction() as conn:
                await conn.exec_driver_sql("SET LOCAL statement_timeout = '50ms'")
                await conn.exec_driver_sql("SELECT pg_sleep(2)")
    mapped = infrastructure_error(caught.value)
    assert mapped is not None
    assert mapped.code is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_exhausted_pool_answers_unavailable_in_bounded_time(stack: Endpoints) -> None:
    tight = settings(stack, db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=0.2)
    async with Database.open(tight, "public") as db, db.read() as held:
        await held.exec_driver_sql("SELECT 1")
        began = time.monotonic()
        with pytest.raises(Unavailable, match="no connection free"):
            async with db.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
        waited = time.monotonic() - began
    assert 0.15 <= waited < 2.0


async def test_connection_held_past_the_bound_is_logged_and_counted(
    stack: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    before = REGISTRY.get_sample_value("db_connection_held_too_long_total") or 0.0
    caplog.set_level(logging.WARNING, logger="mesh.db")
    quick = settings(stack, db_pool_size=1, db_hold_warning_seconds=0.1)
    async with Database.open(quick, "public") as db:
        async with db.read() as conn:
            await conn.exec_driver_sql("SELECT 1")
        assert REGISTRY.get_sample_value("db_connection_held_too_long_total") == before
        async with db.read() as conn:
            await conn.exec_driver_sql("SELECT pg_sleep(0.3)")
    assert REGISTRY.get_sample_value("db_connection_held_too_long_total") == before + 1
    assert "was held" in caplog.text


async def test_connections_are_replaced_after_their_max_lifetime(stack: Endpoints) -> None:
    short = settings(stack, db_pool_size=1, db_max_overflow=0, db_pool_recycle_seconds=1)
    async with Database.open(short, "public") as db:

        async def backend() -> int:
            async with db.read() as conn:
                return int((await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())

        first = await backend()
        assert await backend() == first, "a young connection is reused"
        deadline = time.monotonic() + 10
        current = first
        while current == first and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # polling a condition: the pool's clock, not a sync point
            current = await backend()
    assert current != first


async def test_pool_that_exceeds_max_connections_refuses_to_start(stack: Endpoints) -> None:
    crowded = settings(stack, db_pool_size=20, db_max_overflow=10, db_expected_replicas=50)
    with pytest.raises(SystemExit) as caught:
        async with Database.open(crowded, "public"):
            pass
    message = str(caught.value)
    assert "50 replica(s) x (pool 20 + overflow 10) = 1500 connections" in message
    assert "max_connections" in message
    assert "DB_POOL_SIZE" in message and "DB_EXPECTED_REPLICAS" in message


async def test_pool_that_fits_says_so(stack: Endpoints, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mesh.db")
    async with Database.open(settings(stack, db_pool_size=2, db_expected_replicas=3), "public"):
        pass
    assert "postgres pool fits: 3 replica(s) x (pool 2 + overflow 10) = 36" in caplog.text


def test_libpq_url_connects_where_the_services_url_would_not(stack: Endpoints) -> None:
    """Tools and tests reach the services' database with the same URL, minus the driver."""
    with pytest.raises(psycopg.ProgrammingError):
        psycopg.connect(stack.database_url, connect_timeout=5)
    url = libpq_url(stack.database_url)
    assert url.startswith("postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() is not None
