"""Session life cycle, participant cap, Subscribe + Send, and bad input on the real service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest

from elearn.course.v1.course_service_pb2_grpc import CourseServiceStub
from elearn.live.v1 import live_service_pb2 as pb
from elearn.live.v1.live_service_pb2_grpc import LiveServiceStub
from svc_live.participant import Participant
from tests.grpc_assert import fails_with, violated_fields
from tests.mesh.polling import eventually
from tests.people import People
from tests.svc_live.conftest import new_course, open_room, schedule

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_schedule_start_list_end(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    host = people.make("instructor")
    course_id, (student,) = await new_course(course_stub, host, people, 1)
    session = await schedule(live, host, course_id)
    assert session.state == pb.SESSION_STATE_SCHEDULED
    assert session.instructor_id == host.user_id and session.max_participants == 1000
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        Participant(live_channel, student.token, session.session_id).open(),
        "not started",
    )
    started = await live.StartSession(
        pb.StartSessionRequest(session_id=session.session_id), metadata=host.auth
    )
    assert started.session.state == pb.SESSION_STATE_LIVE and started.session.last_sequence == 1
    listed = await live.ListSessions(
        pb.ListSessionsRequest(course_id=course_id), metadata=student.auth
    )
    assert [s.session_id for s in listed.sessions] == [session.session_id]
    ended = await live.EndSession(
        pb.EndSessionRequest(session_id=session.session_id), metadata=host.auth
    )
    assert ended.session.state == pb.SESSION_STATE_ENDED
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        live.StartSession(
            pb.StartSessionRequest(session_id=session.session_id), metadata=host.auth
        ),
        "ended",
    )


async def test_students_cannot_schedule_and_bad_input_names_fields(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People
) -> None:
    host = people.make("instructor")
    course_id, (student,) = await new_course(course_stub, host, people, 1)
    await fails_with(
        grpc.StatusCode.PERMISSION_DENIED, schedule(live, student, course_id), "instructor"
    )
    error = await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        live.ScheduleSession(
            pb.ScheduleSessionRequest(session=pb.LiveSession(course_id="nope")),
            metadata=host.auth,
        ),
    )
    assert {"session.course_id", "session.title", "idempotency_key"} <= set(violated_fields(error))
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        live.GetSession(
            pb.GetSessionRequest(session_id="00000000-0000-0000-0000-000000000000"),
            metadata=host.auth,
        ),
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        schedule(live, host, course_id, max_participants=1001),
        "at most 1000",
    )
    await fails_with(grpc.StatusCode.UNAUTHENTICATED, live.GetSession(pb.GetSessionRequest()))


async def test_a_full_session_refuses_the_next_participant(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=2, max_participants=1)
    sid = room.session.session_id
    first = Participant(live_channel, room.students[0].token, sid)
    await first.open()
    second = Participant(live_channel, room.students[1].token, sid)
    await fails_with(grpc.StatusCode.RESOURCE_EXHAUSTED, second.open(), "full")
    await first.close()


async def test_presence_counts_people_not_connections(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    # A cap of 2 people: the first student's second tab must not take the other's seat.
    room = await open_room(live, course_stub, people, students=2, max_participants=2)
    sid = room.session.session_id
    tab1 = Participant(live_channel, room.students[0].token, sid)
    tab2 = Participant(live_channel, room.students[0].token, sid)
    assert (await tab1.open()).participant_count == 1
    assert (await tab2.open()).participant_count == 1
    other = Participant(live_channel, room.students[1].token, sid)
    assert (await other.open()).participant_count == 2

    def count_is(expected: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            got = await live.GetSession(
                pb.GetSessionRequest(session_id=sid), metadata=room.instructor.auth
            )
            return got.session.participant_count == expected

        return check

    # A user stays present while any of their connections is open.
    await tab1.close()
    await other.close()
    await eventually(count_is(1), within=10.0)
    await tab2.close()
    await eventually(count_is(0), within=10.0)


async def test_subscribe_and_send_share_the_stream_core(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People
) -> None:
    room = await open_room(live, course_stub, people, students=1)
    sid = room.session.session_id
    student = room.students[0]
    stream = live.Subscribe(pb.SubscribeRequest(session_id=sid), metadata=student.auth)
    events = stream.__aiter__()
    welcome = (await anext(events)).events[0].welcome
    assert welcome.connection_id and welcome.role == pb.PARTICIPANT_ROLE_STUDENT
    sent = await live.Send(
        pb.SendRequest(
            session_id=sid,
            connection_id=welcome.connection_id,
            event=pb.ClientEvent(heartbeat=pb.Heartbeat()),
        ),
        metadata=student.auth,
    )
    assert sent.ack.accepted
    chat = await live.Send(
        pb.SendRequest(
            session_id=sid,
            event=pb.ClientEvent(client_event_id="c1", chat=pb.SendChat(text="hi")),
        ),
        metadata=student.auth,
    )
    seen = []
    while chat.ack.sequence not in seen:
        message = await anext(events)
        seen.extend(e.sequence for e in message.events if e.HasField("chat"))
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        live.Send(
            pb.SendRequest(session_id=sid, event=pb.ClientEvent(heartbeat=pb.Heartbeat())),
            metadata=student.auth,
        ),
        "connection_id",
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        live.Send(
            pb.SendRequest(session_id=sid, event=pb.ClientEvent(hello=pb.Hello())),
            metadata=student.auth,
        ),
        "hello",
    )
    stream.cancel()


async def test_welcome_gives_late_joiners_polls_questions_and_hands(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=2)
    sid = room.session.session_id
    host = Participant(live_channel, room.instructor.token, sid)
    early = Participant(live_channel, room.students[0].token, sid)
    await host.open()
    await early.open()
    host.send(pb.ClientEvent(open_poll=pb.OpenPoll(question="Ready?", options=["yes", "no"])))
    poll_id = (await host.until(("poll_opened",))).poll_opened.poll_id
    early.send(pb.ClientEvent(poll_vote=pb.VotePoll(poll_id=poll_id, option_ids=["1"])))
    early.send(pb.ClientEvent(question=pb.AskQuestion(text="What is a monad?")))
    early.send(pb.ClientEvent(raise_hand=pb.RaiseHand(raised=True)))
    question = (await host.until(("question",))).question
    await host.until(("hand_raised",))
    host.send(pb.ClientEvent(upvote=pb.UpvoteQuestion(question_id=question.question_id)))
    assert (await host.until(("question",))).question.vote_count == 1
    tally = (await host.until(("poll_tally",))).poll_tally
    assert [o.vote_count for o in tally.options] == [1, 0]
    late = Participant(live_channel, room.students[1].token, sid)
    welcome = await late.open()
    assert [p.poll_id for p in welcome.open_polls] == [poll_id]
    assert welcome.open_polls[0].voter_count == 1
    assert [(q.text, q.vote_count) for q in welcome.questions] == [("What is a monad?", 1)]
    assert [h.user_id for h in welcome.raised_hands] == [room.students[0].user_id]
    assert welcome.participant_count == 3
    host.send(
        pb.ClientEvent(raise_hand=pb.RaiseHand(raised=False, user_id=room.students[0].user_id))
    )
    lowered = (await late.until(("hand_raised",))).hand_raised
    assert lowered.user_id == room.students[0].user_id and not lowered.raised
    for p in (host, early, late):
        await p.close()


async def test_a_poll_with_a_duration_closes_itself_with_final_tallies(
    live: LiveServiceStub, course_stub: CourseServiceStub, people: People,
    live_channel: grpc.aio.Channel,
) -> None:  # fmt: skip
    room = await open_room(live, course_stub, people, students=1)
    sid = room.session.session_id
    host = Participant(live_channel, room.instructor.token, sid)
    student = Participant(live_channel, room.students[0].token, sid)
    await host.open()
    await student.open()
    spec = pb.OpenPoll(question="Quick?", options=["a", "b"], allow_multiple=True)
    spec.duration.FromMilliseconds(1500)
    host.send(pb.ClientEvent(open_poll=spec))
    poll_id = (await student.until(("poll_opened",))).poll_opened.poll_id
    student.send(pb.ClientEvent(poll_vote=pb.VotePoll(poll_id=poll_id, option_ids=["1", "2"])))
    assert (await student.until(("ack",))).ack.accepted
    closed = (await student.until(("poll_closed",), within=10.0)).poll_closed
    assert closed.poll_id == poll_id and not closed.open
    assert [o.vote_count for o in closed.options] == [1, 1] and closed.voter_count == 1
    student.send(pb.ClientEvent(poll_vote=pb.VotePoll(poll_id=poll_id, option_ids=["1"])))
    late = (await student.until(("ack",))).ack
    assert not late.accepted and late.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    for p in (host, student):
        await p.close()
