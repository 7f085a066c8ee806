"""Receiving side of the live fan-out benchmarks: worker processes that hold many Subscribe
streams over a few channels and measure each broadcast's send-to-receipt latency.

A broadcast's text is `t<time.time_ns() at send>`; sender and receivers share the box's clock.
Each stream checks that sequences arrive with no gap (the EVENTS_DROPPED notice is counted
apart). Used by `python -m bench.scenarios.live` (the service) and `python -m bench.live_ceiling`
(a bare grpc.aio handler), so both are measured by the same code.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.histogram import clamp_us, encode, merge, new_histogram
from elearn.live.v1 import live_service_pb2 as pb

SUBSCRIBE = "/elearn.live.v1.LiveService/Subscribe"
DROPPED = pb.NOTICE_KIND_EVENTS_DROPPED


@dataclass
class Tally:
    deliveries: int = 0
    gaps: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    cpu_seconds: float = 0.0
    histogram: str = ""


def _worker(
    targets: list[str],
    tokens: list[str],
    session_id: str,
    channels: int,
    seconds: float,
    ready: Any,
    results: Any,
) -> None:
    import uvloop

    results.put(uvloop.run(_receive(targets, tokens, session_id, channels, seconds, ready)))


async def _receive(
    targets: list[str],
    tokens: list[str],
    session_id: str,
    channels: int,
    seconds: float,
    ready: Any,
) -> Tally:
    tally = Tally()
    hist = new_histogram()
    chans = [grpc.aio.insecure_channel(targets[i % len(targets)]) for i in range(channels)]
    opened = 0
    all_open = asyncio.Event()
    request = pb.SubscribeRequest(session_id=session_id)

    # Joins are spread out as real ones are (a join costs the service an enrollment check):
    # at most this many opening at once per process, and a refused one retries.
    opening = asyncio.Semaphore(64)

    async def one(index: int, token: str) -> None:
        nonlocal opened
        method = chans[index % len(chans)].unary_stream(SUBSCRIBE)
        last = 0
        for attempt in range(5):
            await opening.acquire()
            welcomed = False
            call = method(
                request.SerializeToString(),
                metadata=(("authorization", f"Bearer {token}"),),
                # A channel still connecting (the server just started) waits instead of failing.
                wait_for_ready=True,
            )
            try:
                async for raw in call:
                    for event in pb.SubscribeResponse.FromString(raw).events:
                        kind = event.WhichOneof("kind")
                        if kind == "welcome":
                            last = event.welcome.last_sequence
                            welcomed = True
                            opening.release()
                            opened += 1
                            if opened == len(tokens):
                                all_open.set()
                            continue
                        if event.sequence:
                            if last and event.sequence != last + 1:
                                tally.gaps += event.sequence - last - 1
                            last = event.sequence
                        if kind == "broadcast" and event.broadcast.text.startswith("t"):
                            sent = int(event.broadcast.text[1:])
                            hist.record_value(clamp_us((time.time_ns() - sent) // 1000))
                            tally.deliveries += 1
                        elif kind == "notice" and event.notice.kind == DROPPED:
                            tally.dropped += event.notice.dropped_count
                return
            except grpc.aio.AioRpcError as exc:
                if not welcomed:
                    opening.release()
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE and not welcomed and attempt < 4:
                    tally.errors["RETRIED_OPEN"] = tally.errors.get("RETRIED_OPEN", 0) + 1
                    await asyncio.sleep(0.5)
                    continue
                if code != grpc.StatusCode.CANCELLED:
                    tally.errors[code.name] = tally.errors.get(code.name, 0) + 1
                return

    tasks = [asyncio.create_task(one(i, t)) for i, t in enumerate(tokens)]
    try:
        async with asyncio.timeout(120):
            await all_open.wait()
    except TimeoutError:
        tally.errors["NOT_ALL_OPEN"] = len(tokens) - opened
    tally.streams = opened
    ready.put(opened)
    start = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.wait(tasks, timeout=seconds)
    end = resource.getrusage(resource.RUSAGE_SELF)
    tally.cpu_seconds = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in chans:
        await channel.close()
    tally.histogram = encode(hist)
    return tally


class Receivers:
    """P worker processes sharing `tokens` (one stream each) over `channels` per process."""

    def __init__(
        self,
        targets: list[str],
        tokens: list[str],
        session_id: str,
        *,
        processes: int,
        channels: int,
        seconds: float,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready = ctx.Queue()
        self._results = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_worker,
                args=(
                    targets,
                    tokens[p::processes],
                    session_id,
                    channels,
                    seconds,
                    self._ready,
                    self._results,
                ),
                daemon=True,
            )
            for p in range(processes)
        ]

    def start(self) -> None:
        for proc in self._procs:
            proc.start()

    def wait_open(self, timeout: float = 180.0) -> int:
        return sum(self._ready.get(timeout=timeout) for _ in self._procs)

    def finish(self, timeout: float = 300.0) -> dict[str, Any]:
        tallies: list[Tally] = [self._results.get(timeout=timeout) for _ in self._procs]
        for proc in self._procs:
            proc.join(timeout=10)
        hist = merge(t.histogram for t in tallies)
        errors: dict[str, int] = {}
        for t in tallies:
            for k, v in t.errors.items():
                errors[k] = errors.get(k, 0) + v
        return {
            "streams": sum(t.streams for t in tallies),
            "deliveries": sum(t.deliveries for t in tallies),
            "gaps": sum(t.gaps for t in tallies),
            "dropped": sum(t.dropped for t in tallies),
            "errors": errors,
            "receiver_cpu_seconds": round(sum(t.cpu_seconds for t in tallies), 2),
            "p50_ms": hist.get_value_at_percentile(50) / 1000,
            "p95_ms": hist.get_value_at_percentile(95) / 1000,
            "p99_ms": hist.get_value_at_percentile(99) / 1000,
            "max_ms": hist.get_max_value() / 1000,
        }
