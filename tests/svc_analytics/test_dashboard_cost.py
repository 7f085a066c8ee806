"""The dashboard costs a constant number of SQL statements (issue 14 item 2): counted in the
driver, by a psycopg cursor class that records every execute (SQLAlchemy's statements and
those run on psycopg's own connection alike), for an instructor with 1 course and with 200, on
a read model seeded by svc_analytics.seed, with the cache missing (a fresh generation each
time)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
from sqlalchemy import event

from devstack.stack import Endpoints
from elearn.analytics.v1 import analytics_service_pb2 as pb
from mesh.cache import open_cache
from mesh.context import Caller
from mesh.db import Database
from svc_analytics.dashboard import DASHBOARD, Dashboards
from svc_analytics.models import SCHEMA
from svc_analytics.seed import Plan, seed
from svc_analytics.settings import AnalyticsSettings

STATEMENTS: list[str] = []


class CountingCursor(psycopg.AsyncCursor[Any]):
    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> CountingCursor:
        STATEMENTS.append(str(query))
        return await super().execute(query, *args, **kwargs)

    async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        STATEMENTS.append(str(query))
        await super().executemany(query, *args, **kwargs)


def counting(_dbapi: Any, _record: Any, proxy: Any) -> None:
    proxy.driver_connection.cursor_factory = CountingCursor


async def test_dashboard_statements_do_not_grow_with_course_count(stack: Endpoints) -> None:
    settings = AnalyticsSettings(database_url=stack.database_url, cache_url=stack.cache_url)
    tag = uuid.uuid4().hex[:8]
    async with Database.open(settings, SCHEMA) as db, open_cache(settings) as cache:
        one = await seed(db, Plan(f"{tag}-1", 1, 1, 20, 100, 5), quiet=True)
        many = await seed(db, Plan(f"{tag}-200", 200, 200, 2_000, 1_000, 5), quiet=True)
        dashboards = Dashboards(db, cache)
        # Every checkout from here on hands out connections whose cursors count.
        event.listen(db.engine.sync_engine, "checkout", counting)
        counts = {}
        for instructor, courses in ((one, 1), (many, 200)):
            await cache.bump(DASHBOARD, str(instructor))  # a cold cache: the query runs
            caller = Caller(str(instructor), frozenset({"instructor"}), "", time.time() + 60)
            STATEMENTS.clear()
            data = await dashboards.instructor(caller, instructor, 500, "")
            page = pb.ListInstructorCourseStatsResponse.FromString(data)
            assert len(page.courses) == courses
            assert sum(c.enrollment_count for c in page.courses) > 0
            counts[courses] = len(STATEMENTS)
        event.remove(db.engine.sync_engine, "checkout", counting)
    # At least one: the cache missed, so the statements counted are the whole read.
    assert 1 <= counts[1] == counts[200] <= 2, counts
