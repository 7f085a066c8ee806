"""A stand-in for a platform service, so the launcher can be tested before (and apart from) the
real services: it reads the same environment, answers the standard gRPC health service, and
drains on SIGTERM like mesh's servers do.

    python fake_service.py <name> [--exit-at-start | --never-ready]

On start it prints one JSON line with the environment it received, for the tests to check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

REPORTED = (
    "DATABASE_URL",
    "CACHE_URL",
    "STATE_URL",
    "NATS_URL",
    "ELEARN_JWT_PUBLIC_KEY_FILE",
    "ELEARN_INSTANCE",
    "ELEARN_LOG_LEVEL",
    "USER_JWT_PRIVATE_KEY_FILE",
    "USER_ADMIN_EMAIL",
    "USER_ADMIN_PASSWORD",
)


async def serve(name: str, *, never_ready: bool) -> None:
    prefix = name.upper().replace("-", "_")
    host = os.environ[f"{prefix}_GRPC_HOST"]
    port = int(os.environ[f"{prefix}_GRPC_PORT"])
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    status = (
        health_pb2.HealthCheckResponse.NOT_SERVING
        if never_ready
        else health_pb2.HealthCheckResponse.SERVING
    )
    await health_servicer.set("", status)
    env = {key: os.environ.get(key) for key in REPORTED}
    env["GRPC_PORT"] = str(port)
    env["METRICS_PORT"] = os.environ[f"{prefix}_METRICS_PORT"]
    print("FAKE_ENV " + json.dumps(env), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(2.0)
    print("stopped gracefully", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--exit-at-start", action="store_true")
    parser.add_argument("--never-ready", action="store_true")
    args = parser.parse_args()
    if args.exit_at_start:
        print(f"{args.name}: failing on purpose", flush=True)
        return 3
    asyncio.run(serve(args.name, never_ready=args.never_ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
