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

from mesh.batching import Coalescer
from mesh.state import Script
from svc_course import progress_scripts as scripts

PREFIX = "vp:"
DIRTY = "vp:dirty"
FLUSHING = "vp:flushing"
# Traceparents of sampled updates, by member, for the flusher (another process) to continue.
# Bounded: past TRACES_LIMIT entries nobody took, they are dropped together.
TRACES = "vp:traces"
TRACES_LIMIT = 10_000
EPOCH_RECHECK_SECONDS = 1.0
# Samples per script call at most: a batch runs atomically in the server, and ~10 µs each
# keeps the longest well under the state server's other callers' patience.
UPDATE_BATCH = 128


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
        self._update = Script(client, scripts.UPDATE)
        self._updates: Coalescer[str, str] = Coalescer(
            self._apply_batch, max_batch=UPDATE_BATCH, name="progress-updates"
        )
        self._claim = Script(client, scripts.CLAIM)
        self._ack = Script(client, scripts.ACK)
        self._seed = Script(client, scripts.SEED)
        self._release = Script(client, scripts.RELEASE)
        self._take_traces = Script(client, scripts.TAKE_TRACES)
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
        """Merge one sample. `enrollment_ttl` 0 requires the enrollment mark to exist; > 0 (the
        caller checked Postgres) sets it for that many seconds. Concurrent samples share one
        script call (mesh.batching): at thousands of updates a second the client's per-command
        cost, paid once per batch instead of once per sample, was most of the handler's own
        time."""
        reply = await self._updates.submit(
            f"{user_id} {video_id} {course_id} {position_ms} {watched_ms} {client_time_ms}"
            f" {now_ms} {duration_ms} {enrollment_ttl}"
        )
        if reply == "-1":
            raise EnrollmentUnknown
        if reply == "-2":
            raise NotSeeded
        if reply == "-3":
            raise ValueError(f"not a progress sample: {user_id!r} {video_id!r} {course_id!r}")
        p, w, f, t, ca, u = map(int, reply.split())
        return Stored(p, w, f, t, ca, u)

    @property
    def batches(self) -> int:
        """Script calls that carried samples so far."""
        return self._updates.batches

    async def _apply_batch(self, samples: list[str]) -> list[str]:
        reply = await self._update(keys=[DIRTY], args=[await self.epoch(), PREFIX, *samples])
        return [_text(r) for r in reply]

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
