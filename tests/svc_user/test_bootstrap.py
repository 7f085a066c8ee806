"""Domain functions run at start-up or in the background, called against the real database:
the bootstrap admin and the purge of spent refresh tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import psycopg
import pytest
import pytest_asyncio

from devstack.stack import Endpoints
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from mesh.cache import open_cache
from mesh.db import Database
from mesh.outbox import Outbox
from svc_user.accounts import Accounts
from svc_user.models import SCHEMA, outbox
from svc_user.passwords import PasswordHashing
from svc_user.settings import UserSettings
from svc_user.token_purge import purge_spent_refresh_tokens
from tests.conftest import make_account, unique_email


@pytest.fixture(scope="module")
def settings(stack: Endpoints) -> UserSettings:
    return UserSettings(
        database_url=stack.database_url,
        cache_url=stack.cache_url,
        state_url=stack.state_url,
        db_pool_size=2,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def db(settings: UserSettings) -> AsyncIterator[Database]:
    async with Database.open(settings, SCHEMA) as database:
        yield database


@pytest_asyncio.fixture(loop_scope="session")
async def accounts(settings: UserSettings, db: Database) -> AsyncIterator[Accounts]:
    hashing = PasswordHashing(time_cost=1, memory_kib=8192, parallelism=1, threads=1, queue=4)
    try:
        async with open_cache(settings) as cache:
            yield Accounts(db, cache, Outbox(outbox), hashing, 60, digest_key=b"k" * 32)
    finally:
        hashing.close()


def roles_of(sql: psycopg.Connection, email: str) -> list[str]:
    row = sql.execute("SELECT roles FROM users.accounts WHERE email = %s", (email,)).fetchone()
    assert row is not None
    return list(row[0])


async def test_ensure_admin_creates_the_admin(accounts: Accounts, sql: psycopg.Connection) -> None:
    email = unique_email("boot")
    user = await accounts.ensure_admin(email, "admin password 1")
    assert pb.ROLE_ADMIN in user.roles
    assert roles_of(sql, email) == ["student", "instructor", "admin"]
    # A restart (or a second replica) with the same settings is fine.
    again = await accounts.ensure_admin(email, "admin password 1")
    assert again.user_id == user.user_id


async def test_ensure_admin_refuses_to_promote_a_squatted_account(
    accounts: Accounts, users: UserServiceStub, sql: psycopg.Connection
) -> None:
    squatter = await make_account(users, "squatter", password="squatter pass")
    with pytest.raises(SystemExit, match="password does not match"):
        await accounts.ensure_admin(squatter.user.email, "the real admin password")
    assert roles_of(sql, squatter.user.email) == ["student"]


async def test_ensure_admin_promotes_an_existing_account_whose_password_verifies(
    accounts: Accounts, users: UserServiceStub, sql: psycopg.Connection
) -> None:
    owner = await make_account(users, "operator", password="operator pass")
    user = await accounts.ensure_admin(owner.user.email, "operator pass")
    assert user.user_id == owner.user.user_id
    assert roles_of(sql, owner.user.email) == ["student", "instructor", "admin"]


def insert_token(sql: psycopg.Connection, account_id: str, **ages: str) -> uuid.UUID:
    """A refresh token row whose timestamps are now() minus the given intervals."""
    columns = {"expires_at": "-30 days"} | ages
    assignments = ", ".join(f"now() + interval '{v}'" for v in columns.values())
    row = sql.execute(
        f"INSERT INTO users.refresh_tokens (family_id, account_id, token_hash,"
        f" {', '.join(columns)}) VALUES (gen_random_uuid(), %s, %s, {assignments}) RETURNING id",
        (account_id, uuid.uuid4().bytes),
    ).fetchone()
    assert row is not None
    return row[0]


def existing(sql: psycopg.Connection, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = sql.execute("SELECT id FROM users.refresh_tokens WHERE id = ANY(%s)", (ids,)).fetchall()
    return {r[0] for r in rows}


async def test_purge_removes_long_dead_refresh_tokens_in_batches(
    db: Database, users: UserServiceStub, sql: psycopg.Connection
) -> None:
    owner = (await make_account(users, "purged")).user.user_id
    dead = [
        insert_token(sql, owner, expires_at="-40 days"),
        insert_token(sql, owner, expires_at="+20 days", used_at="-10 days"),
        insert_token(sql, owner, expires_at="+20 days", revoked_at="-9 days"),
    ]
    kept = [
        insert_token(sql, owner, expires_at="+20 days"),
        # Spent recently: still needed to detect a replay.
        insert_token(sql, owner, expires_at="+20 days", used_at="-1 hour"),
        insert_token(sql, owner, expires_at="-1 day"),
    ]
    removed = await purge_spent_refresh_tokens(db, older_than=timedelta(days=7), batch=1)
    assert removed >= len(dead)
    assert existing(sql, dead + kept) == set(kept)
    assert await purge_spent_refresh_tokens(db, older_than=timedelta(days=7), batch=1) == 0


def test_the_purge_finds_dead_tokens_through_its_index(sql: psycopg.Connection) -> None:
    with sql.transaction():
        # The table is tiny in tests; forbid the sequential scan to see whether the index fits.
        sql.execute("SET LOCAL enable_seqscan = off")
        plan = sql.execute(
            "EXPLAIN SELECT id FROM users.refresh_tokens"
            " WHERE least(expires_at, used_at, revoked_at) < now() LIMIT 1000"
        ).fetchall()
    assert "ix_refresh_tokens_dead_since" in "\n".join(r[0] for r in plan)
