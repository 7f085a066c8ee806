"""Three live replicas on a private stack, with small limits so they can be reached: events
sent through every pod reach every participant on every pod (direct and through the Envoy
edge) in order, exactly once, with no gap; the platform-wide live-session cap; a slow reader
is cut off without slowing the others; presence recovers after a replica is killed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from devstack.runstate import Endpoints
from devstack.stack import Stack, StackConfig
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1.live_service_pb2_grpc import LiveServiceStub
from svc_live.participant import Participant
from tests.grpc_assert import fails_with
from tests.mesh.polling import eventually
from tests.people import People, people_of
from tests.svc_live.conftest import Room, new_course, open_room, schedule

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMITS = {
    "LIVE_MAX_LIVE_SESSIONS": "3",
    "LIVE_BROADCAST_RATE_PER_SECOND": "100000",
    "LIVE_BROADCAST_BURST": "100000",
    "LIVE_STUDENT_RATE_PER_SECOND": "100000",
    "LIVE_STUDENT_BURST": "100000",
    "LIVE_STREAM_BUFFER_EVENTS": "64",
    "LIVE_STREAM_BUFFER_BYTES": "200000",
    "LIVE_SLOW_CONSUMER_STRIKES": "1",
    "LIVE_PRESENCE_TTL_SECONDS": "3",
    "LIVE_PRESENCE_INTERVAL_SECONDS": "0.5",
    "LIVE_HISTORY_SIZE": "200",
    "LIVE_HEARTBEAT_TIMEOUT_SECONDS": "3",
    "LIVE_MAX_STREAMS_PER_POD": "12",
}
BEAT = 0.5


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Endpoints]]:
    replicas = {"user": 1, "course": 1, "live": 3, "quiz": 0, "analytics": 0}
    tmp: Path = tmp_path_factory.mktemp("trio")
    with pytest.MonkeyPatch.context() as env:
        for name, value in LIMITS.items():
            env.setenv(name, value)
        running = Stack(StackConfig.for_tests(tmp, replicas=replicas))
        try:
            endpoints = running.start(timeout=180)
            yield running, endpoints
        finally:
            running.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channels(trio: tuple[Stack, Endpoints]) -> AsyncIterator[list[grpc.aio.Channel]]:
    _, endpoints = trio
    assert endpoints.edge is not None
    targets = [*endpoints.services["live"], endpoints.edge]
    opened = [grpc.aio.insecure_channel(t) for t in targets]
    yield opened
    for channel in opened:
        await channel.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def courses(trio: tuple[Stack, Endpoints]) -> AsyncIterator[CourseServiceStub]:
    async with grpc.aio.insecure_channel(trio[1].services["course"][0]) as channel:
        yield CourseServiceStub(channel)


@pytest.fixture(scope="module")
def crowd(trio: tuple[Stack, Endpoints]) -> People:
    return people_of(trio[1])


async def test_events_sent_through_every_pod_reach_everyone_in_order_once(
    channels: list[grpc.aio.Channel], courses: CourseServiceStub, crowd: People
) -> None:
    stubs = [LiveServiceStub(c) for c in channels]
    room = await open_room(stubs[0], courses, crowd, students=8)
    sid = room.session.session_id
    # Two students on each replica and two through the edge.
    participants = [
        Participant(channels[i // 2], s.token, sid, heartbeat_seconds=BEAT)
        for i, s in enumerate(room.students)
    ]
    for p in participants:
        await p.open()
    sends = []
    for round_ in range(10):
        for i, stub in enumerate(stubs):
            who = room.instructor if round_ % 2 else room.students[i]
            kind = "broadcast" if who is room.instructor else "chat"
            event = pb.ClientEvent(client_event_id=uuid.uuid4().hex)
            getattr(event, kind).text = f"{round_}-{i}"
            sends.append(stub.Send(pb.SendRequest(session_id=sid, event=event), metadata=who.auth))
    acks = await asyncio.gather(*sends)
    sent = sorted(a.ack.sequence for a in acks)
    assert len(set(sent)) == len(sent) == 40
    for p in participants:
        got: list[int] = []
        while not got or got[-1] < sent[-1]:
            event = await p.next_event()
            if event.sequence:
                got.append(event.sequence)
        start = p.welcome.last_sequence + 1 if p.welcome else 1
        assert got == list(range(start, sent[-1] + 1)), "out of order, duplicated or missing"
        assert set(sent) <= set(got)
    for p in participants:
        await p.close()
    await _end(stubs[0], room)


async def _end(live: LiveServiceStub, room: Room) -> None:
    await live.EndSession(
        pb.EndSessionRequest(session_id=room.session.session_id), metadata=room.instructor.auth
    )


async def test_the_platform_caps_concurrent_live_sessions(
    channels: list[grpc.aio.Channel], courses: CourseServiceStub, crowd: People
) -> None:
    live = LiveServiceStub(channels[1])
    rooms = [await open_room(live, courses, crowd, students=0) for _ in range(3)]
    host = crowd.make("instructor")
    course_id, _ = await new_course(courses, host, crowd, 0)
    extra = await schedule(live, host, course_id)
    await fails_with(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        live.StartSession(pb.StartSessionRequest(session_id=extra.session_id), metadata=host.auth),
        "at most 3 live sessions",
    )
    await _end(live, rooms[0])
    started = await live.StartSession(
        pb.StartSessionRequest(session_id=extra.session_id), metadata=host.auth
    )
    assert started.session.state == pb.SESSION_STATE_LIVE
    await live.EndSession(pb.EndSessionRequest(session_id=extra.session_id), metadata=host.auth)
    for room in rooms[1:]:
        await _end(live, room)


async def test_a_full_pod_refuses_more_streams(
    channels: list[grpc.aio.Channel], courses: CourseServiceStub, crowd: People
) -> None:
    live = LiveServiceStub(channels[0])
    room = await open_room(live, courses, crowd, students=13)
    sid = room.session.session_id
    joined: list[Participant] = []
    refused = None
    for student in room.students:
        p = Participant(channels[0], student.token, sid, heartbeat_seconds=BEAT)
        try:
            await p.open()
        except grpc.aio.AioRpcError as exc:
            refused = exc
            break
        joined.append(p)
    assert refused is not None, "13 streams on a pod limited to 12"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 12 streams" in (refused.details() or "")
    # Another replica still takes the participant.
    elsewhere = Participant(channels[1], room.students[-1].token, sid, heartbeat_seconds=BEAT)
    await elsewhere.open()
    for p in (*joined, elsewhere):
        await p.close()
    await _end(live, room)


# The slow reader's connection keeps HTTP/2's first 64 KiB window: with window growth on
# (BDP probing) its transport could take in all 6 MB sent below without the app reading a
# byte, and then the pod's buffer never overflowed (a flaky pass or a hang, by timing).
TIGHT_WINDOW = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65_535))


async def test_a_slow_reader_is_cut_off_without_slowing_the_session(
    trio: tuple[Stack, Endpoints],
    channels: list[grpc.aio.Channel],
    courses: CourseServiceStub,
    crowd: People,
) -> None:
    live = LiveServiceStub(channels[0])
    room = await open_room(live, courses, crowd, students=1)
    sid = room.session.session_id
    tight = grpc.aio.insecure_channel(trio[1].services["live"][2], options=TIGHT_WINDOW)
    slow = Participant(tight, room.students[0].token, sid, heartbeat_seconds=BEAT)
    await slow.open()
    text = "x" * 4000
    for start in range(0, 1500, 100):
        await asyncio.gather(
            *(
                live.Send(
                    pb.SendRequest(
                        session_id=sid,
                        event=pb.ClientEvent(
                            client_event_id=f"s{i}", broadcast=pb.SendBroadcast(text=text)
                        ),
                    ),
                    metadata=room.instructor.auth,
                )
                for i in range(start, start + 100)
            )
        )
    kinds: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        for _ in range(5000):
            event = await slow.next_event()
            if event.WhichOneof("kind") == "notice":
                kinds.append(event.notice.kind)
    assert closed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert pb.NOTICE_KIND_EVENTS_DROPPED in kinds
    assert kinds[-1] == pb.NOTICE_KIND_SLOW_CONSUMER
    await tight.close()
    await _end(live, room)


async def _broadcast(live: LiveServiceStub, room: Room, texts: list[str]) -> list[int]:
    acks = [
        await live.Send(
            pb.SendRequest(
                session_id=room.session.session_id,
                event=pb.ClientEvent(
                    client_event_id=uuid.uuid4().hex, broadcast=pb.SendBroadcast(text=t)
                ),
            ),
            metadata=room.instructor.auth,
        )
        for t in texts
    ]
    return [a.ack.sequence for a in acks]


async def test_resume_past_the_history_window_says_so(
    channels: list[grpc.aio.Channel], courses: CourseServiceStub, crowd: People
) -> None:
    live = LiveServiceStub(channels[0])
    room = await open_room(live, courses, crowd, students=1)
    sent = await _broadcast(live, room, [f"m{i}" for i in range(230)])
    late = Participant(channels[1], room.students[0].token, room.session.session_id,
                       resume_after=1, heartbeat_seconds=BEAT)  # fmt: skip
    welcome = await late.open()
    assert welcome.resumed
    notice = await late.until(("notice",))
    assert notice.notice.kind == pb.NOTICE_KIND_RESUME_GAP_TOO_OLD
    oldest = notice.notice.oldest_available_sequence
    # LIVE_HISTORY_SIZE=200 events are kept (presence events count too).
    assert sent[-1] - 200 < oldest <= sent[-30]
    got = []
    while not got or got[-1] < sent[-1]:
        event = await late.next_event()
        if event.sequence:
            got.append(event.sequence)
    assert got == list(range(oldest, sent[-1] + 1))
    await late.close()
    await _end(live, room)


async def test_a_stream_without_heartbeats_is_closed(
    channels: list[grpc.aio.Channel], courses: CourseServiceStub, crowd: People
) -> None:
    live = LiveServiceStub(channels[0])
    room = await open_room(live, courses, crowd, students=1)
    silent = Participant(channels[0], room.students[0].token, room.session.session_id)
    await silent.open()
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        for _ in range(1000):
            await silent.next_event(within=15.0)
    assert closed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "heartbeat" in (closed.value.details() or "")
    await _end(live, room)


async def test_a_draining_pod_sends_its_streams_elsewhere_without_loss(
    trio: tuple[Stack, Endpoints],
    channels: list[grpc.aio.Channel],
    courses: CourseServiceStub,
    crowd: People,
) -> None:
    live = LiveServiceStub(channels[0])
    room = await open_room(live, courses, crowd, students=1)
    sid = room.session.session_id
    student = room.students[0]
    moving = Participant(channels[1], student.token, sid, heartbeat_seconds=BEAT)
    await moving.open()
    before = await _broadcast(live, room, ["one", "two"])
    while moving.last_sequence < before[-1]:
        await moving.next_event()
    trio[0].process("live", 1).send_stop()
    kinds = []
    with pytest.raises(StopAsyncIteration):
        for _ in range(1000):
            kinds.append((await moving.next_event()).notice.kind)
    assert pb.NOTICE_KIND_RECONNECT_ELSEWHERE in kinds
    # Meanwhile the session goes on; the client resumes through the edge.
    during = await _broadcast(live, room, ["three", "four"])
    again = await _reconnect(channels[3], student.token, sid, moving.last_sequence)
    got = []
    while not got or got[-1] < during[-1]:
        event = await again.next_event()
        if event.sequence:
            got.append(event.sequence)
    assert got == list(range(moving.last_sequence + 1, during[-1] + 1))
    await again.close()
    await _end(live, room)


async def _reconnect(
    channel: grpc.aio.Channel, token: str, sid: str, resume_after: int
) -> Participant:
    """What a client does after RECONNECT_ELSEWHERE: retry through the edge, which stops
    routing to the draining pod within its health-check interval."""
    for _ in range(50):
        again = Participant(channel, token, sid, resume_after=resume_after, heartbeat_seconds=BEAT)
        try:
            await again.open()
            return again
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            await asyncio.sleep(0.2)  # the client's back-off, as the notice's retry_after says
    raise AssertionError("could not reconnect through the edge")


async def test_presence_recovers_after_a_replica_is_killed(
    trio: tuple[Stack, Endpoints],
    channels: list[grpc.aio.Channel],
    courses: CourseServiceStub,
    crowd: People,
) -> None:
    live = LiveServiceStub(channels[0])
    room = await open_room(live, courses, crowd, students=2)
    sid = room.session.session_id
    survivor = Participant(channels[0], room.students[0].token, sid, heartbeat_seconds=BEAT)
    doomed = Participant(channels[2], room.students[1].token, sid, heartbeat_seconds=BEAT)
    await survivor.open()
    await doomed.open()

    async def count() -> int:
        got = await live.GetSession(
            pb.GetSessionRequest(session_id=sid), metadata=room.instructor.auth
        )
        return got.session.participant_count

    assert await count() == 2
    trio[0].kill("live", 2)

    async def one_left() -> bool:
        return await count() == 1

    # The killed pod's entries expire after LIVE_PRESENCE_TTL_SECONDS (3 s here, 60 by default).
    await eventually(one_left, within=10.0, every=0.2)
    event = await survivor.until(("presence",), within=10.0)
    while event.presence.participant_count != 1:
        event = await survivor.until(("presence",), within=10.0)
    await survivor.close()
