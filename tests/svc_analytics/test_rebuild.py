"""`python -m svc_analytics.rebuild` replays the stream into an emptied read model and gives
the same dashboard figures (issue 14 item 6)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import psycopg

from devstack.stack import Endpoints
from elearn.analytics.v1.analytics_service_pb2_grpc import AnalyticsServiceStub
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from tests.conftest import make_account
from tests.mesh.polling import eventually
from tests.svc_analytics.conftest import Publisher
from tests.svc_analytics.test_read_model import EXPECTED, _figures, _row, _seed


async def test_rebuild_from_the_stream_gives_the_same_figures(
    stack: Endpoints, users: UserServiceStub, analytics: AnalyticsServiceStub, publisher: Publisher,
    sql: psycopg.Connection,
) -> None:  # fmt: skip
    instructor = await make_account(users, "instructor")
    ids = await _seed(publisher, instructor.user.user_id)

    async def settled() -> bool:
        return _figures(await _row(analytics, instructor, ids["course"])) == EXPECTED

    await eventually(settled, within=20)
    env = dict(
        os.environ,
        DATABASE_URL=stack.database_url,
        CACHE_URL=stack.cache_url,
        NATS_URL=stack.nats_url,
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "svc_analytics.rebuild"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rebuilt the analytics read model from" in done.stdout
    # A fresh stream holds everything: no warning about expired history.
    assert "no longer holds everything" not in done.stderr
    assert _figures(await _row(analytics, instructor, ids["course"])) == EXPECTED
    # Read from the table too: a cached page from before the rebuild would prove nothing.
    row = sql.execute(
        "SELECT enrollment_count, completion_count, at_risk_learner_count FROM analytics.courses"
        " WHERE course_id = %s",
        (ids["course"],),
    ).fetchone()
    assert row == (4, 1, 3)
