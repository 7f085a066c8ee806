"""The course service starts on its real migrations: schema, extensions, search trigger."""

from __future__ import annotations

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.runstate import Endpoints

TABLES = {"courses", "videos", "enrollments", "video_progress", "outbox", "search_terms"}


def test_course_schema_has_its_tables(sql: psycopg.Connection) -> None:
    rows = sql.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'courses'"
    ).fetchall()
    assert {r[0] for r in rows} >= TABLES


def test_search_extensions_are_installed(sql: psycopg.Connection) -> None:
    rows = sql.execute("SELECT extname FROM pg_extension").fetchall()
    assert {"pg_trgm", "unaccent"} <= {r[0] for r in rows}


async def test_course_service_reports_serving(stack: Endpoints) -> None:
    async with grpc.aio.insecure_channel(stack.services["course"][0]) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="elearn.course.v1.CourseService")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
