"""refresh: UserService/Refresh along one rotating token chain per caller.

Refresh tokens are single-use: each response carries the next one and presenting a spent one
revokes the whole family. So every caller owns its chain (its own login) and always presents
the token it was last given. When a call fails the caller cannot know whether the server
rotated, so it drops the chain and logs in again before its next call; that login is not timed
but is counted in the report under `relogins`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from bench.scenarios.base import Scenario, SetupContext
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc

# A re-login hashes a password (argon2id): it gets its own deadline, not the refresh call's.
RELOGIN_TIMEOUT_S = 10.0


class NoChain(Exception):
    """The caller holds no refresh token (its re-login failed)."""


@dataclass
class Chain:
    email: str
    password: str
    refresh_token: str | None
    relogins: int = 0


class Refresh(Scenario):
    name = "refresh"
    summary = "UserService/Refresh along one rotating refresh-token chain per caller"
    needs_prepare = True

    async def setup(self, ctx: SetupContext) -> Any:
        chains = await ctx.accounts.take_refresh_chains(ctx.channel, ctx.callers)
        return [(s.account.email, s.account.password, s.refresh_token) for s in chains]

    def make_state(self, data: Any, caller: int) -> Chain:
        email, password, token = data[caller]
        return Chain(email, password, token)

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return user_service_pb2_grpc.UserServiceStub(channel)

    async def prepare(self, stub: Any, state: Chain) -> None:
        if state.refresh_token is None:
            request = pb.LoginRequest(email=state.email, password=state.password)
            reply = await stub.Login(request, timeout=max(self.timeout_s, RELOGIN_TIMEOUT_S))
            state.refresh_token = reply.tokens.refresh_token
            state.relogins += 1

    def counters(self, states: list[Any]) -> dict[str, int]:
        return {"relogins": sum(chain.relogins for chain in states)}

    async def call(self, stub: Any, state: Chain) -> None:
        token, state.refresh_token = state.refresh_token, None
        if token is None:
            raise NoChain
        reply = await stub.Refresh(pb.RefreshRequest(refresh_token=token), timeout=self.timeout_s)
        state.refresh_token = reply.tokens.refresh_token
