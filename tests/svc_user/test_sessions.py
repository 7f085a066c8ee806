"""Login, refresh rotation with reuse detection, logout, throttling and token checks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import grpc
import jwt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from devstack.stack import Endpoints
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from svc_user.settings import UserSettings
from tests.conftest import Account, bearer, make_account
from tests.grpc_assert import fails_with
from tests.mesh.polling import eventually

GRACE = UserSettings.model_fields["refresh_reuse_grace_seconds"].default


def live_tokens(sql: psycopg.Connection, user_id: str) -> int:
    row = sql.execute(
        "SELECT count(*) FROM users.refresh_tokens WHERE account_id = %s"
        " AND used_at IS NULL AND revoked_at IS NULL",
        (user_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_wrong_password_and_unknown_email_look_the_same(
    users: UserServiceStub, account: Account
) -> None:
    wrong = await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.Login(pb.LoginRequest(email=account.user.email, password="wrong password")),
    )
    unknown = await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.Login(pb.LoginRequest(email="nobody-here@test.local", password="wrong password")),
    )
    assert wrong.details() == unknown.details() == "wrong e-mail or password"


async def test_empty_and_oversized_logins_are_invalid(users: UserServiceStub) -> None:
    await fails_with(grpc.StatusCode.INVALID_ARGUMENT, users.Login(pb.LoginRequest()))
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        users.Login(pb.LoginRequest(email="a@b.c", password="p" * 1000)),
        "password",
    )


async def test_repeated_failures_throttle_the_account(users: UserServiceStub) -> None:
    victim = await make_account(users, "victim")
    for _ in range(5):
        await fails_with(
            grpc.StatusCode.UNAUTHENTICATED,
            users.Login(pb.LoginRequest(email=victim.user.email, password="guess guess")),
        )
    # Even the right password is refused until the window ends.
    await fails_with(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        users.Login(pb.LoginRequest(email=victim.user.email, password=victim.password)),
        "too many failed sign-ins",
    )
    # Other accounts are unaffected.
    await make_account(users, "bystander")


async def test_refresh_rotates_and_old_token_stops_working(
    users: UserServiceStub, account: Account, sql: psycopg.Connection
) -> None:
    first = account.tokens.refresh_token
    rotated = await users.Refresh(pb.RefreshRequest(refresh_token=first))
    assert rotated.tokens.refresh_token != first
    assert rotated.tokens.access_token
    me = await users.GetMe(pb.GetMeRequest(), metadata=bearer(rotated.tokens.access_token))
    assert me.user.user_id == account.user.user_id
    assert live_tokens(sql, account.user.user_id) == 1


def age_use(sql: psycopg.Connection, token: str, seconds: int) -> None:
    """Pretend the token was spent `seconds` ago, past any retry grace window."""
    sql.execute(
        "UPDATE users.refresh_tokens SET used_at = now() - make_interval(secs => %s)"
        " WHERE token_hash = %s",
        (seconds, hashlib.sha256(token.encode()).digest()),
    )


def revoked_tokens(sql: psycopg.Connection, user_id: str) -> int:
    row = sql.execute(
        "SELECT count(*) FROM users.refresh_tokens WHERE account_id = %s"
        " AND revoked_at IS NOT NULL",
        (user_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_replayed_refresh_token_revokes_the_family(
    users: UserServiceStub, account: Account, sql: psycopg.Connection
) -> None:
    stolen = account.tokens.refresh_token
    legit = await users.Refresh(pb.RefreshRequest(refresh_token=stolen))
    age_use(sql, stolen, GRACE + 60)
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.Refresh(pb.RefreshRequest(refresh_token=stolen)),
        "already used",
    )
    # The legitimate holder's newer token died with the family.
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.Refresh(pb.RefreshRequest(refresh_token=legit.tokens.refresh_token)),
    )
    assert live_tokens(sql, account.user.user_id) == 0


async def test_concurrent_refreshes_of_one_token_all_get_the_one_successor(
    users: UserServiceStub, account: Account, sql: psycopg.Connection
) -> None:
    """A double click or a retry after a lost answer is not a theft: every caller inside the
    grace window gets the same successor, which works, and nothing is revoked."""
    token = account.tokens.refresh_token
    results = await asyncio.gather(
        *(users.Refresh(pb.RefreshRequest(refresh_token=token)) for _ in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(r, pb.RefreshResponse) for r in results), results
    successors = {r.tokens.refresh_token for r in results if isinstance(r, pb.RefreshResponse)}
    assert len(successors) == 1
    assert revoked_tokens(sql, account.user.user_id) == 0
    assert live_tokens(sql, account.user.user_id) == 1
    (successor,) = successors
    nxt = await users.Refresh(pb.RefreshRequest(refresh_token=successor))
    me = await users.GetMe(pb.GetMeRequest(), metadata=bearer(nxt.tokens.access_token))
    assert me.user.user_id == account.user.user_id


async def test_a_retry_inside_the_grace_window_gets_the_same_pair(
    users: UserServiceStub, account: Account
) -> None:
    token = account.tokens.refresh_token
    first = await users.Refresh(pb.RefreshRequest(refresh_token=token))
    retry = await users.Refresh(pb.RefreshRequest(refresh_token=token))
    assert retry.tokens.refresh_token == first.tokens.refresh_token
    await users.Refresh(pb.RefreshRequest(refresh_token=first.tokens.refresh_token))


async def test_an_expired_refresh_token_is_refused(
    users: UserServiceStub, account: Account, sql: psycopg.Connection
) -> None:
    token = account.tokens.refresh_token
    sql.execute(
        "UPDATE users.refresh_tokens SET expires_at = now() - interval '1 minute'"
        " WHERE token_hash = %s",
        (hashlib.sha256(token.encode()).digest(),),
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.Refresh(pb.RefreshRequest(refresh_token=token)),
        "expired",
    )
    # An expired token is not spent: nothing else of the family is touched.
    assert revoked_tokens(sql, account.user.user_id) == 0


async def test_logout_revokes_the_family(
    users: UserServiceStub, account: Account, sql: psycopg.Connection
) -> None:
    await users.Logout(pb.LogoutRequest(refresh_token=account.tokens.refresh_token))
    assert live_tokens(sql, account.user.user_id) == 0
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.Refresh(pb.RefreshRequest(refresh_token=account.tokens.refresh_token)),
    )
    # Logging out twice is harmless.
    await users.Logout(pb.LogoutRequest(refresh_token=account.tokens.refresh_token))


async def test_bad_refresh_tokens(users: UserServiceStub) -> None:
    await fails_with(grpc.StatusCode.INVALID_ARGUMENT, users.Refresh(pb.RefreshRequest()))
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT, users.Refresh(pb.RefreshRequest(refresh_token="r" * 5000))
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED, users.Refresh(pb.RefreshRequest(refresh_token="rt_forged"))
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED, users.Logout(pb.LogoutRequest(refresh_token="rt_forged"))
    )


def platform_key(stack: Endpoints) -> Ed25519PrivateKey:
    pem = Path(stack.jwt_public_key_file).with_name("jwt_ed25519.pem").read_bytes()
    key = load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


async def test_expired_and_foreign_access_tokens_are_refused(
    users: UserServiceStub, stack: Endpoints, account: Account
) -> None:
    now = int(time.time())
    claims = {
        "iss": "elearn-user", "aud": "elearn", "sub": account.user.user_id,
        "roles": ["student"], "iat": now - 7200, "exp": now - 3600,
    }  # fmt: skip
    expired = jwt.encode(claims, platform_key(stack), algorithm="EdDSA", headers={"typ": "at+jwt"})
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.GetMe(pb.GetMeRequest(), metadata=bearer(expired)),
        "expired",
    )
    fresh = {**claims, "iat": now, "exp": now + 600}
    foreign = jwt.encode(
        fresh, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"typ": "at+jwt"}
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED, users.GetMe(pb.GetMeRequest(), metadata=bearer(foreign))
    )
    unsigned = jwt.encode(fresh, None, algorithm="none", headers={"typ": "at+jwt"})
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED, users.GetMe(pb.GetMeRequest(), metadata=bearer(unsigned))
    )
    wrong_type = jwt.encode(
        fresh, platform_key(stack), algorithm="EdDSA", headers={"typ": "refresh+jwt"}
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.GetMe(pb.GetMeRequest(), metadata=bearer(wrong_type)),
        "not an access token",
    )


async def access_refused(users: UserServiceStub, access_token: str) -> bool:
    try:
        await users.GetMe(pb.GetMeRequest(), metadata=bearer(access_token))
    except grpc.aio.AioRpcError as exc:
        return exc.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


async def test_a_replay_revokes_the_familys_live_access_tokens_too(
    users: UserServiceStub, account: Account, sql: psycopg.Connection
) -> None:
    stolen = account.tokens.refresh_token
    legit = await users.Refresh(pb.RefreshRequest(refresh_token=stolen))
    assert not await access_refused(users, legit.tokens.access_token)
    age_use(sql, stolen, GRACE + 60)
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED, users.Refresh(pb.RefreshRequest(refresh_token=stolen))
    )
    await eventually(lambda: access_refused(users, legit.tokens.access_token), within=1.0)


async def test_revoking_a_role_revokes_every_live_access_token_of_the_user(
    users: UserServiceStub, admin: Account
) -> None:
    victim = await make_account(users, "demoted")
    await users.GrantRole(
        pb.GrantRoleRequest(user_id=victim.user.user_id, role=pb.ROLE_INSTRUCTOR),
        metadata=admin.auth,
    )
    # A sign-in after the grant carries the instructor role in its access token.
    login = await users.Login(pb.LoginRequest(email=victim.user.email, password=victim.password))
    assert not await access_refused(users, login.tokens.access_token)
    await users.RevokeRole(
        pb.RevokeRoleRequest(user_id=victim.user.user_id, role=pb.ROLE_INSTRUCTOR),
        metadata=admin.auth,
    )
    await eventually(lambda: access_refused(users, login.tokens.access_token), within=1.0)
    # The admin's own session is untouched.
    assert not await access_refused(users, admin.tokens.access_token)
