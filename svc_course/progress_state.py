"""Unflushed video progress in the state Valkey: one hash per (viewer, video), a dirty set the
flushers drain, and a lease set that keeps a claimed sample safe until its flush commits.

Every field merges as a join (watched and furthest by max, position by newest client time,
completion once set stays set), so applying a sample twice, or merging the Postgres row back
in, never moves progress backwards. That is what makes retries, re-flushes after a crash and
seeding hashes from Postgres all safe.

A hash missing for a viewer's video means either "never played" or "flushed and expired";
only Postgres can tell. So the first sample of a viewer in a course (per `keep` period) loads
all their flushed rows for that course in ONE query into hashes and sets a `seeded` mark;
while it lives, a missing hash means "never played". Every seeded or flushed hash expires
no earlier than the mark, and an unflushed one never expires, so the mark cannot outlive
history it vouches for.

Keys (single Valkey server: the claim and ack scripts touch hashes named from set members,
which a cluster would need hash tags for):
  vp:<user>:<video>   hash p (position ms), w (watched ms), f (furthest ms), t (client time ms),
                      ca (completed at, ms; 0 = not yet), c (course id), d (duration ms),
                      u (server time of the last sample, ms)
  vp:dirty            set of "<user>:<video>" written since their last claim
  vp:flushing         sorted set of claimed members; score = lease token (see `claim`)
  vp:enr:<user>:<course>  "1" while the enrollment is known active (TTL)
  vp:seeded:<user>:<course>  the server's epoch while every flushed row of theirs in the
                      course is in Valkey

A state server restarted from its AOF may come back a second behind what the flusher already
committed (kill -9 with `appendfsync everysec`). Its run id (the epoch) changes on every start,
and a seeded mark counts only for the epoch that wrote it, so after a restart each viewer's
next update re-merges their Postgres rows before it applies: progress never moves backwards.
The epoch is re-read at most once a second, which bounds the window after a restart.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import redis.asyncio as redis

from mesh.state import Script

PREFIX = "vp:"
DIRTY = "vp:dirty"
FLUSHING = "vp:flushing"
# Traceparents of sampled updates, by member, for the flusher (another process) to continue.
# Bounded: past TRACES_LIMIT entries nobody took, they are dropped together.
TRACES = "vp:traces"
TRACES_LIMIT = 10_000
EPOCH_RECHECK_SECONDS = 1.0

# KEYS: the hash, the enrollment mark, the dirty set, the seeded mark. ARGV: 1 member, 2 the
# sample "position watched client_time now duration course" (packed: the client's
# per-argument encoding is a measurable share of the hot path), 3 enrollment TTL ("0": the
# mark must already exist), 4 the server's epoch. Returns "p w f t ca u" once applied, or
# "-1" (enrollment not known) / "-2" (the course not seeded in this server's life): nothing
# is written then.
_UPDATE = """
if ARGV[3] == '0' then
  if redis.call('EXISTS', KEYS[2]) == 0 then return '-1' end
else
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
end
if redis.call('GET', KEYS[4]) ~= ARGV[4] then return '-2' end
local cur = redis.call('HMGET', KEYS[1], 'p', 'w', 'f', 't', 'ca')
if not cur[2] then cur = {0, 0, 0, 0, 0} end
local p, w, f, t, ca = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3]),
  tonumber(cur[4]), tonumber(cur[5])
local pos, watched, ct, now, d, course = string.match(ARGV[2],
  '^(%d+) (%d+) (%d+) (%d+) (%d+) (%S+)$')
pos, watched, ct, now, d = tonumber(pos), tonumber(watched), tonumber(ct), tonumber(now),
  tonumber(d)
if ct >= t then p = pos; t = ct end
if watched > w then w = watched end
if pos > f then f = pos end
if ca == 0 and d > 0 and w * 10 >= d * 9 then ca = now end
redis.call('HSET', KEYS[1], 'p', p, 'w', w, 'f', f, 't', t, 'ca', ca, 'c', course, 'd', d,
  'u', now)
redis.call('PERSIST', KEYS[1])
redis.call('SADD', KEYS[3], ARGV[1])
return string.format('%d %d %d %d %d %d', p, w, f, t, ca, now)
"""

# Merges a viewer's flushed rows of one course into their hashes and sets the seeded mark.
# KEYS[1] the mark; ARGV: 1 keep seconds, 2 "vp:<user>:", 3 course, 4 the server's epoch
# (the mark's value), then "video p w f t ca" per row. A hash that can expire lives at least
# a minute longer than the mark (covering a row flushed between the query and this script); a
# persistent (unflushed) one stays so.
_SEED = """
local keep = tonumber(ARGV[1])
for i = 5, #ARGV do
  local video, p, w, f, t, ca = string.match(ARGV[i], '^(%S+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  local key = ARGV[2] .. video
  local ttl = redis.call('TTL', key)
  local cur = redis.call('HMGET', key, 'p', 'w', 'f', 't', 'ca')
  p, w, f, t, ca = tonumber(p), tonumber(w), tonumber(f), tonumber(t), tonumber(ca)
  if cur[2] then
    if tonumber(cur[4]) > t then p = tonumber(cur[1]); t = tonumber(cur[4]) end
    if tonumber(cur[2]) > w then w = tonumber(cur[2]) end
    if tonumber(cur[3]) > f then f = tonumber(cur[3]) end
    if tonumber(cur[5]) > 0 and (ca == 0 or tonumber(cur[5]) < ca) then ca = tonumber(cur[5]) end
  end
  redis.call('HSET', key, 'p', p, 'w', w, 'f', f, 't', t, 'ca', ca, 'c', ARGV[3])
  if ttl ~= -1 and ttl < keep + 60 then redis.call('EXPIRE', key, keep + 60) end
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', math.max(keep - 60, 1))
return #ARGV - 4
"""

# Claims up to ARGV[3] members: first those whose lease expired (a flusher died or stalled),
# then fresh ones from the dirty set. Returns the lease token, then per member its name and
# hash fields, read in the same atomic step as the claim.
_CLAIM = """
local limit = tonumber(ARGV[3])
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)
if #members < limit then
  local fresh = redis.call('SPOP', KEYS[1], limit - #members)
  for _, m in ipairs(fresh) do table.insert(members, m) end
end
local out = {ARGV[2]}
for _, m in ipairs(members) do
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  local h = redis.call('HMGET', ARGV[4] .. m, 'c', 'p', 'w', 'f', 't', 'ca', 'u', 'd')
  table.insert(out, m)
  for i = 1, 8 do table.insert(out, h[i] or '') end
end
return out
"""

# After the commit: drop our leases (not one another flusher re-took after ours expired) and
# let a hash with no newer sample expire after ARGV[2] seconds; one written meanwhile is back
# in the dirty set and stays persistent.
_ACK = """
local token = tonumber(ARGV[1])
local n = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], m)
  if score and tonumber(score) == token then
    redis.call('ZREM', KEYS[2], m)
    score = false
    n = n + 1
  end
  if not score and redis.call('SISMEMBER', KEYS[1], m) == 0 then
    redis.call('EXPIRE', KEYS[3] .. m, ARGV[2])
  end
end
return n
"""


# Gives a claim back (a flush cancelled at shutdown): our leased members return to the dirty
# set at once instead of waiting for the lease to expire.
# KEYS[1] the traces hash; ARGV: 1 the limit, then members. Their traceparents, taken.
_TAKE_TRACES = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local found = {}
for i = 2, #ARGV do
  local tp = redis.call('HGET', KEYS[1], ARGV[i])
  if tp then
    found[#found + 1] = tp
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return found
"""

_RELEASE = """
local token = tonumber(ARGV[1])
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if score and tonumber(score) == token then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('SADD', KEYS[1], ARGV[i])
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Stored:
    """One viewer's merged progress on one video, times in ms since the epoch."""

    position_ms: int
    watched_ms: int
    furthest_ms: int
    client_time_ms: int
    completed_at_ms: int  # 0 until the completion threshold is reached
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class Seed:
    """One flushed Postgres row, merged into its hash so its history is not forgotten."""

    video_id: str
    stored: Stored


@dataclass(frozen=True, slots=True)
class Claimed:
    member: str
    user_id: str
    video_id: str
    course_id: str
    duration_ms: int
    stored: Stored


@dataclass(frozen=True, slots=True)
class Claim:
    token: str
    # Every member claimed; `samples` leaves out any whose hash was gone.
    members: list[str]
    samples: list[Claimed]


class EnrollmentUnknown(Exception):
    """The enrollment mark is absent: check Postgres, then retry with `enrollment_ttl`."""


class NotSeeded(Exception):
    """No hash and the course is not seeded: load the viewer's rows, `seed`, then retry."""


def member(user_id: str, video_id: str) -> str:
    return f"{user_id}:{video_id}"


class ProgressState:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._update = Script(client, _UPDATE)
        self._claim = Script(client, _CLAIM)
        self._ack = Script(client, _ACK)
        self._seed = Script(client, _SEED)
        self._release = Script(client, _RELEASE)
        self._take_traces = Script(client, _TAKE_TRACES)
        self._epoch = ""
        self._epoch_read = float("-inf")

    async def epoch(self) -> str:
        """The state server's run id, re-read at most once a second (see the module notes)."""
        now = time.monotonic()
        if now - self._epoch_read >= EPOCH_RECHECK_SECONDS:
            self._epoch_read = now
            try:
                info = await self._client.info("server")
            except BaseException:
                self._epoch_read = float("-inf")
                raise
            self._epoch = str(info["run_id"])
        return self._epoch

    async def apply(
        self,
        *,
        user_id: str,
        video_id: str,
        course_id: str,
        duration_ms: int,
        position_ms: int,
        watched_ms: int,
        client_time_ms: int,
        now_ms: int,
        enrollment_ttl: int = 0,
    ) -> Stored:
        """Merge one sample in one round trip. `enrollment_ttl` 0 requires the enrollment mark
        to exist; > 0 (the caller checked Postgres) sets it for that many seconds."""
        m = member(user_id, video_id)
        reply = await self._update(
            keys=[
                PREFIX + m,
                f"{PREFIX}enr:{user_id}:{course_id}",
                DIRTY,
                f"{PREFIX}seeded:{user_id}:{course_id}",
            ],
            args=[
                m,
                f"{position_ms} {watched_ms} {client_time_ms} {now_ms} {duration_ms} {course_id}",
                enrollment_ttl,
                await self.epoch(),
            ],
        )
        reply = _text(reply)
        if reply == "-1":
            raise EnrollmentUnknown
        if reply == "-2":
            raise NotSeeded
        p, w, f, t, ca, u = map(int, reply.split())
        return Stored(p, w, f, t, ca, u)

    async def seed(self, user_id: str, course_id: str, rows: list[Seed], keep_seconds: int) -> None:
        """Merge the viewer's flushed rows of the course and mark the course seeded."""
        packed = [
            f"{r.video_id} {r.stored.position_ms} {r.stored.watched_ms} {r.stored.furthest_ms}"
            f" {r.stored.client_time_ms} {r.stored.completed_at_ms}"
            for r in rows
        ]
        await self._seed(
            keys=[f"{PREFIX}seeded:{user_id}:{course_id}"],
            args=[keep_seconds, f"{PREFIX}{user_id}:", course_id, await self.epoch(), *packed],
        )

    async def forget_enrollment(self, user_id: str, course_id: str) -> None:
        """Drop the enrollment mark (call on unenroll) so the next sample re-checks Postgres."""
        await self._client.delete(f"{PREFIX}enr:{user_id}:{course_id}")

    async def read_many(self, pairs: list[tuple[str, str]]) -> list[Stored | None]:
        """The unflushed-or-kept progress for each (user, video), None where Valkey has none."""
        if not pairs:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for user_id, video_id in pairs:
                pipe.hmget(PREFIX + member(user_id, video_id), "p", "w", "f", "t", "ca", "u")
            replies = await pipe.execute()
        return [
            None if h[1] is None else Stored(*(int(x or 0) for x in h))  # type: ignore[misc]
            for h in replies
        ]

    async def claim(self, *, now_ms: int, lease_ms: int, limit: int) -> Claim:
        # The token is the lease's expiry in µs plus a random tail, so two flushers claiming in
        # the same millisecond still hold different tokens (exact below 2**53 as a double).
        token = (now_ms + lease_ms) * 1000 + random.randrange(1000)
        reply = await self._claim(
            keys=[DIRTY, FLUSHING], args=[now_ms * 1000, token, limit, PREFIX]
        )
        samples: list[Claimed] = []
        members: list[str] = []
        for i in range(1, len(reply), 9):
            name = _text(reply[i])
            members.append(name)
            course, p, w, f, t, ca, u, d = (_text(x) for x in reply[i + 1 : i + 9])
            user_id, _, video_id = name.partition(":")
            if not course:
                continue  # no hash behind the member: nothing to write
            stored = Stored(int(p), int(w), int(f), int(t), int(ca or 0), int(u or 0))
            samples.append(Claimed(name, user_id, video_id, course, int(d or 0), stored))
        return Claim(_text(reply[0]), members, samples)

    async def ack(self, claim: Claim, keep_seconds: int) -> int:
        """Release the claim after its flush committed; returns how many leases were ours."""
        if not claim.members:
            return 0
        reply = await self._ack(
            keys=[DIRTY, FLUSHING, PREFIX], args=[claim.token, keep_seconds, *claim.members]
        )
        return int(reply)

    async def release(self, claim: Claim) -> None:
        """Return an unwritten claim's samples to the dirty set."""
        if claim.members:
            await self._release(keys=[DIRTY, FLUSHING], args=[claim.token, *claim.members])

    async def remember_trace(self, user_id: str, video_id: str, traceparent: str) -> None:
        """A sampled update's trace, continued by whichever flusher writes the sample."""
        await self._client.hset(TRACES, member(user_id, video_id), traceparent)

    async def take_traces(self, members: list[str]) -> list[str]:
        """The remembered traces of these members, removed as they are taken."""
        if not members:
            return []
        reply = await self._take_traces(keys=[TRACES], args=[TRACES_LIMIT, *members])
        return [_text(tp) for tp in reply]

    async def dirty(self) -> int:
        """Samples written since their last claim."""
        return int(await self._client.scard(DIRTY))


def _text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
