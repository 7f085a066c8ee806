"""The periodic idle refresh survives a failed pass: while another transaction holds the
courses table locked, its statements time out; the loop logs that and, once the lock is gone,
completes a pass instead of having ended (a background task that raises stops the service)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from sqlalchemy import text

from devstack.stack import Endpoints
from mesh.db import Database
from svc_analytics.ingest import Ingest
from svc_analytics.models import SCHEMA
from svc_analytics.settings import AnalyticsSettings
from tests.mesh.polling import eventually

FAILED = "idle refresh failed; retried at the next interval"


async def test_a_failed_idle_refresh_is_retried_not_fatal(
    stack: Endpoints, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="svc_analytics.ingest")
    base = AnalyticsSettings(database_url=stack.database_url)
    short = base.model_copy(update={"db_statement_timeout_ms": 200})

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "svc_analytics.ingest"]

    async with Database.open(base, SCHEMA) as owner, Database.open(short, SCHEMA) as db:
        refresher: asyncio.Task[None] | None = None
        try:
            async with owner.transaction() as conn:
                await conn.execute(text("LOCK TABLE courses IN ACCESS EXCLUSIVE MODE"))
                refresher = asyncio.create_task(Ingest(db, None).refresh_idle_forever(0.05))

                async def failed_twice() -> bool:
                    return messages().count(FAILED) >= 2

                await eventually(failed_twice, within=20)
                assert not refresher.done()
                assert "idle refresh" not in messages()

            async def refreshed() -> bool:
                return "idle refresh" in messages()

            await eventually(refreshed, within=30)
            assert not refresher.done()
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
