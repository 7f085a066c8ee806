"""A session's shared state in the state Valkey: the sequencer and history, presence, rate
buckets, polls, questions and hands. Every pod reads and writes the same keys, so any pod can
serve any participant; each multi-step change is one Lua script (one round trip, atomic).

Keys share the hash tag `{<session id>}` so a clustered Valkey keeps a session on one shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from elearn.live.v1 import live_service_pb2 as pb
from svc_live.room_scripts import (
    BUCKET,
    COUNT,
    JOIN,
    LEAVE,
    REFRESH,
    SEQUENCE,
    SEQUENCE_ONCE,
    UPVOTE,
    VOTE,
)


def _k(session_id: str, name: str) -> str:
    return f"live:{{{session_id}}}:{name}"


@dataclass
class Once:
    """A client event applied in the sequencer's round trip (room_scripts.SEQUENCE_ONCE): its
    id is remembered with the ack for `ttl` seconds, and `bucket` (key, rate, burst) rate-limits
    it when set."""

    user_id: str
    client_event_id: str
    ack_without_sequence: bytes
    ttl: int
    bucket: tuple[str, float, int] | None = None


# What SEQUENCE_ONCE answers instead of a sequence.
NOT_LIVE, REPEATED, RATE_LIMITED = 0, -1, -2


@dataclass
class Snapshot:
    last_sequence: int
    participant_count: int
    polls: list[pb.Poll]
    questions: list[pb.LiveQuestion]
    hands: list[pb.HandRaised]


class Room:
    """The state Valkey operations of live sessions."""

    def __init__(self, state: redis.Redis, history_size: int) -> None:
        # redis-py types replies as `bytes | str`; this client never decodes, so they are bytes.
        self._r: Any = state
        self._history = history_size
        self._sequence = state.register_script(SEQUENCE)
        self._sequence_once = state.register_script(SEQUENCE_ONCE)
        self._join = state.register_script(JOIN)
        self._leave = state.register_script(LEAVE)
        self._refresh = state.register_script(REFRESH)
        self._count = state.register_script(COUNT)
        self._bucket = state.register_script(BUCKET)
        self._vote = state.register_script(VOTE)
        self._upvote = state.register_script(UPVOTE)

    # -- sequencer and history ------------------------------------------------------------

    async def sequence(self, session_id: str, body: bytes, *, force: bool = False) -> int:
        """Sequence one event body; 0 when the session is not live (unless forced)."""
        args: list[Any] = [body, self._history, "force" if force else ""]
        keys = self._sequence_keys(session_id)
        return int(await self._sequence(keys=keys, args=args))

    async def sequence_once(self, session_id: str, body: bytes, once: Once) -> tuple[int, Any]:
        """Sequence one event body for a client event, in one round trip: (sequence, None),
        (NOT_LIVE, None), (REPEATED, the stored ack's bytes, b"" while still pending) or
        (RATE_LIMITED, seconds until a token)."""
        ce_key = self._client_event_key(session_id, once.user_id, once.client_event_id)
        bucket_key, rate, burst = once.bucket or (ce_key, 0.0, 0)
        keys = [*self._sequence_keys(session_id), ce_key, bucket_key]
        args: list[Any] = [
            body,
            self._history,
            once.ack_without_sequence,
            once.ttl,
            "rate" if once.bucket else "",
            rate,
            burst,
        ]
        code, detail = await self._sequence_once(keys=keys, args=args)
        code = int(code)
        if code == REPEATED:
            return code, bytes(detail)
        if code == RATE_LIMITED:
            return code, int(detail) / 1000
        return code, None

    def _sequence_keys(self, session_id: str) -> list[str]:
        return [_k(session_id, "seq"), _k(session_id, "hist"), _k(session_id, "state")]

    async def last_sequence(self, session_id: str) -> int:
        return int(await self._r.get(_k(session_id, "seq")) or 0)

    async def history_after(
        self, session_id: str, after: int, upto: int | None = None, limit: int = 0
    ) -> list[bytes]:
        """Kept events with after < sequence <= upto, oldest first."""
        top = "+inf" if upto is None else upto
        if limit:
            return list(
                await self._r.zrangebyscore(
                    _k(session_id, "hist"), f"({after}", top, start=0, num=limit
                )
            )
        return list(await self._r.zrangebyscore(_k(session_id, "hist"), f"({after}", top))

    async def oldest_sequence(self, session_id: str) -> int:
        first = await self._r.zrange(_k(session_id, "hist"), 0, 0, withscores=True)
        return int(first[0][1]) if first else 0

    async def set_state(self, session_id: str, state: str) -> None:
        await self._r.set(_k(session_id, "state"), state)

    async def state(self, session_id: str) -> str:
        value = await self._r.get(_k(session_id, "state"))
        return value.decode() if value else ""

    # -- presence -------------------------------------------------------------------------

    def _presence_keys(self, session_id: str) -> list[str]:
        return [_k(session_id, n) for n in ("presence", "presence_owner", "presence_users")]

    async def enter(
        self, session_id: str, connection_id: str, user_id: str, ttl: float, cap: int
    ) -> int:
        """Admit a connection; the count of distinct users after, or -1 when the session holds
        `cap` other users (a user already present may open more connections)."""
        args: list[Any] = [connection_id, int(ttl * 1000), cap, user_id]
        return int(await self._join(keys=self._presence_keys(session_id), args=args))

    async def leave(self, session_id: str, connection_id: str) -> None:
        await self._leave(keys=self._presence_keys(session_id), args=[connection_id])

    async def refresh(self, session_id: str, connection_ids: list[str], ttl: float) -> int:
        if not connection_ids:
            return 0
        keys = [_k(session_id, "presence")]
        return int(await self._refresh(keys=keys, args=[int(ttl * 1000), *connection_ids]))

    async def counts(self, session_id: str) -> tuple[int, int]:
        """(participants, raised hands) now."""
        keys = [*self._presence_keys(session_id), _k(session_id, "hands")]
        participants, hands = await self._count(keys=keys)
        return int(participants), int(hands)

    async def presence_changed(self, session_id: str, counts: tuple[int, int]) -> bool:
        """True (once) when counts differ from the last published ones, across pods."""
        key = _k(session_id, "presence_pub")
        value = f"{counts[0]}:{counts[1]}"
        old = await self._r.set(key, value, get=True)
        return bool(old is None or old.decode() != value)

    # -- limits ---------------------------------------------------------------------------

    async def take(self, key: str, rate: float, burst: int) -> float:
        """Take a token; 0 when allowed, else seconds until one is free."""
        ok, wait_ms = await self._bucket(keys=[key], args=[rate, burst])
        return 0.0 if int(ok) else int(wait_ms) / 1000

    def bucket_key(self, session_id: str, who: str) -> str:
        return _k(session_id, f"bucket:{who}")

    async def remember_client_event(
        self, session_id: str, user_id: str, client_event_id: str, ttl: int
    ) -> bytes | None:
        """None the first time; else the stored ack of the earlier one (b"" while pending)."""
        key = self._client_event_key(session_id, user_id, client_event_id)
        if await self._r.set(key, b"", nx=True, ex=ttl):
            return None
        return bytes(await self._r.get(key) or b"")

    async def store_ack(
        self, session_id: str, user_id: str, client_event_id: str, ack: bytes, ttl: int
    ) -> None:
        await self._r.set(self._client_event_key(session_id, user_id, client_event_id), ack, ex=ttl)

    async def forget_client_event(self, session_id: str, user_id: str, ce_id: str) -> None:
        await self._r.delete(self._client_event_key(session_id, user_id, ce_id))

    def _client_event_key(self, session_id: str, user_id: str, client_event_id: str) -> str:
        return _k(session_id, f"ce:{user_id}:{client_event_id}")

    # -- polls ----------------------------------------------------------------------------

    async def open_poll(self, session_id: str, poll: pb.Poll) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(_k(session_id, "polls"), poll.poll_id, poll.SerializeToString())
        pipe.sadd(_k(session_id, "open_polls"), poll.poll_id)
        if poll.HasField("close_time"):
            closes = poll.close_time.ToMilliseconds() / 1000
            pipe.zadd(_k(session_id, "poll_deadlines"), {poll.poll_id: closes})
        await pipe.execute()

    async def polls_due(self, session_id: str, now: float) -> list[str]:
        """Open polls whose duration has run out."""
        due = await self._r.zrangebyscore(_k(session_id, "poll_deadlines"), "-inf", now)
        if due:
            await self._r.zrem(_k(session_id, "poll_deadlines"), *due)
        return [d.decode() for d in due]

    async def vote(self, session_id: str, poll_id: str, user_id: str, options: list[str]) -> bool:
        keys = [
            _k(session_id, "open_polls"),
            _k(session_id, f"tally:{poll_id}"),
            _k(session_id, f"votes:{poll_id}"),
        ]
        return bool(await self._vote(keys=keys, args=[poll_id, user_id, ",".join(options)]))

    async def close_poll(self, session_id: str, poll_id: str) -> bool:
        return bool(await self._r.srem(_k(session_id, "open_polls"), poll_id))

    async def poll(self, session_id: str, poll_id: str) -> pb.Poll | None:
        """The poll with its current tallies."""
        pipe = self._r.pipeline(transaction=False)
        pipe.hget(_k(session_id, "polls"), poll_id)
        pipe.hgetall(_k(session_id, f"tally:{poll_id}"))
        pipe.sismember(_k(session_id, "open_polls"), poll_id)
        raw, tally, is_open = await pipe.execute()
        if raw is None:
            return None
        poll = pb.Poll.FromString(raw)
        counts = {k.decode(): int(v) for k, v in tally.items()}
        for option in poll.options:
            option.vote_count = counts.get(option.option_id, 0)
        poll.voter_count = counts.get("", 0)
        poll.open = bool(is_open)
        return poll

    async def open_polls(self, session_id: str) -> list[pb.Poll]:
        ids = sorted(m.decode() for m in await self._r.smembers(_k(session_id, "open_polls")))
        polls = [await self.poll(session_id, pid) for pid in ids]
        return [p for p in polls if p is not None]

    # -- questions ------------------------------------------------------------------------

    async def ask(self, session_id: str, question: pb.LiveQuestion) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(_k(session_id, "questions"), question.question_id, question.SerializeToString())
        pipe.zadd(_k(session_id, "qvotes"), {question.question_id: 0})
        await pipe.execute()

    async def upvote(self, session_id: str, question_id: str, user_id: str, up: bool) -> int:
        keys = [_k(session_id, "qvotes"), _k(session_id, f"voters:{question_id}")]
        return int(await self._upvote(keys=keys, args=[question_id, user_id, "1" if up else "0"]))

    async def answer(self, session_id: str, question_id: str) -> pb.LiveQuestion | None:
        """Marks a question answered; None when unknown or already answered."""
        votes = await self._r.zscore(_k(session_id, "qvotes"), question_id)
        if votes is None or not await self._r.zrem(_k(session_id, "qvotes"), question_id):
            return None
        question = await self.question(session_id, question_id, int(votes))
        if question is not None:
            question.answered = True
        return question

    async def question(
        self, session_id: str, question_id: str, votes: int
    ) -> pb.LiveQuestion | None:
        raw = await self._r.hget(_k(session_id, "questions"), question_id)
        if raw is None:
            return None
        question = pb.LiveQuestion.FromString(raw)
        question.vote_count = votes
        return question

    async def top_questions(self, session_id: str, count: int = 50) -> list[pb.LiveQuestion]:
        ranked = await self._r.zrevrange(_k(session_id, "qvotes"), 0, count - 1, withscores=True)
        if not ranked:
            return []
        raws = await self._r.hmget(_k(session_id, "questions"), [qid for qid, _ in ranked])
        out = []
        for (_, votes), raw in zip(ranked, raws, strict=True):
            if raw is not None:
                question = pb.LiveQuestion.FromString(raw)
                question.vote_count = int(votes)
                out.append(question)
        return out

    # -- hands ----------------------------------------------------------------------------

    async def hand(self, session_id: str, user_id: str, raised: bool, name: str = "") -> bool:
        """True when the hand changed."""
        key = _k(session_id, "hands")
        if raised:
            return bool(await self._r.hsetnx(key, user_id, name))
        return bool(await self._r.hdel(key, user_id))

    async def hands(self, session_id: str) -> list[pb.HandRaised]:
        hands = await self._r.hgetall(_k(session_id, "hands"))
        return [
            pb.HandRaised(user_id=u.decode(), display_name=n.decode(), raised=True)
            for u, n in hands.items()
        ]

    async def expire(self, session_id: str, seconds: int) -> None:
        """An ended session's room state goes after a while (history stays for late resumes)."""
        async for key in self._r.scan_iter(match=_k(session_id, "*"), count=500):
            await self._r.expire(key, seconds)

    async def snapshot(self, session_id: str) -> Snapshot:
        participants, _ = await self.counts(session_id)
        return Snapshot(
            last_sequence=await self.last_sequence(session_id),
            participant_count=participants,
            polls=await self.open_polls(session_id),
            questions=await self.top_questions(session_id),
            hands=await self.hands(session_id),
        )
