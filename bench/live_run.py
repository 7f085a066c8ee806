"""The live fan-out run shared by the live scenario, the scale series and the loss run: open
sessions on a running stack, hold their Subscribe streams in receiver processes
(bench.live_receivers), broadcast at a fixed rate per session, and measure the replicas' CPU
and memory over the window."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import psutil
from google.protobuf.timestamp_pb2 import Timestamp

from bench.live_receivers_go import make_receivers
from bench.schedule import ticks
from devstack.runstate import Endpoints
from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1.live_service_pb2_grpc import LiveServiceStub
from svc_live.participant import Participant
from svc_user.tokens import AccessTokens, load_private_key


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def open_sessions(
    endpoints: Endpoints, participants: int, sessions: int = 1
) -> tuple[list[str], str, list[str]]:
    """A course, its instructor, `participants` enrolled students and `sessions` live sessions
    (the scale series' sessions of 1,000 share the students: presence is per session)."""
    signer = AccessTokens(load_private_key(endpoints.jwt_private_key_file), 3600)

    def mint(*roles: str) -> tuple[str, str]:
        user = str(uuid.uuid4())
        return user, signer.mint(user, ["student", *roles], session_id=str(uuid.uuid4()))

    _, host = mint("instructor")
    async with grpc.aio.insecure_channel(endpoints.services["course"][0]) as cc:
        courses = CourseServiceStub(cc)
        course = await courses.CreateCourse(
            course_pb.CreateCourseRequest(
                course=course_pb.Course(
                    title="Bench live", description="bench", category="bench",
                    level=course_pb.COURSE_LEVEL_BEGINNER, language="en",
                ),
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=_auth(host),
        )  # fmt: skip
        course_id = course.course.course_id
        await courses.PublishCourse(
            course_pb.PublishCourseRequest(course_id=course_id), metadata=_auth(host)
        )
        tokens = [mint()[1] for _ in range(participants)]
        for start in range(0, participants, 50):
            await asyncio.gather(
                *(
                    courses.Enroll(
                        course_pb.EnrollRequest(
                            course_id=course_id, idempotency_key=uuid.uuid4().hex
                        ),
                        metadata=_auth(t),
                    )
                    for t in tokens[start : start + 50]
                )
            )
    async with grpc.aio.insecure_channel(endpoints.services["live"][0]) as lc:
        live = LiveServiceStub(lc)
        when = Timestamp()
        when.GetCurrentTime()
        ids = []
        for _ in range(sessions):
            session = await live.ScheduleSession(
                pb.ScheduleSessionRequest(
                    session=pb.LiveSession(
                        course_id=course_id, title="bench", scheduled_start_time=when
                    ),
                    idempotency_key=uuid.uuid4().hex,
                ),
                metadata=_auth(host),
            )
            sid = session.session.session_id
            await live.StartSession(pb.StartSessionRequest(session_id=sid), metadata=_auth(host))
            ids.append(sid)
    return ids, host, tokens


async def end_sessions(endpoints: Endpoints, host: str, sessions: list[str]) -> None:
    """End the run's sessions: the platform caps live sessions (100), and runs add up."""
    async with grpc.aio.insecure_channel(endpoints.services["live"][0]) as lc:
        live = LiveServiceStub(lc)
        for sid in sessions:
            # Already ended, or the replica went away: nothing to clean.
            with contextlib.suppress(grpc.aio.AioRpcError):
                await live.EndSession(pb.EndSessionRequest(session_id=sid), metadata=_auth(host))


async def broadcast(
    target: str,
    host: str,
    sid: str,
    rate: float,
    seconds: float,
    rpc_ms: list[float],
    connections: int = 1,
) -> int:
    """Broadcast `t<ns>` at `rate` per second for `seconds` (open loop: a slow answer does not
    delay the next send); returns how many were accepted. Each Send's round trip as the
    client saw it goes to `rpc_ms`: beside the server's own handling time (the interceptor's
    grpc_server_handling_seconds) it tells a Send that waited before its handler ran.
    `connections` > 1 spreads the Sends round-robin over that many TCP connections."""
    # A local subchannel pool each, or the channels would share one connection.
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, connections))
    ]
    stubs = [LiveServiceStub(c) for c in channels]
    try:

        async def send_one(n: int, due_ns: int) -> bool:
            live = stubs[n % len(stubs)]
            event = pb.ClientEvent(
                client_event_id=uuid.uuid4().hex,
                broadcast=pb.SendBroadcast(text=f"t{due_ns}"),
            )
            began = time.perf_counter()
            try:
                await live.Send(pb.SendRequest(session_id=sid, event=event), metadata=_auth(host))
            except grpc.aio.AioRpcError:
                return False
            finally:
                rpc_ms.append((time.perf_counter() - began) * 1000)
            return True

        sends = [asyncio.create_task(send_one(n, due)) async for n, due in ticks(rate, seconds)]
        return sum(await asyncio.gather(*sends))
    finally:
        for channel in channels:
            await channel.close()


async def broadcast_joined(
    target: str, host: str, sid: str, rate: float, seconds: float, rpc_ms: list[float]
) -> int:
    """`broadcast` through the instructor's own Join stream (the native client's way): each
    broadcast is a message on a call already open, not a new call, and its Ack comes back on
    the stream; `rpc_ms` gets send-to-ack. Returns how many were accepted."""
    sent_at: dict[str, float] = {}
    accepted = 0
    done = asyncio.Event()
    async with grpc.aio.insecure_channel(target) as channel:
        instructor = Participant(channel, host, sid)
        await instructor.open()

        async def read_acks() -> None:
            nonlocal accepted
            while not (done.is_set() and not sent_at):
                event = await instructor.next_event(within=seconds + 30)
                began = (
                    sent_at.pop(event.ack.client_event_id, None) if event.HasField("ack") else None
                )
                if began is not None:
                    rpc_ms.append((time.perf_counter() - began) * 1000)
                    accepted += event.ack.accepted

        reader = asyncio.create_task(read_acks())
        async for _, due_ns in ticks(rate, seconds):
            ce_id = uuid.uuid4().hex
            sent_at[ce_id] = time.perf_counter()
            text = f"t{due_ns}"
            instructor.send(
                pb.ClientEvent(client_event_id=ce_id, broadcast=pb.SendBroadcast(text=text))
            )
        done.set()
        # The last acks, with a deadline: a broadcast never acknowledged counts as not sent.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, timeout=30)
        reader.cancel()
        await instructor.close()
    return accepted


def _live_processes(endpoints: Endpoints) -> list[psutil.Process]:
    """The live replicas' processes (found by their listening ports)."""
    ports = {int(a.rsplit(":", 1)[1]) for a in endpoints.services["live"]}
    return [
        psutil.Process(conn.pid)
        for conn in psutil.net_connections("tcp")
        if conn.status == "LISTEN" and conn.laddr.port in ports and conn.pid
    ]


def _service_cpu(endpoints: Endpoints) -> dict[int, float]:
    """CPU seconds so far of each live replica."""
    return {p.pid: p.cpu_times().user + p.cpu_times().system for p in _live_processes(endpoints)}


def _service_rss(endpoints: Endpoints) -> int:
    return sum(p.memory_info().rss for p in _live_processes(endpoints))


async def broadcast_all(target: str, host: str, sessions: list[str], rate: float,
                        seconds: float, rpc_ms: list[float],
                        connections: int = 1, via: str = "send") -> int:  # fmt: skip
    """Every session's broadcaster at once, from one process; `via` "send" (unary Send, the
    browsers' way) or "join" (the instructor's Join stream)."""
    if via == "join":
        runs = [broadcast_joined(target, host, s, rate, seconds, rpc_ms) for s in sessions]
    else:
        runs = [broadcast(target, host, s, rate, seconds, rpc_ms, connections) for s in sessions]
    return sum(await asyncio.gather(*runs))


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        f"p{q}": round(ordered[min(len(ordered) - 1, len(ordered) * q // 100)], 1)
        for q in (50, 95, 99)
    }


def live_processes(endpoints: Endpoints, targets: list[str] | None = None) -> list[psutil.Process]:
    """The live replicas' processes (found by their listening ports), or those of `targets`."""
    ports = {int(a.rsplit(":", 1)[1]) for a in (targets or endpoints.services["live"])}
    return [
        psutil.Process(conn.pid)
        for conn in psutil.net_connections("tcp")
        if conn.status == "LISTEN" and conn.laddr.port in ports and conn.pid
    ]


def _target_pids(targets: list[str]) -> dict[int, int]:
    """Target index -> the pid listening on it (per-replica CPU beside per-replica latency)."""
    ports = {int(a.rsplit(":", 1)[1]): i for i, a in enumerate(targets)}
    return {
        ports[conn.laddr.port]: conn.pid
        for conn in psutil.net_connections("tcp")
        if conn.status == "LISTEN" and conn.laddr.port in ports and conn.pid
    }


def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        with _gone():
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def _rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with _gone():
            total += p.memory_info().rss
    return total


class _gone:
    """psutil calls on a replica killed mid-run (the loss run) count as nothing."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *_: Any) -> bool:
        return kind is not None and issubclass(kind, psutil.Error)


@dataclass
class FanoutPlan:
    participants: int  # per session
    sessions: int = 1
    rate: float = 10.0  # broadcasts per second per session
    duration: float = 20.0
    processes: int = 2
    channels: int = 8
    # The replicas the streams are spread over (default: all); sends go to the first.
    targets: list[str] | None = None
    resume: bool = False
    # Where the instructor sends (default: the first target).
    send_target: str | None = None
    # TCP connections the instructor's Sends are spread over (bench/README.md: one
    # connection's Sends to a busy fan-out replica queue behind each other).
    send_connections: int = 1
    # "send": the instructor broadcasts with unary Send calls; "join": on its Join stream.
    send_via: str = "send"
    # "python" or "go" (bench.live_receivers_go; python when the binary is not built).
    receiver: str = "python"


Opened = tuple[list[str], str, list[str]]


def measure(
    endpoints: Endpoints, plan: FanoutPlan, during: Any = None, cohort: Opened | None = None
) -> dict[str, Any]:
    """One fan-out run; `during(start_monotonic)` runs in a thread beside the broadcast (the
    loss run's kill) and its return value is kept under "during". `cohort` reuses sessions
    from `open_sessions` (the scale series' steps); else the run opens and ends its own."""
    own = cohort is None
    if cohort is None:
        cohort = asyncio.run(open_sessions(endpoints, plan.participants, plan.sessions))
    sids, host, tokens = cohort
    sids = sids[: plan.sessions]
    targets = plan.targets or endpoints.services["live"]
    procs = live_processes(endpoints, targets)
    # Broadcasting on its own Join stream, the instructor is one of the session's participants
    # (the cap is 1,000 people): the receivers hold one stream fewer.
    held = plan.participants - (1 if plan.send_via == "join" else 0)
    streams = [(t, sid) for sid in sids for t in tokens[:held]]
    receivers = make_receivers(
        plan.receiver, targets, streams,
        processes=plan.processes, channels=plan.channels, seconds=plan.duration + 30,
        resume=plan.resume,
    )  # fmt: skip
    rss_before = _rss(procs)
    receivers.start()
    opened = receivers.wait_open()
    rss_per_stream = (_rss(procs) - rss_before) / max(1, opened)
    before = _cpu(procs)
    start = time.monotonic()

    rpc_ms: list[float] = []

    async def send_and_watch() -> tuple[int, Any]:
        side = asyncio.to_thread(during, start) if during else asyncio.sleep(0)
        send_target = plan.send_target or targets[0]
        sent, seen = await asyncio.gather(
            broadcast_all(
                send_target,
                host,
                sids,
                plan.rate,
                plan.duration,
                rpc_ms,
                plan.send_connections,
                plan.send_via,
            ),
            side,
        )
        return sent, seen

    sent, seen = asyncio.run(send_and_watch())
    window = time.monotonic() - start
    after = _cpu(procs)
    result = receivers.finish()
    if own:
        asyncio.run(end_sessions(endpoints, host, sids))
    cpu_s = sum(after[p] - before.get(p, 0) for p in after)
    # Each replica's CPU per delivery it made: with several replicas, the one taking the Sends
    # against the ones fed by NATS.
    for index, pid in _target_pids(targets).items():
        pod = result["by_target"].get(index)
        if pod and pid in after:
            pod["cpu_us_per_delivery"] = round(
                (after[pid] - before.get(pid, 0)) * 1e6 / max(1, pod["deliveries"]), 1
            )
    expected = sent * held
    result.update(
        participants=plan.participants * plan.sessions,
        sessions=plan.sessions,
        rate=plan.rate,
        duration=plan.duration,
        opened=opened,
        broadcasts=sent,
        expected_deliveries=expected,
        deliveries_per_s=round(result["deliveries"] / window, 1),
        replicas=len(targets),
        receiver=receivers.kind,
        service_cpu_cores=round(cpu_s / window, 2),
        service_cpu_us_per_delivery=round(cpu_s * 1e6 / max(1, result["deliveries"]), 1),
        service_kib_per_stream=round(rss_per_stream / 1024, 1),
        during=seen,
        send_rpc_ms=_percentiles(rpc_ms),
    )
    return result
