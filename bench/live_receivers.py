"""Receiving side of the live fan-out benchmarks: worker processes that hold many Subscribe
streams over a few channels and measure each broadcast's send-to-receipt latency.

A broadcast's text is `t<time.time_ns() at send>`; sender and receivers share the box's clock.
Each stream checks that sequences arrive with no gap (the EVENTS_DROPPED notice is counted
apart). Latency is also kept per target (replica), so a cross-pod run shows the NATS hop:
streams on the replica that took the send against streams on the others. With `resume`, a
stream whose replica went away reconnects to the next one with `resume_after_sequence` and
notes when it was caught up: when it holds every event up to the session's last sequence at
the moment it was welcomed back (the replay of what it missed is complete).

Used by `python -m bench --scenario live` (the service), `python -m bench.live_ceiling` (a bare
grpc.aio handler), the scale series and the loss run, so all are measured by the same code.
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
    duplicates: int = 0
    streams: int = 0
    cpu_seconds: float = 0.0
    histogram: str = ""
    # Send to the server's publish (ServerEvent.server_time, set when the event is sequenced):
    # splits the latency into the send path and the fan-out. Empty for the bare handler.
    to_publish: str = ""
    by_target: dict[int, str] = field(default_factory=dict)
    reconnects: int = 0
    # time_ns at which each resumed stream was caught up (see the module docstring).
    caught_up_ns: list[int] = field(default_factory=list)
    # Streams cut (their replica went away), each resumed on another.
    lost: int = 0


def _worker(
    targets: list[str],
    streams: list[tuple[str, str]],
    channels: int,
    seconds: float,
    ready: Any,
    results: Any,
    resume: bool,
    stop: Any,
) -> None:
    import uvloop

    results.put(uvloop.run(_receive(targets, streams, channels, seconds, ready, resume, stop)))


async def _receive(
    targets: list[str],
    streams: list[tuple[str, str]],
    channels: int,
    seconds: float,
    ready: Any,
    resume: bool = False,
    stop: Any = None,
) -> Tally:
    tally = Tally()
    hist = new_histogram()
    publish = new_histogram()
    per_target = [new_histogram() for _ in targets]
    chans = [grpc.aio.insecure_channel(targets[i % len(targets)]) for i in range(channels)]
    opened = 0
    all_open = asyncio.Event()

    # Joins are spread out as real ones are (a join costs the service an enrollment check):
    # at most this many opening at once per process, and a refused one retries.
    opening = asyncio.Semaphore(64)

    async def one(index: int, token: str, session_id: str) -> None:
        nonlocal opened
        channel = index % len(chans)
        last = 0
        down = False
        behind = 0
        for attempt in range(8):
            slot = channel % len(chans)
            thist = per_target[slot % len(targets)]
            method = chans[slot].unary_stream(SUBSCRIBE)
            await opening.acquire()
            welcomed = False
            call = method(
                pb.SubscribeRequest(
                    session_id=session_id, resume_after_sequence=last if down else 0
                ).SerializeToString(),
                metadata=(("authorization", f"Bearer {token}"),),
                # A channel still connecting (the server just started) waits instead of failing.
                wait_for_ready=not down,
            )
            try:
                async for raw in call:
                    for event in pb.SubscribeResponse.FromString(raw).events:
                        kind = event.WhichOneof("kind")
                        if kind == "welcome":
                            welcomed = True
                            opening.release()
                            if down:
                                tally.reconnects += 1
                                # Caught up once it holds what the session had at this welcome.
                                behind = event.welcome.last_sequence
                                if last >= behind:
                                    tally.caught_up_ns.append(time.time_ns())
                                    down = False
                                continue
                            last = event.welcome.last_sequence
                            opened += 1
                            if opened == len(streams):
                                all_open.set()
                            continue
                        if event.sequence:
                            if event.sequence <= last:
                                tally.duplicates += 1
                                continue
                            if last and event.sequence != last + 1:
                                tally.gaps += event.sequence - last - 1
                            last = event.sequence
                            if down and welcomed and last >= behind:
                                tally.caught_up_ns.append(time.time_ns())
                                down = False
                        if kind == "broadcast" and event.broadcast.text.startswith("t"):
                            now = time.time_ns()
                            sent = int(event.broadcast.text[1:])
                            value = clamp_us((now - sent) // 1000)
                            hist.record_value(value)
                            thist.record_value(value)
                            if event.HasField("server_time"):
                                at = event.server_time.seconds * 10**9 + event.server_time.nanos
                                publish.record_value(clamp_us((at - sent) // 1000))
                            tally.deliveries += 1
                        elif kind == "notice" and event.notice.kind == DROPPED:
                            tally.dropped += event.notice.dropped_count
                if not resume:
                    return
                code = grpc.StatusCode.UNAVAILABLE
            except grpc.aio.AioRpcError as exc:
                if not welcomed:
                    opening.release()
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE and not welcomed and attempt < 4:
                    tally.errors["RETRIED_OPEN"] = tally.errors.get("RETRIED_OPEN", 0) + 1
                    if resume and down:
                        channel += 1
                    await asyncio.sleep(0.5 if not down else 0.05)
                    continue
            if resume and code == grpc.StatusCode.UNAVAILABLE and last:
                # The replica went away: resume on another, the cut streams spread over the
                # survivors as a balancer would spread them (not all onto the next one).
                if not down:
                    down = True
                    tally.lost += 1
                channel += 1 + index % max(1, len(targets) - 1)
                continue
            if code != grpc.StatusCode.CANCELLED:
                tally.errors[code.name] = tally.errors.get(code.name, 0) + 1
            return

    tasks = [asyncio.create_task(one(i, t, s)) for i, (t, s) in enumerate(streams)]
    try:
        async with asyncio.timeout(120):
            await all_open.wait()
    except TimeoutError:
        tally.errors["NOT_ALL_OPEN"] = len(streams) - opened
    tally.streams = opened
    ready.put(opened)
    start = resource.getrusage(resource.RUSAGE_SELF)
    await _until_done(tasks, seconds, stop, tally)
    end = resource.getrusage(resource.RUSAGE_SELF)
    tally.cpu_seconds = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in chans:
        await channel.close()
    tally.histogram = encode(hist)
    tally.to_publish = encode(publish)
    tally.by_target = {i: encode(h) for i, h in enumerate(per_target)}
    return tally


async def _until_done(tasks: list[Any], seconds: float, stop: Any, tally: Tally) -> None:
    """Until every stream ended or `seconds` passed; once the sender is done (`stop` set),
    until deliveries stayed quiet for a second, so a lagging delivery is still measured."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    seen, quiet_since = -1, loop.time()
    while loop.time() < deadline and not all(t.done() for t in tasks):
        await asyncio.sleep(0.25)
        if tally.deliveries != seen:
            seen, quiet_since = tally.deliveries, loop.time()
        elif stop is not None and stop.is_set() and loop.time() - quiet_since >= 1.0:
            return


class Receivers:
    """P worker processes sharing `streams` ((token, session id), one stream each) over
    `channels` per process."""

    kind = "python"

    def __init__(
        self,
        targets: list[str],
        streams: list[tuple[str, str]],
        *,
        processes: int,
        channels: int,
        seconds: float,
        resume: bool = False,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready = ctx.Queue()
        self._stop = ctx.Event()
        self._results = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_worker,
                args=(
                    targets,
                    streams[p::processes],
                    channels,
                    seconds,
                    self._ready,
                    self._results,
                    resume,
                    self._stop,
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
        """Call once the sender is done: the workers stop after a quiet second."""
        self._stop.set()
        tallies: list[Tally] = [self._results.get(timeout=timeout) for _ in self._procs]
        for proc in self._procs:
            proc.join(timeout=10)
        return summarize(tallies)


def summarize(tallies: list[Tally]) -> dict[str, Any]:
    """The receivers' tallies as one result (the Python and the Go receivers alike)."""
    hist = merge(t.histogram for t in tallies)
    publish = merge(t.to_publish for t in tallies)
    errors: dict[str, int] = {}
    for t in tallies:
        for k, v in t.errors.items():
            errors[k] = errors.get(k, 0) + v
    by_target = {}
    for index in sorted({i for t in tallies for i in t.by_target}):
        h = merge(t.by_target[index] for t in tallies if index in t.by_target)
        if h.get_total_count():
            by_target[index] = {
                "deliveries": h.get_total_count(),
                **{f"p{q}_ms": h.get_value_at_percentile(q) / 1000 for q in (50, 95, 99)},
            }
    return {
        "streams": sum(t.streams for t in tallies),
        "deliveries": sum(t.deliveries for t in tallies),
        "gaps": sum(t.gaps for t in tallies),
        "duplicates": sum(t.duplicates for t in tallies),
        "dropped": sum(t.dropped for t in tallies),
        "errors": errors,
        "receiver_cpu_seconds": round(sum(t.cpu_seconds for t in tallies), 2),
        "receiver_cpu_us_per_delivery": round(
            sum(t.cpu_seconds for t in tallies) * 1e6 / max(1, sum(t.deliveries for t in tallies)),
            1,
        ),
        "send_to_publish_ms": {
            f"p{q}": publish.get_value_at_percentile(q) / 1000 for q in (50, 95, 99)
        },
        "p50_ms": hist.get_value_at_percentile(50) / 1000,
        "p95_ms": hist.get_value_at_percentile(95) / 1000,
        "p99_ms": hist.get_value_at_percentile(99) / 1000,
        "max_ms": hist.get_max_value() / 1000,
        "by_target": by_target,
        "resumed_streams": sum(t.lost for t in tallies),
        "reconnects": sum(t.reconnects for t in tallies),
        "caught_up_ns": sorted(n for t in tallies for n in t.caught_up_ns),
    }
