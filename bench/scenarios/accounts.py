"""Bench accounts: registered and logged in once per run, shared by every scenario that needs them.

Users are `bench-<run id>-<n>@bench.local`, so runs never collide and their rows are easy to
find. Register and Login both hash with argon2id (tens of ms of server CPU each), so they run
with bounded concurrency: a pool of 64 to 200 users is ready in seconds without tripping the
service's load shedding. A login is a session: its own refresh-token family.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc

T = TypeVar("T")

# Setup retries a RESOURCE_EXHAUSTED (login shedding) after a short pause instead of failing.
SHED_RETRIES = 20
SHED_PAUSE_S = 0.05


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    user_id: str


@dataclass
class Session:
    account: Account
    access_token: str
    refresh_token: str
    # Set once the refresh token is handed to a refresh chain: it is single-use.
    refresh_taken: bool = False


class AccountPool:
    def __init__(
        self,
        run_id: str,
        *,
        max_users: int = 64,
        concurrency: int = 8,
        timeout_s: float = 30.0,
    ) -> None:
        self.run_id = run_id
        self.max_users = max_users
        self.password = secrets.token_urlsafe(18)
        self.timeout_s = timeout_s
        self._limit = asyncio.Semaphore(concurrency)
        self.accounts: list[Account] = []
        self.sessions: list[Session] = []

    async def ensure_accounts(self, channel: grpc.aio.Channel, n: int) -> list[Account]:
        """At least min(n, max_users) registered accounts."""
        want = min(n, self.max_users)
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        start = len(self.accounts)
        if want > start:
            made = await asyncio.gather(*(self._register(stub, i) for i in range(start, want)))
            self.accounts.extend(made)
        return self.accounts[:want]

    async def ensure_sessions(self, channel: grpc.aio.Channel, n: int) -> list[Session]:
        """At least n sessions, spread round-robin over the accounts."""
        accounts = await self.ensure_accounts(channel, n)
        stub = user_service_pb2_grpc.UserServiceStub(channel)
        start = len(self.sessions)
        if n > start:
            made = await asyncio.gather(
                *(self.login(stub, accounts[i % len(accounts)]) for i in range(start, n))
            )
            self.sessions.extend(made)
        return self.sessions[:n]

    async def take_refresh_chains(self, channel: grpc.aio.Channel, n: int) -> list[Session]:
        """n sessions whose refresh token nobody else holds; they are marked taken."""
        free = [s for s in self.sessions if not s.refresh_taken]
        if len(free) < n:
            await self.ensure_sessions(channel, len(self.sessions) + n - len(free))
            free = [s for s in self.sessions if not s.refresh_taken]
        chains = free[:n]
        for session in chains:
            session.refresh_taken = True
        return chains

    async def login(self, stub: user_service_pb2_grpc.UserServiceStub, account: Account) -> Session:
        request = pb.LoginRequest(email=account.email, password=account.password)
        reply = await self._bounded(lambda: stub.Login(request, timeout=self.timeout_s))
        return Session(account, reply.tokens.access_token, reply.tokens.refresh_token)

    async def _register(self, stub: user_service_pb2_grpc.UserServiceStub, n: int) -> Account:
        email = f"bench-{self.run_id}-{n}@bench.local"
        request = pb.RegisterRequest(
            email=email,
            password=self.password,
            display_name=f"bench {n}",
            idempotency_key=uuid.uuid4().hex,
        )
        reply = await self._bounded(lambda: stub.Register(request, timeout=self.timeout_s))
        return Account(email, self.password, reply.user.user_id)

    async def _bounded(self, rpc: Callable[[], Awaitable[T]]) -> T:
        async with self._limit:
            for _ in range(SHED_RETRIES):
                try:
                    return await rpc()
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                await asyncio.sleep(SHED_PAUSE_S)
            return await rpc()
