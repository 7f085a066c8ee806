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

# The sequencer: assigns the next sequence, writes the event (sequence field first, then the
# body the caller serialized) into the history window, and returns the sequence. Refuses when
# the session is not live, so nothing is sequenced after the end event.
_SEQUENCE = """
if redis.call('GET', KEYS[3]) ~= 'live' and ARGV[3] ~= 'force' then return 0 end
local seq = redis.call('INCR', KEYS[1])
local n, out = seq, {}
while n >= 128 do
  out[#out + 1] = string.char(n % 128 + 128)
  n = math.floor(n / 128)
end
out[#out + 1] = string.char(n)
redis.call('ZADD', KEYS[2], seq, string.char(8) .. table.concat(out) .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
return seq
"""

# Presence counts people, not connections: a student with two tabs (or two devices) is one
# participant. KEYS: connection expiries (zset), connection -> user (hash), user -> open
# connections (hash). Expired connections are pruned first, releasing their users.
_PRUNE = """
local function prune(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, conn in ipairs(gone) do
    local user = redis.call('HGET', KEYS[2], conn)
    redis.call('HDEL', KEYS[2], conn)
    if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
      redis.call('HDEL', KEYS[3], user)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""

# Admit connection ARGV[1] of user ARGV[4] unless the session holds ARGV[3] other users.
# Returns the participant count after, or -1 when full.
_JOIN = (
    _PRUNE
    + """
prune(now)
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 and
   redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[3]) then
  return -1
end
if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
end
return redis.call('HLEN', KEYS[3])
"""
)

# One connection leaves; its user stays present while another of their connections is open.
_LEAVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local user = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if user and redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
  redis.call('HDEL', KEYS[3], user)
end
return 1
"""

# Refresh the expiry of present members (ZADD XX: a member that left is not brought back).
_REFRESH = """
local t = redis.call('TIME')
local expiry = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i])
end
return n
"""

# Participant count (distinct users) with expired connections pruned, and raised hands
# (KEYS[4]).
_COUNT = (
    _PRUNE
    + """
prune(now)
return {redis.call('HLEN', KEYS[3]), redis.call('HLEN', KEYS[4])}
"""
)

# Token bucket: rate per second, burst; returns {1, 0} or {0, ms until a token}.
_BUCKET = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if ok == 1 then return {1, 0} end
return {0, math.ceil((1 - tokens) * 1000 / rate)}
"""

# Poll vote: replaces the voter's earlier choice. KEYS: open polls set, tally hash, votes
# hash; ARGV: poll id, voter, comma-joined option ids. Returns 0 if the poll is not open.
_VOTE = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[3], ARGV[2])
if old then
  for opt in string.gmatch(old, '[^,]+') do redis.call('HINCRBY', KEYS[2], opt, -1) end
else
  redis.call('HINCRBY', KEYS[2], '', 1)
end
for opt in string.gmatch(ARGV[3], '[^,]+') do redis.call('HINCRBY', KEYS[2], opt, 1) end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return 1
"""

# Upvote (ARGV[3] = '1') or withdraw ('0'): KEYS: votes zset, voters set. Returns the vote
# count, -1 when the question is unknown or answered, -2 when nothing changed.
_UPVOTE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
local changed
if ARGV[3] == '1' then changed = redis.call('SADD', KEYS[2], ARGV[2])
else changed = redis.call('SREM', KEYS[2], ARGV[2]) end
if changed == 0 then return -2 end
local delta = 1
if ARGV[3] ~= '1' then delta = -1 end
return tonumber(redis.call('ZINCRBY', KEYS[1], delta, ARGV[1]))
"""


def _k(session_id: str, name: str) -> str:
    return f"live:{{{session_id}}}:{name}"


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
        self._sequence = state.register_script(_SEQUENCE)
        self._join = state.register_script(_JOIN)
        self._leave = state.register_script(_LEAVE)
        self._refresh = state.register_script(_REFRESH)
        self._count = state.register_script(_COUNT)
        self._bucket = state.register_script(_BUCKET)
        self._vote = state.register_script(_VOTE)
        self._upvote = state.register_script(_UPVOTE)

    # -- sequencer and history ------------------------------------------------------------

    async def sequence(self, session_id: str, body: bytes, *, force: bool = False) -> int:
        """Sequence one event body; 0 when the session is not live (unless forced)."""
        keys = [_k(session_id, "seq"), _k(session_id, "hist"), _k(session_id, "state")]
        args: list[Any] = [body, self._history, "force" if force else ""]
        return int(await self._sequence(keys=keys, args=args))

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
        key = _k(session_id, f"ce:{user_id}:{client_event_id}")
        if await self._r.set(key, b"", nx=True, ex=ttl):
            return None
        return bytes(await self._r.get(key) or b"")

    async def store_ack(
        self, session_id: str, user_id: str, client_event_id: str, ack: bytes, ttl: int
    ) -> None:
        await self._r.set(_k(session_id, f"ce:{user_id}:{client_event_id}"), ack, ex=ttl)

    async def forget_client_event(self, session_id: str, user_id: str, ce_id: str) -> None:
        await self._r.delete(_k(session_id, f"ce:{user_id}:{ce_id}"))

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
