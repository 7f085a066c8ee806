"""health: grpc.health.v1.Health/Check through the same path as the workflows — the ceiling.

An empty request answered from memory: what one call costs through Envoy (or straight to the
replicas) with no work behind it. Every other scenario's throughput is reported as a ratio of
this one, measured in the same run on the same box, so the ratio survives a noisy machine.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from bench.scenarios.base import Scenario, UnexpectedResponse, raw_method

CHECK = "/grpc.health.v1.Health/Check"
REQUEST = health_pb2.HealthCheckRequest(service="").SerializeToString()
SERVING = health_pb2.HealthCheckResponse(
    status=health_pb2.HealthCheckResponse.SERVING
).SerializeToString()


class NotServing(UnexpectedResponse):
    pass


class Health(Scenario):
    name = "health"
    summary = "grpc.health.v1.Health/Check (the ceiling: no work behind the call)"

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, CHECK)

    async def call(self, stub: Any, state: Any) -> None:
        if await stub(REQUEST, timeout=self.timeout_s) != SERVING:
            raise NotServing
