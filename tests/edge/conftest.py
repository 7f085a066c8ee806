"""Session fixtures for the edge tests: one fake UserService and one Envoy in front of it
(tests/edge/harness.py builds both), plus an HTTP client and a gRPC channel to the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from tests.edge.harness import Edge, FakeUserService, fake_user_server, running_edge


@pytest.fixture(scope="session")
async def fake_user() -> AsyncIterator[tuple[FakeUserService, int]]:
    # The methods it leaves out answer UNIMPLEMENTED (the generated base class's behaviour).
    servicer = FakeUserService()  # type: ignore[abstract]
    async with fake_user_server(servicer) as (_, port):
        yield servicer, port


@pytest.fixture(scope="session")
async def edge(
    fake_user: tuple[FakeUserService, int], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Edge]:
    async with running_edge(tmp_path_factory.mktemp("edge"), [fake_user[1]]) as running:
        yield running


@pytest.fixture(scope="session")
async def http(edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="session")
async def channel(edge: Edge) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(edge.target) as ch:
        yield ch
