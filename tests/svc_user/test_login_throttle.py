"""Login throttling: counted before the hash, per (account, address), per account and per
address, with the address taken from the edge's X-Forwarded-For only when the peer is trusted."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import grpc

from devstack.stack import Endpoints
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from svc_user.settings import UserSettings
from tests.conftest import make_account
from tests.grpc_assert import fails_with

PAIR_LIMIT = UserSettings.model_fields["login_pair_limit"].default
ACCOUNT_LIMIT = UserSettings.model_fields["login_account_limit"].default
ADDRESS_LIMIT = UserSettings.model_fields["login_address_limit"].default


def fresh_address() -> str:
    """A client address no other test uses, so counters do not leak between tests."""
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


def via(address: str) -> tuple[tuple[str, str]]:
    # The tests reach the service from loopback, a trusted proxy, exactly as Envoy does.
    return (("x-forwarded-for", address),)


def outcomes(results: list[object]) -> tuple[int, int, list[object]]:
    wrong = refused = 0
    other = []
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.UNAUTHENTICATED:
            wrong += 1
        elif (
            isinstance(r, grpc.aio.AioRpcError)
            and r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            and "too many" in (r.details() or "")
        ):
            refused += 1
        else:
            other.append(r)
    return wrong, refused, other


async def guesses(users: UserServiceStub, email: str, address: str, n: int) -> list[object]:
    calls = (
        users.Login(pb.LoginRequest(email=email, password="guess guess"), metadata=via(address))
        for _ in range(n)
    )
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def test_concurrent_guesses_are_counted_before_any_hash(users: UserServiceStub) -> None:
    victim = await make_account(users, "raced")
    attacker = fresh_address()
    wrong, refused, other = outcomes(await guesses(users, victim.user.email, attacker, 32))
    assert other == []
    # Only the admitted attempts reached the password check; every other one was refused first.
    assert wrong == PAIR_LIMIT and refused == 32 - PAIR_LIMIT
    await fails_with(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        users.Login(
            pb.LoginRequest(email=victim.user.email, password=victim.password),
            metadata=via(attacker),
        ),
        "too many failed sign-ins",
    )


async def test_the_owner_still_signs_in_from_another_address(users: UserServiceStub) -> None:
    victim = await make_account(users, "owner")
    wrong, refused, _ = outcomes(await guesses(users, victim.user.email, fresh_address(), 8))
    assert (wrong, refused) == (PAIR_LIMIT, 8 - PAIR_LIMIT)
    login = await users.Login(
        pb.LoginRequest(email=victim.user.email, password=victim.password),
        metadata=via(fresh_address()),
    )
    assert login.user.user_id == victim.user.user_id


async def test_the_account_wide_limit_is_higher_and_stops_distributed_guessing(
    users: UserServiceStub,
) -> None:
    assert ACCOUNT_LIMIT > PAIR_LIMIT
    victim = await make_account(users, "botnet")
    addresses = [fresh_address() for _ in range(-(-ACCOUNT_LIMIT // PAIR_LIMIT))]
    wrong = 0
    for address in addresses:
        w, _, other = outcomes(await guesses(users, victim.user.email, address, PAIR_LIMIT))
        assert other == []
        wrong += w
    assert wrong == ACCOUNT_LIMIT
    await fails_with(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        users.Login(
            pb.LoginRequest(email=victim.user.email, password=victim.password),
            metadata=via(fresh_address()),
        ),
        "too many failed sign-ins for this account;",
    )


async def test_spraying_many_accounts_from_one_address_is_throttled(
    users: UserServiceStub,
) -> None:
    sprayer = fresh_address()
    emails = [f"sprayed-{uuid.uuid4().hex[:10]}@test.local" for _ in range(ADDRESS_LIMIT)]
    wrong = 0
    for start in range(0, len(emails), 20):
        calls = (
            users.Login(pb.LoginRequest(email=e, password="Summer2026!"), metadata=via(sprayer))
            for e in emails[start : start + 20]
        )
        w, _, other = outcomes(list(await asyncio.gather(*calls, return_exceptions=True)))
        assert other == []
        wrong += w
    assert wrong == ADDRESS_LIMIT
    victim = await make_account(users, "sprayed")
    await fails_with(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        users.Login(
            pb.LoginRequest(email=victim.user.email, password=victim.password),
            metadata=via(sprayer),
        ),
        "too many failed sign-ins from this address;",
    )
    # The same account from elsewhere is not affected by the sprayer's address.
    await users.Login(
        pb.LoginRequest(email=victim.user.email, password=victim.password),
        metadata=via(fresh_address()),
    )


async def test_a_success_does_not_count_as_a_failure(users: UserServiceStub) -> None:
    owner = await make_account(users, "regular")
    home = fresh_address()
    for _ in range(PAIR_LIMIT + 3):
        await users.Login(
            pb.LoginRequest(email=owner.user.email, password=owner.password), metadata=via(home)
        )


async def test_a_client_cannot_pick_its_address_through_the_edge(
    stack: Endpoints, users: UserServiceStub
) -> None:
    """Envoy appends the address it saw to X-Forwarded-For; a forged value stays in front of it,
    so varying it does not give an attacker a fresh budget per guess."""
    assert stack.edge is not None
    victim = await make_account(users, "edge-victim")
    async with grpc.aio.insecure_channel(stack.edge) as channel:
        edge = UserServiceStub(channel)
        for _ in range(PAIR_LIMIT):
            await fails_with(
                grpc.StatusCode.UNAUTHENTICATED,
                edge.Login(
                    pb.LoginRequest(email=victim.user.email, password="guess guess"),
                    metadata=via(fresh_address()),
                ),
            )
        await fails_with(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            edge.Login(
                pb.LoginRequest(email=victim.user.email, password="guess guess"),
                metadata=via(fresh_address()),
            ),
            "too many failed sign-ins",
        )
