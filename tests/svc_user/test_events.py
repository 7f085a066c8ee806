"""Registration publishes UserRegistered through the outbox to JetStream."""

from __future__ import annotations

import time

import nats
import psycopg

from devstack.stack import Endpoints
from elearn.events.v1 import user_events_pb2
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from tests.conftest import make_account


async def test_registration_event_reaches_jetstream_and_outbox_drains(
    stack: Endpoints, users: UserServiceStub, sql: psycopg.Connection
) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("elearn.user.user_registered", ordered_consumer=True)
        account = await make_account(users, "evented")
        found = None
        deadline = time.monotonic() + 15
        while found is None and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            except (TimeoutError, nats.errors.TimeoutError):
                break
            event = user_events_pb2.UserRegistered.FromString(msg.data)
            if event.user_id == account.user.user_id:
                found = (event, msg.headers or {})
        assert found is not None, "UserRegistered was not published"
        event, headers = found
        assert event.email == account.user.email
        assert headers.get("Nats-Msg-Id") == event.event_id
    finally:
        await nc.close()
    row = sql.execute(
        "SELECT count(*) FROM users.outbox WHERE event_id = %s", (event.event_id,)
    ).fetchone()
    assert row is not None and row[0] == 0, "published events leave the outbox"
