"""Auth across the real stack: public methods never read a stale bearer (gRPC and the edge),
and a signed-out session's access token is refused by another service within a second."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import httpx
import jwt
import pytest
import pytest_asyncio

from devstack.stack import Endpoints
from elearn.course.v1 import course_service_pb2, course_service_pb2_grpc
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc
from mesh.auth import (
    ACCESS_TOKEN_TYPE,
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    TokenVerifier,
    load_public_key,
)
from mesh.bus import connect_bus
from mesh.config import MeshSettings
from mesh.errors import Unauthenticated
from mesh.revocation import follow_revocations
from svc_user.tokens import load_private_key
from tests.conftest import Account, bearer, make_account, unique_email
from tests.grpc_assert import fails_with
from tests.mesh.polling import eventually


def expired_token(stack: Endpoints, account: Account) -> str:
    """A genuine access token (the platform's own key) that expired a while ago."""
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": account.user.user_id, "roles": ["student"],
        "iat": now - 1900, "nbf": now - 1900, "exp": now - 1000, "sid": "old",
    }  # fmt: skip
    key = load_private_key(stack.jwt_private_key_file)
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"typ": ACCESS_TOKEN_TYPE})


# A signed-in method of another service: it answers a live token and refuses a revoked one.
MINE = course_service_pb2.ListMyEnrollmentsRequest()


def stale_headers(stack: Endpoints, account: Account) -> list[tuple[tuple[str, str], ...]]:
    return [
        bearer("garbage.not-a.jwt"),
        bearer(expired_token(stack, account)),
        (("authorization", "Basic dXNlcjpwdw=="),),
    ]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def courses(stack: Endpoints) -> AsyncIterator[course_service_pb2_grpc.CourseServiceStub]:
    async with grpc.aio.insecure_channel(stack.services["course"][0]) as channel:
        yield course_service_pb2_grpc.CourseServiceStub(channel)


async def test_public_user_methods_ignore_a_stale_or_garbage_bearer(
    stack: Endpoints, users: user_service_pb2_grpc.UserServiceStub, account: Account
) -> None:
    for headers in stale_headers(stack, account):
        email = unique_email("stale")
        await users.Register(
            pb.RegisterRequest(
                email=email, password="correct horse", display_name="S",
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=headers,
        )  # fmt: skip
        login = await users.Login(
            pb.LoginRequest(email=email, password="correct horse"), metadata=headers
        )
        refreshed = await users.Refresh(
            pb.RefreshRequest(refresh_token=login.tokens.refresh_token), metadata=headers
        )
        await users.Logout(
            pb.LogoutRequest(refresh_token=refreshed.tokens.refresh_token), metadata=headers
        )
    # The same stale header still fails where a caller is needed.
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.GetMe(pb.GetMeRequest(), metadata=bearer(expired_token(stack, account))),
        match="expired",
    )


def test_edge_sign_in_and_refresh_work_with_a_garbage_bearer(
    stack: Endpoints, account: Account
) -> None:
    garbage = {"authorization": "Bearer garbage"}
    with httpx.Client(base_url=f"http://{stack.edge}", timeout=10, headers=garbage) as http:
        login = http.post(
            "/api/auth/login",
            json={"email": account.user.email, "password": account.password},
        )
        assert login.status_code == 200, login.text
        refresh_token = login.json()["tokens"]["refreshToken"]
        refreshed = http.post("/api/auth/refresh", json={"refreshToken": refresh_token})
        assert refreshed.status_code == 200, refreshed.text
        assert http.get("/api/users/me").status_code == 401


def refused_by(
    courses: course_service_pb2_grpc.CourseServiceStub, account: Account
) -> Callable[[], Awaitable[bool]]:
    async def refused() -> bool:
        try:
            await courses.ListMyEnrollments(MINE, metadata=account.auth)
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    return refused


async def test_after_logout_another_service_refuses_the_old_access_token_within_a_second(
    users: user_service_pb2_grpc.UserServiceStub,
    courses: course_service_pb2_grpc.CourseServiceStub,
) -> None:
    account = await make_account(users, "revoke")
    other = await users.Login(pb.LoginRequest(email=account.user.email, password=account.password))
    # Signed in: the course service accepts the token.
    await courses.ListMyEnrollments(MINE, metadata=account.auth)

    await users.Logout(pb.LogoutRequest(refresh_token=account.tokens.refresh_token))

    elapsed = await eventually(refused_by(courses, account), within=1.0)
    print(f"revocation seen by the course service after {elapsed * 1000:.0f} ms")
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.GetMe(pb.GetMeRequest(), metadata=account.auth),
        match="revoked",
    )
    # Only the signed-out session: the same user's other sign-in keeps working.
    await courses.ListMyEnrollments(MINE, metadata=bearer(other.tokens.access_token))
    me = await users.GetMe(pb.GetMeRequest(), metadata=bearer(other.tokens.access_token))
    assert me.user.user_id == account.user.user_id


async def test_a_verifier_started_after_a_logout_still_refuses_its_token(
    stack: Endpoints,
    users: user_service_pb2_grpc.UserServiceStub,
    courses: course_service_pb2_grpc.CourseServiceStub,
) -> None:
    account = await make_account(users, "late")
    await users.Logout(pb.LogoutRequest(refresh_token=account.tokens.refresh_token))
    await eventually(refused_by(courses, account), within=1.0)  # the event is out
    # A replica that starts now never saw the live event.
    verifier = TokenVerifier(load_public_key(stack.jwt_public_key_file))
    async with connect_bus(MeshSettings(nats_url=stack.nats_url)) as bus:
        subscribed = asyncio.Event()
        following = asyncio.create_task(follow_revocations(bus, verifier, subscribed))
        try:
            async with asyncio.timeout(10):
                await subscribed.wait()
            with pytest.raises(Unauthenticated, match="revoked"):
                verifier.verify(account.tokens.access_token)
        finally:
            following.cancel()
