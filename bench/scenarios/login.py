"""login: UserService/Login for a pool of registered users — argon2id-bound by design.

Each login verifies an argon2id hash (~27 ms of one core at the OWASP minimum, ~105 ms at the
library defaults), so throughput is capped near cores / hash time and the service bounds
concurrent hashes, shedding the excess with RESOURCE_EXHAUSTED. The SLA counts shed calls
apart from errors: shedding is the designed answer to overload, queueing is not.
"""

from __future__ import annotations

from typing import Any

import grpc

from bench.scenarios.base import Scenario, SetupContext, raw_method
from elearn.user.v1 import user_service_pb2 as pb

LOGIN = "/elearn.user.v1.UserService/Login"


class Login(Scenario):
    name = "login"
    summary = "UserService/Login (argon2id verify; RESOURCE_EXHAUSTED is load shedding)"

    async def setup(self, ctx: SetupContext) -> Any:
        accounts = await ctx.accounts.ensure_accounts(ctx.channel, ctx.callers)
        return [(a.email, a.password) for a in accounts]

    def make_state(self, data: Any, caller: int) -> Any:
        email, password = data[caller % len(data)]
        return pb.LoginRequest(email=email, password=password).SerializeToString()

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, LOGIN)

    async def call(self, stub: Any, state: Any) -> None:
        await stub(state, timeout=self.timeout_s)
