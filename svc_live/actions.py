"""What participants do: each client event is validated, authorized, rate-limited, applied to
the room state and, when public, sequenced and fanned out. Join, Subscribe and Send share this
one path; refusals are ServiceErrors that Join turns into a rejected Ack and Send into a call
status (a rate limit carries google.rpc.RetryInfo)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from elearn.live.v1 import live_service_pb2 as pb
from mesh.errors import (
    FailedPrecondition,
    FieldErrors,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
)
from svc_live import live_metrics, wire
from svc_live.feed import Hub
from svc_live.room import NOT_LIVE, RATE_LIMITED, REPEATED, Once
from svc_live.settings import LiveSettings

INSTRUCTOR = pb.PARTICIPANT_ROLE_INSTRUCTOR
# Client events that are a rate check and one session event and nothing else: the whole of
# each is one round trip to the state Valkey (Actions._one_trip).
_ONE_TRIP = frozenset({"broadcast", "chat"})


@dataclass
class Actor:
    session_id: str
    user_id: str
    role: int
    connection_id: str = ""
    display_name: str = ""


@dataclass
class Outcome:
    sequence: int = 0
    created_id: str = ""


@dataclass
class Dirty:
    """Coalesced work the pod's ticker publishes at most once per interval."""

    polls: set[tuple[str, str]] = field(default_factory=set)
    presence: set[str] = field(default_factory=set)


def _text(value: str, name: str, limit: int) -> str:
    errors = FieldErrors()
    errors.check(0 < len(value) <= limit, name, f"must be 1 to {limit} characters")
    errors.raise_if_any()
    return value


def _instructor(actor: Actor, what: str) -> None:
    if actor.role != INSTRUCTOR:
        live_metrics.REFUSED.labels("not_instructor").inc()
        raise PermissionDenied(f"only the instructor may {what}")


class Actions:
    def __init__(self, hub: Hub, settings: LiveSettings) -> None:
        self.hub = hub
        self._room = hub.room
        self._s = settings
        self.dirty = Dirty()

    async def apply(self, actor: Actor, event: pb.ClientEvent) -> pb.Ack:
        """Apply one event once: a repeat of a client_event_id is acknowledged again."""
        kind = event.WhichOneof("kind")
        ce_id = event.client_event_id
        if kind is None:
            raise InvalidArgument("the client event has no kind set")
        if kind == "hello":
            raise InvalidArgument("hello is only the first event of a Join stream")
        if len(ce_id) > 64 or (not ce_id and kind != "heartbeat"):
            raise InvalidArgument(
                "client_event_id must be 1 to 64 characters",
                violations=[("client_event_id", "1 to 64 characters")],
            )
        if kind == "heartbeat":
            return pb.Ack(client_event_id=ce_id, accepted=True)
        if kind in _ONE_TRIP:
            return await self._one_trip(actor, ce_id, event)
        ttl = self._s.client_event_dedup_seconds
        earlier = await self._room.remember_client_event(
            actor.session_id, actor.user_id, ce_id, ttl
        )
        if earlier is not None:
            return (
                pb.Ack.FromString(earlier)
                if earlier
                else pb.Ack(client_event_id=ce_id, accepted=True)
            )
        try:
            outcome = await getattr(self, f"_{kind}")(actor, getattr(event, kind))
        except BaseException:
            await self._room.forget_client_event(actor.session_id, actor.user_id, ce_id)
            raise
        ack = pb.Ack(
            client_event_id=ce_id,
            accepted=True,
            sequence=outcome.sequence,
            created_id=outcome.created_id,
        )
        await self._room.store_ack(
            actor.session_id, actor.user_id, ce_id, ack.SerializeToString(), ttl
        )
        return ack

    async def _one_trip(self, actor: Actor, ce_id: str, client_event: pb.ClientEvent) -> pb.Ack:
        """A broadcast or a chat line: its repeat check, rate check, sequencing and stored ack
        are one round trip to the state Valkey (room.Once), then the fan-out."""
        s = self._s
        message_id = str(uuid.uuid4())
        bucket: tuple[str, float, int] | None = None
        if client_event.WhichOneof("kind") == "broadcast":
            what = "broadcast"
            _instructor(actor, "broadcast")
            text = _text(client_event.broadcast.text, "event.broadcast.text", 4000)
            message = pb.Broadcast(message_id=message_id, author_id=actor.user_id, text=text)
            event = pb.ServerEvent(broadcast=message)
            key = self._room.bucket_key(actor.session_id, "broadcast")
            bucket = (key, s.broadcast_rate_per_second, s.broadcast_burst)
        else:
            what = "chat"
            text = _text(client_event.chat.text, "event.chat.text", 1000)
            chat = pb.ChatMessage(
                message_id=message_id,
                author_id=actor.user_id,
                author_name=actor.display_name,
                text=text,
            )
            event = pb.ServerEvent(chat=chat)
            if actor.role != INSTRUCTOR:
                key = self._room.bucket_key(actor.session_id, f"user:{actor.user_id}")
                bucket = (key, s.student_rate_per_second, s.student_burst)
        ack = pb.Ack(client_event_id=ce_id, accepted=True, created_id=message_id)
        once = Once(
            actor.user_id, ce_id, ack.SerializeToString(), s.client_event_dedup_seconds, bucket
        )
        body = self.hub.stamp(actor.session_id, event)
        sequence, detail = await self._room.sequence_once(actor.session_id, body, once)
        if sequence == REPEATED:
            return (
                pb.Ack.FromString(detail)
                if detail
                else pb.Ack(client_event_id=ce_id, accepted=True)
            )
        if sequence == RATE_LIMITED:
            live_metrics.REFUSED.labels("rate_limited").inc()
            raise ResourceExhausted(
                f"{what} rate limit reached; retry in {detail:.2f} s", retry_after_seconds=detail
            )
        if sequence == NOT_LIVE:
            raise FailedPrecondition("the session is not live")
        await self.hub.fan_out(actor.session_id, sequence, body)
        ack.sequence = sequence
        return ack

    async def _limit(self, actor: Actor, who: str, rate: float, burst: int, what: str) -> None:
        key = self._room.bucket_key(actor.session_id, who)
        wait = await self._room.take(key, rate, burst)
        if wait:
            live_metrics.REFUSED.labels("rate_limited").inc()
            raise ResourceExhausted(
                f"{what} rate limit reached; retry in {wait:.2f} s", retry_after_seconds=wait
            )

    async def _student_limit(self, actor: Actor, what: str) -> None:
        if actor.role != INSTRUCTOR:
            s = self._s
            await self._limit(
                actor, f"user:{actor.user_id}", s.student_rate_per_second, s.student_burst, what
            )

    async def _publish(self, actor: Actor, **kind: object) -> int:
        return await self.hub.publish(actor.session_id, pb.ServerEvent(**kind))  # type: ignore[arg-type]

    # -- one method per client event kind -------------------------------------------------

    async def _question(self, actor: Actor, ask: pb.AskQuestion) -> Outcome:
        text = _text(ask.text, "event.question.text", 1000)
        await self._student_limit(actor, "question")
        question = pb.LiveQuestion(
            question_id=str(uuid.uuid4()),
            author_id=actor.user_id,
            author_name=actor.display_name,
            text=text,
            ask_time=wire.now(),
        )
        await self._room.ask(actor.session_id, question)
        return Outcome(await self._publish(actor, question=question), question.question_id)

    async def _upvote(self, actor: Actor, upvote: pb.UpvoteQuestion) -> Outcome:
        qid = _text(upvote.question_id, "event.upvote.question_id", 64)
        votes = await self._room.upvote(actor.session_id, qid, actor.user_id, not upvote.withdraw)
        if votes == -1:
            raise NotFound(f"question {qid} not found or already answered")
        if votes == -2:
            return Outcome()
        question = await self._room.question(actor.session_id, qid, votes)
        if question is None:
            raise NotFound(f"question {qid} not found")
        return Outcome(await self._publish(actor, question=question))

    async def _poll_vote(self, actor: Actor, vote: pb.VotePoll) -> Outcome:
        pid = _text(vote.poll_id, "event.poll_vote.poll_id", 64)
        poll = await self._room.poll(actor.session_id, pid)
        if poll is None:
            raise NotFound(f"poll {pid} not found")
        known = {o.option_id for o in poll.options}
        chosen = list(dict.fromkeys(vote.option_ids))
        errors = FieldErrors()
        errors.check(bool(chosen), "event.poll_vote.option_ids", "choose at least one option")
        errors.check(
            poll.allow_multiple or len(chosen) <= 1,
            "event.poll_vote.option_ids",
            "this poll allows one option",
        )
        errors.check(
            all(c in known for c in chosen), "event.poll_vote.option_ids", "unknown option id"
        )
        errors.raise_if_any()
        if not await self._room.vote(actor.session_id, pid, actor.user_id, chosen):
            raise FailedPrecondition(f"poll {pid} is closed")
        self.dirty.polls.add((actor.session_id, pid))
        return Outcome()

    async def _raise_hand(self, actor: Actor, hand: pb.RaiseHand) -> Outcome:
        whose = hand.user_id or actor.user_id
        if whose != actor.user_id:
            _instructor(actor, "lower someone else's hand")
            if hand.raised:
                raise InvalidArgument("a hand can only be raised by its owner")
        name = actor.display_name if whose == actor.user_id else ""
        if not await self._room.hand(actor.session_id, whose, hand.raised, name):
            return Outcome()
        self.dirty.presence.add(actor.session_id)
        changed = pb.HandRaised(user_id=whose, display_name=name, raised=hand.raised)
        return Outcome(await self._publish(actor, hand_raised=changed))

    async def _open_poll(self, actor: Actor, spec: pb.OpenPoll) -> Outcome:
        _instructor(actor, "open polls")
        errors = FieldErrors()
        errors.check(0 < len(spec.question) <= 500, "event.open_poll.question", "1 to 500 chars")
        errors.check(2 <= len(spec.options) <= 10, "event.open_poll.options", "2 to 10 options")
        errors.check(
            all(0 < len(o) <= 200 for o in spec.options),
            "event.open_poll.options",
            "each option 1 to 200 characters",
        )
        errors.check(
            spec.duration.ToMilliseconds() >= 0, "event.open_poll.duration", "not negative"
        )
        errors.raise_if_any()
        poll = pb.Poll(
            poll_id=str(uuid.uuid4()),
            question=spec.question,
            options=[
                pb.PollOption(option_id=str(i + 1), text=t) for i, t in enumerate(spec.options)
            ],
            allow_multiple=spec.allow_multiple,
            open=True,
            open_time=wire.now(),
        )
        if spec.HasField("duration"):
            closes = poll.open_time.ToMilliseconds() + spec.duration.ToMilliseconds()
            poll.close_time.FromMilliseconds(closes)
        await self._room.open_poll(actor.session_id, poll)
        return Outcome(await self._publish(actor, poll_opened=poll), poll.poll_id)

    async def _close_poll(self, actor: Actor, close: pb.ClosePoll) -> Outcome:
        _instructor(actor, "close polls")
        pid = _text(close.poll_id, "event.close_poll.poll_id", 64)
        sequence = await self.close_poll(actor.session_id, pid)
        if not sequence:
            raise NotFound(f"poll {pid} not found or already closed")
        return Outcome(sequence)

    async def close_poll(self, session_id: str, poll_id: str) -> int:
        """Close a poll and publish its final tallies; 0 when it was not open (one pod wins
        when a poll's duration runs out, since the close is one SREM)."""
        if not await self._room.close_poll(session_id, poll_id):
            return 0
        poll = await self._room.poll(session_id, poll_id)
        assert poll is not None
        poll.close_time.CopyFrom(wire.now())
        self.dirty.polls.discard((session_id, poll_id))
        return await self.hub.publish(session_id, pb.ServerEvent(poll_closed=poll))

    async def _answer_question(self, actor: Actor, answer: pb.AnswerQuestion) -> Outcome:
        _instructor(actor, "mark questions answered")
        qid = _text(answer.question_id, "event.answer_question.question_id", 64)
        question = await self._room.answer(actor.session_id, qid)
        if question is None:
            raise NotFound(f"question {qid} not found or already answered")
        return Outcome(await self._publish(actor, question=question))


def rejected(client_event_id: str, error: ServiceError) -> pb.Ack:
    ack = pb.Ack(
        client_event_id=client_event_id,
        accepted=False,
        error_code=error.code.value[0],
        error_message=error.message,
    )
    if error.retry_after_seconds is not None:
        ack.retry_after.CopyFrom(wire.seconds(error.retry_after_seconds))
    return ack
