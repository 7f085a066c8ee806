"""Real servers, started once per test run: Postgres, Valkey, NATS, the five services and
Envoy, through the same launcher `make up` uses, on free ports in a temporary folder."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import psycopg
import pytest
import pytest_asyncio

from devstack.stack import Endpoints, Stack, StackConfig
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc
from mesh.db import libpq_url
from tests.people import People, people_of

# Exam-start admission sheds above this many queued grading jobs; low in tests so that
# tests/svc_quiz/test_queued_grading.py can pass it with a burst (the default is 5000).
os.environ.setdefault("QUIZ_ADMISSION_MAX_BACKLOG", "300")
# The encoder's scheduling group at full weight, as ffmpeg was before it had a niced one: on a
# box the suites (ours and any run beside them) keep busy, a group niced to 19 barely runs and
# the transcode tests would only wait. The niced group itself is tested in
# tests/unit/test_video_media_tools.py and measured by `python -m bench.video isolation`.
os.environ.setdefault("TRANSCODER_GROUP_NICE", "0")
# Live pods write in turns from the start, four streams at a time, so that every live test
# (slow readers, drains, resumes, three replicas) runs through the bounded path that a pod
# takes only under pressure otherwise (svc_live.turns; the switch has unit tests).
os.environ.setdefault("LIVE_WRITE_PRESS_LAG_SECONDS", "0")
os.environ.setdefault("LIVE_WRITES_IN_FLIGHT", "4")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    config = StackConfig.for_tests(tmp_path_factory.mktemp("stack"))
    running = Stack(config)
    try:
        yield running.start(timeout=float(os.environ.get("ELEARN_TEST_STACK_TIMEOUT", "180")))
    finally:
        running.stop()


@pytest.fixture(scope="session")
def sql(stack: Endpoints) -> Iterator[psycopg.Connection]:
    """A plain autocommit connection for asserting what is (and is not) in the database."""
    url = libpq_url(stack.database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def people(stack: Endpoints) -> People:
    return people_of(stack)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def course_stub(stack: Endpoints) -> AsyncIterator[CourseServiceStub]:
    async with grpc.aio.insecure_channel(stack.services["course"][0]) as channel:
        yield CourseServiceStub(channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def user_channel(stack: Endpoints) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(stack.services["user"][0]) as channel:
        yield channel


@pytest.fixture(scope="session")
def users(user_channel: grpc.aio.Channel) -> user_service_pb2_grpc.UserServiceStub:
    return user_service_pb2_grpc.UserServiceStub(user_channel)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Account:
    user: pb.User
    password: str
    tokens: pb.TokenPair

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        return bearer(self.tokens.access_token)


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@test.local"


async def make_account(
    stub: user_service_pb2_grpc.UserServiceStub, tag: str = "user", password: str = "correct horse"
) -> Account:
    email = unique_email(tag)
    registered = await stub.Register(
        pb.RegisterRequest(
            email=email, password=password, display_name=tag.title(),
            idempotency_key=uuid.uuid4().hex,
        )
    )  # fmt: skip
    login = await stub.Login(pb.LoginRequest(email=email, password=password))
    return Account(registered.user, password, login.tokens)


@pytest_asyncio.fixture(loop_scope="session")
async def account(users: user_service_pb2_grpc.UserServiceStub) -> Account:
    return await make_account(users)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def admin(stack: Endpoints, users: user_service_pb2_grpc.UserServiceStub) -> Account:
    login = await users.Login(
        pb.LoginRequest(email=stack.admin_email, password=stack.admin_password)
    )
    return Account(login.user, stack.admin_password, login.tokens)
