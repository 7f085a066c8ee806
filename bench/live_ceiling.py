"""The raw ceiling beside the live fan-out benchmark: a bare grpc.aio server-streaming handler
(no auth, no Valkey, no NATS) that writes one pre-serialized broadcast to every stream at a
fixed rate, measured by the same receivers as the service (bench.live_receivers).

    python -m bench.live_ceiling --participants 1000 --rate 10 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from bench.live_receivers_go import make_receivers
from bench.schedule import ticks
from elearn.live.v1 import live_service_pb2 as pb
from svc_live import wire


class _Stream:
    __slots__ = ("parts", "wake")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.wake = asyncio.Event()


async def _serve(
    port: int, rate: float, seconds: float, begin: Any, out: Any, grouped: bool, bound: int
) -> None:
    # Client connection (peer) -> its streams. Grouped, a tick wakes one connection's streams
    # back to back (as svc_live's feed pushes); else in the order a set gives.
    groups: dict[str, dict[_Stream, None]] = {}

    def streams() -> list[_Stream]:
        every = [s for group in groups.values() for s in group]
        return every if grouped else list(set(every))

    # `bound` writes in flight at most, as svc_live's write turns allow under pressure.
    slots = asyncio.Semaphore(bound) if bound else None

    async def subscribe(_request: bytes, context: Any) -> AsyncIterator[bytes]:
        stream = _Stream()
        peer = context.peer()
        groups.setdefault(peer, {})[stream] = None
        welcome = pb.ServerEvent(session_id="s", welcome=pb.Welcome(connection_id="c"))
        yield wire.frame(welcome.SerializeToString())
        try:
            while True:
                await stream.wake.wait()
                if slots is not None:
                    await slots.acquire()
                stream.wake.clear()
                parts, stream.parts = stream.parts, []
                try:
                    yield b"".join(parts)
                finally:
                    # Resumed: grpc finished the write.
                    if slots is not None:
                        slots.release()
        finally:
            groups[peer].pop(stream, None)

    handler = grpc.unary_stream_rpc_method_handler(
        subscribe, request_deserializer=None, response_serializer=None
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "elearn.live.v1.LiveService", {"Subscribe": handler}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    # Every server starts once the receivers hold all their streams (the parent says so).
    await asyncio.to_thread(begin.wait)
    held = len(streams())
    start_cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    n = 0
    order = streams()
    async for n, due_ns in ticks(rate, seconds):
        # Stamped with the planned time, not the moment the loop got to it: a saturated
        # server's late ticks count against it, as the service's late answers to Send do.
        event = pb.ServerEvent(sequence=n, broadcast=pb.Broadcast(text=f"t{due_ns}"))
        data = wire.frame(event.SerializeToString())
        for stream in order:
            stream.parts.append(data)
            stream.wake.set()
    window = time.monotonic() - start
    end_cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end_cpu.ru_utime + end_cpu.ru_stime) - (start_cpu.ru_utime + start_cpu.ru_stime)
    out.put({"broadcasts": n, "streams": held, "server_cpu_cores": round(cpu / window, 2)})
    await asyncio.sleep(2)
    await server.stop(1)


def _server_main(
    port: int, rate: float, seconds: float, begin: Any, out: Any, grouped: bool, bound: int
) -> None:
    import uvloop

    uvloop.run(_serve(port, rate, seconds, begin, out, grouped, bound))


def measure_ceiling(
    participants: int,
    rate: float,
    duration: float,
    *,
    processes: int = 2,
    channels: int = 8,
    receiver: str = "python",
    servers: int = 1,
    grouped: bool = False,
    bound: int = 0,
) -> dict[str, Any]:
    """The bare handler's run: `servers` processes (as many as the service's replicas, so the
    two compare at equal processes) sharing the streams, the same receivers as the service's;
    each broadcasts at `rate` to its own streams, `grouped` by client connection or not, with
    at most `bound` writes in flight (0: unbounded)."""
    ports = []
    for _ in range(servers):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    begin = ctx.Event()
    procs = [
        ctx.Process(target=_server_main, args=(port, rate, duration, begin, out, grouped, bound))
        for port in ports
    ]
    for proc in procs:
        proc.start()
    try:
        receivers = make_receivers(
            receiver,
            [f"127.0.0.1:{port}" for port in ports],
            [(f"token-{i}", "s") for i in range(participants)],
            processes=processes,
            channels=channels,
            seconds=duration + 30,
        )
        receivers.start()
        opened = receivers.wait_open()
        begin.set()
        served = [out.get(timeout=duration + 200) for _ in procs]
        result = receivers.finish()
    finally:
        begin.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    result.update(
        broadcasts=min(s["broadcasts"] for s in served),
        # Each server ticks on its own clock: one may send a broadcast more than another.
        expected_deliveries=sum(s["broadcasts"] * s["streams"] for s in served),
        server_cpu_cores=round(sum(s["server_cpu_cores"] for s in served), 2),
        servers=servers,
        grouped=grouped,
        bound=bound,
        participants=participants,
        opened=opened,
        receiver=receivers.kind,
    )
    result["deliveries_per_s"] = round(result["deliveries"] / duration, 1)
    result["server_cpu_us_per_delivery"] = _per_delivery(
        result["server_cpu_cores"] * duration, result["deliveries"]
    )
    return result


def _per_delivery(cpu_seconds: float, deliveries: int) -> float:
    return round(cpu_seconds * 1e6 / deliveries, 1) if deliveries else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--receiver", choices=("python", "go"), default="python")
    parser.add_argument("--servers", type=int, default=1, help="bare server processes")
    parser.add_argument(
        "--grouped", action="store_true", help="write each connection's streams together"
    )
    parser.add_argument(
        "--bound", type=int, default=0,
        help="at most this many writes in flight (svc_live's write turns allow 64)",
    )  # fmt: skip
    args = parser.parse_args()
    result = measure_ceiling(
        args.participants,
        args.rate,
        args.duration,
        processes=args.processes,
        channels=args.channels,
        receiver=args.receiver,
        servers=args.servers,
        grouped=args.grouped,
        bound=args.bound,
    )
    result["pid"] = os.getpid()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
