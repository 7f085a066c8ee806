"""Join / Subscribe / Send on the real live service (one replica, real Valkey, NATS and the
real course service for enrollment)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from elearn.course.v1 import course_service_pb2 as course_pb
from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1.live_service_pb2_grpc import LiveServiceStub
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from svc_live.participant import Participant
from tests.conftest import make_account
from tests.grpc_assert import fails_with
from tests.mesh.polling import eventually
from tests.people import People
from tests.svc_live.conftest import open_room

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_broadcasts_and_chat_reach_every_participant_in_order(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=2)
    sid = room.session.session_id
    host = Participant(live_channel, room.instructor.token, sid)
    a = Participant(live_channel, room.students[0].token, sid)
    b = Participant(live_channel, room.students[1].token, sid)
    welcome = await host.open()
    assert welcome.role == pb.PARTICIPANT_ROLE_INSTRUCTOR
    assert (await a.open()).role == pb.PARTICIPANT_ROLE_STUDENT
    await b.open()
    for i in range(5):
        host.send(pb.ClientEvent(broadcast=pb.SendBroadcast(text=f"slide {i}")))
    a.send(pb.ClientEvent(chat=pb.SendChat(text="hello all")))
    for who in (host, a, b):
        texts, sequences = [], []
        while len(texts) < 6:
            event = await who.until(("broadcast", "chat"))
            texts.append(event.broadcast.text or event.chat.text)
            sequences.append(event.sequence)
        assert [t for t in texts if t.startswith("slide")] == [f"slide {i}" for i in range(5)]
        assert "hello all" in texts
        assert sequences == sorted(sequences) and len(set(sequences)) == 6
    for who in (host, a, b):
        await who.close()


async def test_join_acks_and_refusals(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=1)
    sid = room.session.session_id
    student = Participant(live_channel, room.students[0].token, sid)
    await student.open()
    ce = student.send(pb.ClientEvent(broadcast=pb.SendBroadcast(text="not mine")))
    ack = (await student.until(("ack",))).ack
    assert ack.client_event_id == ce and not ack.accepted
    assert ack.error_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    ce = student.send(pb.ClientEvent(chat=pb.SendChat(text="")))
    ack = (await student.until(("ack",))).ack
    assert not ack.accepted and ack.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    ce = student.send(pb.ClientEvent(question=pb.AskQuestion(text="why?")))
    ack = (await student.until(("ack",))).ack
    assert ack.accepted and ack.sequence > 0 and ack.created_id
    await student.close()


async def test_strangers_and_bad_sessions_are_refused(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=0)
    stranger = Participant(live_channel, people.make().token, room.session.session_id)
    await fails_with(grpc.StatusCode.PERMISSION_DENIED, stranger.open(), "enrolled")
    bad = Participant(live_channel, people.make().token, "not-a-uuid")
    await fails_with(grpc.StatusCode.INVALID_ARGUMENT, bad.open(), "UUID")
    await fails_with(
        grpc.StatusCode.PERMISSION_DENIED,
        live.EndSession(
            pb.EndSessionRequest(session_id=room.session.session_id),
            metadata=people.make("instructor").auth,
        ),
        "instructor",
    )


async def test_resume_replays_missed_events_without_gap_or_duplicate(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=1)
    sid = room.session.session_id
    host = Participant(live_channel, room.instructor.token, sid)
    await host.open()
    student = Participant(live_channel, room.students[0].token, sid)
    await student.open()
    host.send(pb.ClientEvent(broadcast=pb.SendBroadcast(text="before")))
    seen = (await student.until(("broadcast",))).sequence
    await student.close()
    for i in range(4):
        host.send(pb.ClientEvent(broadcast=pb.SendBroadcast(text=f"missed {i}")))
    last_missed = 0
    while last_missed == 0:
        event = await host.until(("broadcast",))
        if event.broadcast.text == "missed 3":
            last_missed = event.sequence
    again = Participant(live_channel, room.students[0].token, sid, resume_after=seen)
    welcome = await again.open()
    assert welcome.resumed
    host.send(pb.ClientEvent(broadcast=pb.SendBroadcast(text="after")))
    sequences, texts = [], []
    while "after" not in texts:
        event = await again.next_event()
        if event.sequence:
            sequences.append(event.sequence)
        if event.WhichOneof("kind") == "broadcast":
            texts.append(event.broadcast.text)
    assert sequences == list(range(seen + 1, sequences[-1] + 1)), "a gap or a duplicate"
    assert texts == ["missed 0", "missed 1", "missed 2", "missed 3", "after"]
    await again.close()
    await host.close()


async def test_send_rate_limit_carries_retry_info(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People
) -> None:
    room = await open_room(live, course_stub, people, students=0)
    sid = room.session.session_id
    refused = None
    for i in range(30):
        try:
            await live.Send(
                pb.SendRequest(
                    session_id=sid,
                    event=pb.ClientEvent(
                        client_event_id=f"b{i}", broadcast=pb.SendBroadcast(text=f"{i}")
                    ),
                ),
                metadata=room.instructor.auth,
            )
        except grpc.aio.AioRpcError as exc:
            refused = exc
            break
    assert refused is not None, "30 broadcasts at once passed a 10/s bucket"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = dict(refused.trailing_metadata() or ()).get("grpc-status-details-bin")
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert 0 < info.retry_delay.ToMilliseconds() <= 1000


async def test_send_repeats_are_acknowledged_not_applied_twice(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People
) -> None:
    room = await open_room(live, course_stub, people, students=0)
    request = pb.SendRequest(
        session_id=room.session.session_id,
        event=pb.ClientEvent(client_event_id="once", broadcast=pb.SendBroadcast(text="x")),
    )
    first = await live.Send(request, metadata=room.instructor.auth)
    second = await live.Send(request, metadata=room.instructor.auth)
    assert first.ack.sequence and second.ack.sequence == first.ack.sequence
    got = await live.GetSession(
        pb.GetSessionRequest(session_id=room.session.session_id), metadata=room.instructor.auth
    )
    assert got.session.last_sequence == first.ack.sequence


async def test_a_repeated_broadcast_or_chat_gets_its_first_ack_back(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People
) -> None:
    # Broadcasts and chat are applied in the sequencer's round trip (Actions._one_trip), which
    # stores the ack itself: a repeat gets the same sequence and created id, applied once.
    room = await open_room(live, course_stub, people, students=1)
    sid = room.session.session_id
    broadcast = pb.ClientEvent(client_event_id="b-once", broadcast=pb.SendBroadcast(text="b"))
    chat = pb.ClientEvent(client_event_id="c-once", chat=pb.SendChat(text="c"))
    acks = []
    for who, event in ((room.instructor, broadcast), (room.students[0], chat)):
        request = pb.SendRequest(session_id=sid, event=event)
        first = (await live.Send(request, metadata=who.auth)).ack
        again = (await live.Send(request, metadata=who.auth)).ack
        assert first.accepted and first.sequence and first.created_id
        assert again == first
        acks.append(first)
    assert acks[1].sequence == acks[0].sequence + 1
    got = await live.GetSession(pb.GetSessionRequest(session_id=sid), metadata=room.instructor.auth)
    assert got.session.last_sequence == acks[1].sequence, "a repeat was applied twice"


async def test_a_rate_limited_broadcast_can_be_retried_with_the_same_id(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People
) -> None:
    room = await open_room(live, course_stub, people, students=0)

    def send(ce_id: str) -> grpc.aio.UnaryUnaryCall:
        event = pb.ClientEvent(client_event_id=ce_id, broadcast=pb.SendBroadcast(text=ce_id))
        request = pb.SendRequest(session_id=room.session.session_id, event=event)
        return live.Send(request, metadata=room.instructor.auth)

    refused = ""
    for i in range(30):
        try:
            await send(f"r{i}")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            refused = f"r{i}"
            break
    assert refused, "30 broadcasts at once passed a 10/s bucket"
    retried: list[pb.Ack] = []

    async def accepted() -> bool:
        try:
            retried.append((await send(refused)).ack)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False
        return True

    # The refusal is not remembered: once the bucket refills the same id is applied.
    await eventually(accepted, within=5.0, every=0.05)
    assert retried[0].accepted and retried[0].sequence > 0 and retried[0].created_id


async def test_a_broadcast_after_the_end_is_refused(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People
) -> None:
    room = await open_room(live, course_stub, people, students=0)
    sid = room.session.session_id
    await live.EndSession(pb.EndSessionRequest(session_id=sid), metadata=room.instructor.auth)
    event = pb.ClientEvent(client_event_id="late", broadcast=pb.SendBroadcast(text="late"))
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        live.Send(pb.SendRequest(session_id=sid, event=event), metadata=room.instructor.auth),
        "not live",
    )


async def test_join_refuses_a_chatty_student_with_retry_after(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=1)
    student = Participant(live_channel, room.students[0].token, room.session.session_id)
    await student.open()
    for i in range(12):
        student.send(pb.ClientEvent(chat=pb.SendChat(text=f"spam {i}")))
    acks = [(await student.until(("ack",))).ack for _ in range(12)]
    refused = [a for a in acks if not a.accepted]
    assert refused, "12 chats at once passed a burst of 5"
    assert refused[0].error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert refused[0].retry_after.ToMilliseconds() > 0
    assert sum(a.accepted for a in acks) >= 5
    await student.close()


async def test_from_oldest_replays_everything_kept(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=1)
    sid = room.session.session_id
    sent = []
    for i in range(3):
        reply = await live.Send(
            pb.SendRequest(
                session_id=sid,
                event=pb.ClientEvent(client_event_id=f"o{i}", broadcast=pb.SendBroadcast(text="x")),
            ),
            metadata=room.instructor.auth,
        )
        sent.append(reply.ack.sequence)
    reader = Participant(live_channel, room.students[0].token, sid, from_oldest=True)
    welcome = await reader.open()
    assert welcome.resumed
    got = []
    while not got or got[-1] < sent[-1]:
        event = await reader.next_event()
        if event.sequence:
            got.append(event.sequence)
    # Sequence 1 is the session's start.
    assert got == list(range(1, sent[-1] + 1))
    await reader.close()


async def test_chat_and_hands_carry_the_display_name(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel, users: UserServiceStub,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=0)
    ada = await make_account(users, "ada")
    await course_stub.Enroll(
        course_pb.EnrollRequest(course_id=room.course_id, idempotency_key=uuid.uuid4().hex),
        metadata=ada.auth,
    )
    student = Participant(live_channel, ada.tokens.access_token, room.session.session_id)
    await student.open()
    student.send(pb.ClientEvent(chat=pb.SendChat(text="hi")))
    chat = (await student.until(("chat",))).chat
    assert (chat.author_id, chat.author_name) == (ada.user.user_id, "Ada")
    student.send(pb.ClientEvent(raise_hand=pb.RaiseHand(raised=True)))
    assert (await student.until(("hand_raised",))).hand_raised.display_name == "Ada"
    await student.close()
