"""Scenario state without a server: refresh chains rotate and repair, requests are prebuilt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from bench.scenarios.login import Login
from bench.scenarios.refresh import Chain, NoChain, Refresh
from bench.scenarios.whoami import WhoAmI
from elearn.user.v1 import user_service_pb2 as pb


class FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="fake")


@dataclass
class FakeUserStub:
    """Rotates tokens like svc_user: each refresh token works once."""

    live: set[str] = field(default_factory=lambda: {"r0"})
    issued: int = 0
    presented: list[str] = field(default_factory=list)
    fail_next: bool = False

    def _pair(self) -> pb.TokenPair:
        self.issued += 1
        token = f"r{self.issued}"
        self.live.add(token)
        return pb.TokenPair(access_token=f"a{self.issued}", refresh_token=token)

    async def Refresh(self, request: pb.RefreshRequest, **options: Any) -> Any:
        self.presented.append(request.refresh_token)
        if self.fail_next:
            self.fail_next = False
            raise FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED)
        if request.refresh_token not in self.live:
            raise FakeRpcError(grpc.StatusCode.UNAUTHENTICATED)
        self.live.discard(request.refresh_token)
        return pb.RefreshResponse(tokens=self._pair())

    async def Login(self, request: pb.LoginRequest, **options: Any) -> Any:
        return pb.LoginResponse(tokens=self._pair())


async def test_refresh_presents_the_token_it_was_last_given() -> None:
    scenario, stub = Refresh(), FakeUserStub()
    chain = scenario.make_state([("u@bench.local", "pw", "r0")], 0)

    for _ in range(3):
        await scenario.prepare(stub, chain)
        await scenario.call(stub, chain)

    assert stub.presented == ["r0", "r1", "r2"]
    assert chain.refresh_token == "r3"
    assert scenario.counters([chain]) == {"relogins": 0}


async def test_a_failed_refresh_drops_the_chain_and_prepare_logs_in_again() -> None:
    scenario, stub = Refresh(), FakeUserStub(fail_next=True)
    chain = Chain("u@bench.local", "pw", "r0")

    with pytest.raises(grpc.aio.AioRpcError):
        await scenario.call(stub, chain)
    assert chain.refresh_token is None
    with pytest.raises(NoChain):
        await scenario.call(stub, chain)

    await scenario.prepare(stub, chain)
    await scenario.call(stub, chain)

    assert chain.relogins == 1
    assert stub.presented == ["r0", "r1"]
    assert scenario.counters([chain, Chain("v", "pw", "x")]) == {"relogins": 1}


def test_each_refresh_caller_gets_its_own_chain() -> None:
    data = [(f"u{i}@bench.local", "pw", f"r{i}") for i in range(4)]

    chains = [Refresh().make_state(data, caller) for caller in range(4)]

    assert [c.refresh_token for c in chains] == ["r0", "r1", "r2", "r3"]


def test_login_requests_are_serialized_once_per_caller() -> None:
    data = [("a@bench.local", "pw1"), ("b@bench.local", "pw2")]

    states = [Login().make_state(data, caller) for caller in range(3)]

    emails = [pb.LoginRequest.FromString(s).email for s in states]
    assert emails == ["a@bench.local", "b@bench.local", "a@bench.local"]


def test_whoami_metadata_carries_a_bearer_token() -> None:
    state = WhoAmI().make_state(["tok0", "tok1"], 3)

    assert state == (("authorization", "Bearer tok1"),)
