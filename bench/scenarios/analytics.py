"""analytics: AnalyticsService/ListInstructorCourseStats for an instructor with 200 courses over
a seeded read model (issue 14: p95 under 20 ms with 1,000,000 enrollments and 5,000,000 graded
answers), warm and cold cache apart.

Seed first: `python -m svc_analytics.seed` (full size by default; `--tag bench`); the seed tag
the scenarios read is BENCH_ANALYTICS_TAG (default `bench`), so the 10k comparison seeded
with `--tag bench10k` is read with BENCH_ANALYTICS_TAG=bench10k. The admin
reads the bench instructor's dashboard (an admin may read any). `analytics_warm` asks the same
page, so after the first call it is a cache hit until a course's counters change;
`analytics_cold` sends a page token no one sent before on every call (a start key after every
course, so the same 200 rows), which misses the cache each time and runs the query.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from bench.scenarios.base import Scenario, SetupContext, raw_method
from bench.scenarios.catalog import admin_token, user_side
from elearn.analytics.v1 import analytics_service_pb2 as pb
from mesh.pagination import encode_token
from svc_analytics.seed import bench_instructor

DASHBOARD = "/elearn.analytics.v1.AnalyticsService/ListInstructorCourseStats"
AFTER_EVERY_COURSE = "9999-12-31T00:00:00+00:00"


@dataclass
class Caller:
    metadata: tuple[tuple[str, str]]
    instructor: str
    warm: bytes


class AnalyticsWarm(Scenario):
    name = "analytics_warm"
    summary = "AnalyticsService/ListInstructorCourseStats, 200 courses, cached page"
    service = "analytics"
    cold = False

    async def setup(self, ctx: SetupContext) -> Any:
        async with user_side(ctx) as channel:
            token = await admin_token(ctx, channel)
        instructor = str(bench_instructor(os.environ.get("BENCH_ANALYTICS_TAG", "bench")))
        request = pb.ListInstructorCourseStatsRequest(instructor_id=instructor, page_size=200)
        probe = await raw_method(ctx.channel, DASHBOARD)(
            request.SerializeToString(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=self.timeout_s,
        )
        if len(pb.ListInstructorCourseStatsResponse.FromString(probe).courses) < 200:
            raise ConnectionError(
                "the bench instructor has fewer than 200 courses: run python -m svc_analytics.seed"
            )
        return token, instructor

    def make_state(self, data: Any, caller: int) -> Caller:
        token, instructor = data
        request = pb.ListInstructorCourseStatsRequest(instructor_id=instructor, page_size=200)
        return Caller((("authorization", f"Bearer {token}"),), instructor,
                      request.SerializeToString())  # fmt: skip

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, DASHBOARD)

    async def call(self, stub: Any, state: Caller) -> None:
        await stub(self.request(state), metadata=state.metadata, timeout=self.timeout_s)

    def request(self, state: Caller) -> bytes:
        return state.warm


class AnalyticsCold(AnalyticsWarm):
    name = "analytics_cold"
    summary = "AnalyticsService/ListInstructorCourseStats, 200 courses, cache missed every call"

    def request(self, state: Caller) -> bytes:
        # Building it costs a few µs of the driver's CPU; it must differ on every call.
        token = encode_token([AFTER_EVERY_COURSE, str(uuid.uuid4())])
        return pb.ListInstructorCourseStatsRequest(
            instructor_id=state.instructor, page_size=200, page_token=token
        ).SerializeToString()
