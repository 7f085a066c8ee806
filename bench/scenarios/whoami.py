"""whoami: UserService/GetMe with a valid access token — the cheapest signed-in read.

The service verifies the token (cached once verified) and reads one row or its cache entry, so
this should come close to the health ceiling; the distance between them is the price of auth
plus one read.
"""

from __future__ import annotations

from typing import Any

import grpc

from bench.scenarios.base import Scenario, SetupContext, raw_method
from elearn.user.v1 import user_service_pb2 as pb

GET_ME = "/elearn.user.v1.UserService/GetMe"
REQUEST = pb.GetMeRequest().SerializeToString()


class WhoAmI(Scenario):
    name = "whoami"
    summary = "UserService/GetMe with a cached access token (auth + one read)"

    async def setup(self, ctx: SetupContext) -> Any:
        sessions = await ctx.accounts.ensure_sessions(ctx.channel, ctx.callers)
        return [s.access_token for s in sessions]

    def make_state(self, data: Any, caller: int) -> Any:
        return (("authorization", f"Bearer {data[caller % len(data)]}"),)

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, GET_ME)

    async def call(self, stub: Any, state: Any) -> None:
        await stub(REQUEST, metadata=state, timeout=self.timeout_s)
