"""The progress scripts against the real state Valkey: merging, refusals, claims and leases.

Each test runs on a Valkey database index of its own (the services use index 0), so the
running svc_course's flusher never claims these samples.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as redis

from devstack.stack import Endpoints
from svc_course.progress_state import (
    DIRTY,
    FLUSHING,
    PREFIX,
    TRACES,
    TRACES_LIMIT,
    EnrollmentUnknown,
    NotSeeded,
    ProgressState,
    Seed,
    Stored,
    member,
)

MINUTE = 60_000
DURATION = 10 * MINUTE
NOW = 1_800_000_000_000


@pytest_asyncio.fixture(loop_scope="session")
async def valkey(stack: Endpoints) -> AsyncIterator[redis.Redis]:
    url = stack.state_url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


def ids() -> tuple[str, str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


async def sample(
    state: ProgressState,
    user: str,
    video: str,
    course: str,
    *,
    position: int,
    watched: int,
    at: int,
    enrollment_ttl: int = 60,
    seeded: bool = True,
    now: int = NOW,
) -> Stored:
    if seeded:
        await state.seed(user, course, [], keep_seconds=3600)
    return await state.apply(
        user_id=user,
        video_id=video,
        course_id=course,
        duration_ms=DURATION,
        position_ms=position,
        watched_ms=watched,
        client_time_ms=at,
        now_ms=now,
        enrollment_ttl=enrollment_ttl,
    )


async def test_watched_never_decreases_and_position_follows_newest_client_time(
    valkey: redis.Redis,
) -> None:
    state = ProgressState(valkey)
    user, video, course = ids()
    await sample(state, user, video, course, position=4 * MINUTE, watched=4 * MINUTE, at=NOW - 10)
    # Older sample arriving late (a retry): its position is stale, its smaller watched ignored.
    stale = await sample(state, user, video, course, position=MINUTE, watched=MINUTE, at=NOW - 20)
    assert (stale.position_ms, stale.watched_ms) == (4 * MINUTE, 4 * MINUTE)
    # Newer sample seeking back: position follows it, watched and furthest do not drop.
    back = await sample(state, user, video, course, position=MINUTE, watched=3 * MINUTE, at=NOW)
    assert back.position_ms == MINUTE
    assert back.watched_ms == 4 * MINUTE
    assert back.furthest_ms == 4 * MINUTE
    assert back.client_time_ms == NOW


async def test_completion_at_ninety_percent_never_reverts(valkey: redis.Redis) -> None:
    state = ProgressState(valkey)
    user, video, course = ids()
    almost = await sample(
        state, user, video, course, position=0, watched=DURATION * 89 // 100, at=1
    )
    assert almost.completed_at_ms == 0
    done = await sample(state, user, video, course, position=0, watched=DURATION * 9 // 10, at=2)
    assert done.completed_at_ms == NOW
    later = await sample(state, user, video, course, position=0, watched=0, at=3, now=NOW + 5)
    assert later.completed_at_ms == NOW


async def test_unknown_enrollment_and_unseeded_course_write_nothing(
    valkey: redis.Redis,
) -> None:
    state = ProgressState(valkey)
    user, video, course = ids()
    with pytest.raises(EnrollmentUnknown):
        await sample(state, user, video, course, position=1, watched=1, at=1, enrollment_ttl=0,
                     seeded=False)  # fmt: skip
    with pytest.raises(NotSeeded):
        await sample(state, user, video, course, position=1, watched=1, at=1, seeded=False)
    assert await valkey.exists(PREFIX + member(user, video)) == 0
    assert not await valkey.sismember(DIRTY, member(user, video))
    # The enrollment mark set by the second call is trusted by the next one.
    applied = await sample(
        state, user, video, course, position=1, watched=1, at=1, enrollment_ttl=0
    )
    assert applied.watched_ms == 1


async def test_a_mark_from_the_servers_previous_life_does_not_count_as_seeded(
    valkey: redis.Redis,
) -> None:
    """A restarted state server has a new run id: the marks it replayed from its AOF vouch for
    hashes that may be a second behind Postgres, so the next sample asks for a re-seed."""
    state = ProgressState(valkey)
    user, video, course = ids()
    await sample(state, user, video, course, position=5, watched=5, at=1)
    assert await state.epoch() == (await valkey.info("server"))["run_id"]
    mark = f"{PREFIX}seeded:{user}:{course}"
    await valkey.set(mark, "a-previous-life", keepttl=True)
    with pytest.raises(NotSeeded):
        await sample(state, user, video, course, position=6, watched=6, at=2, seeded=False)
    stored = await sample(state, user, video, course, position=6, watched=6, at=2)
    assert stored.watched_ms == 6


async def test_seeding_merges_flushed_rows_and_never_lowers_newer_values(
    valkey: redis.Redis,
) -> None:
    state = ProgressState(valkey)
    user, video, course = ids()
    other = str(uuid.uuid4())
    await state.seed(user, course, [], keep_seconds=3600)
    newer = await sample(state, user, video, course, position=MINUTE, watched=MINUTE, at=NOW,
                         seeded=False)  # fmt: skip
    flushed = Stored(5 * MINUTE, 6 * MINUTE, 7 * MINUTE, NOW - 1, 0, 0)
    await state.seed(user, course, [Seed(video, flushed), Seed(other, flushed)], 3600)
    # The unflushed hash keeps its newer position and persists; the others take the maxima.
    merged = await state.read_many([(user, video), (user, other)])
    assert merged[0] is not None and merged[1] is not None
    assert (merged[0].position_ms, merged[0].watched_ms, merged[0].furthest_ms) == (
        newer.position_ms, 6 * MINUTE, 7 * MINUTE,
    )  # fmt: skip
    assert (merged[1].position_ms, merged[1].watched_ms) == (5 * MINUTE, 6 * MINUTE)
    assert await valkey.ttl(PREFIX + member(user, video)) == -1
    mark = await valkey.ttl(f"{PREFIX}seeded:{user}:{course}")
    assert 0 < mark < await valkey.ttl(PREFIX + member(user, other)), "rows outlive the mark"


async def test_sample_during_a_flush_stays_dirty_and_the_hash_is_kept(valkey: redis.Redis) -> None:
    state = ProgressState(valkey)
    user, video, course = ids()
    name = member(user, video)
    await sample(state, user, video, course, position=MINUTE, watched=MINUTE, at=1)
    claim = await state.claim(now_ms=NOW, lease_ms=MINUTE, limit=10)
    assert [s.member for s in claim.samples] == [name]
    assert claim.samples[0].stored.watched_ms == MINUTE
    await sample(state, user, video, course, position=2 * MINUTE, watched=2 * MINUTE, at=2)
    assert await state.ack(claim, keep_seconds=3600) == 1
    assert await valkey.sismember(DIRTY, name)
    assert await valkey.zscore(FLUSHING, name) is None
    assert await valkey.ttl(PREFIX + name) == -1, "an unflushed sample must not expire"
    again = await state.claim(now_ms=NOW, lease_ms=MINUTE, limit=10)
    assert again.samples[0].stored.watched_ms == 2 * MINUTE
    await state.ack(again, keep_seconds=3600)
    assert 0 < await valkey.ttl(PREFIX + name) <= 3600, "a flushed copy is kept with a TTL"


async def test_concurrent_claims_are_disjoint_and_an_expired_lease_is_retaken(
    valkey: redis.Redis,
) -> None:
    state = ProgressState(valkey)
    course = str(uuid.uuid4())
    users = [str(uuid.uuid4()) for _ in range(300)]
    video = str(uuid.uuid4())
    for user in users:
        await sample(state, user, video, course, position=1, watched=1, at=1)
    claims = await asyncio.gather(
        *(state.claim(now_ms=NOW, lease_ms=MINUTE, limit=100) for _ in range(4))
    )
    taken = [s.member for c in claims for s in c.samples]
    assert len(taken) == len(set(taken)) == 300
    # A flusher that died holding a claim: once its lease expires another one re-takes it.
    lost = next(c for c in claims if c.members)
    for other in claims:
        if other is not lost:
            await state.ack(other, keep_seconds=60)
    assert not (await state.claim(now_ms=NOW + MINUTE - 1, lease_ms=MINUTE, limit=100)).members
    retaken = await state.claim(now_ms=NOW + MINUTE + 1, lease_ms=MINUTE, limit=100)
    assert sorted(retaken.members) == sorted(lost.members)
    # The dead flusher's late acknowledgement does not release the new holder's lease.
    assert await state.ack(lost, keep_seconds=60) == 0
    assert await state.ack(retaken, keep_seconds=60) == len(retaken.members)


async def test_a_released_claim_goes_back_to_the_dirty_set(valkey: redis.Redis) -> None:
    state = ProgressState(valkey)
    user, video, course = ids()
    await sample(state, user, video, course, position=1, watched=1, at=1)
    claim = await state.claim(now_ms=NOW, lease_ms=MINUTE, limit=10)
    assert claim.members == [member(user, video)]
    assert not await valkey.sismember(DIRTY, member(user, video))
    await state.release(claim)
    assert await valkey.sismember(DIRTY, member(user, video))
    assert await valkey.zscore(FLUSHING, member(user, video)) is None


async def test_a_remembered_trace_is_taken_once_by_the_flush_of_its_sample(
    valkey: redis.Redis,
) -> None:
    state = ProgressState(valkey)
    user, video, other = ids()
    await state.remember_trace(user, video, "00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    taken = await state.take_traces([member(user, other), member(user, video)])
    assert taken == ["00-" + "a" * 32 + "-" + "b" * 16 + "-01"]
    assert await state.take_traces([member(user, video)]) == []  # taken means gone
    assert await state.take_traces([]) == []


async def test_traces_nobody_takes_are_dropped_past_the_bound(valkey: redis.Redis) -> None:
    state = ProgressState(valkey)
    await valkey.hset(TRACES, mapping={f"u:{n}": "tp" for n in range(TRACES_LIMIT)})
    assert await state.take_traces(["u:0"]) == ["tp"]
    assert await valkey.hlen(TRACES) == TRACES_LIMIT - 1  # within the bound: kept
    await valkey.hset(TRACES, mapping={f"w:{n}": "tp" for n in range(3)})
    assert await state.take_traces(["u:1"]) == ["tp"]
    assert await valkey.exists(TRACES) == 0  # past it: dropped together


async def test_concurrent_samples_share_one_script_call_and_keep_their_own_outcomes(
    valkey: redis.Redis,
) -> None:
    """Samples applied at once go to the server as one batch; each caller still gets its own
    answer, and a refused sample writes nothing while the others in its batch apply."""
    state = ProgressState(valkey)
    course = str(uuid.uuid4())
    users = [str(uuid.uuid4()) for _ in range(40)]
    video = str(uuid.uuid4())
    for user in users:
        await state.seed(user, course, [], keep_seconds=3600)
    stranger, unseeded = str(uuid.uuid4()), str(uuid.uuid4())
    await state.seed(stranger, course, [], keep_seconds=3600)

    def apply(user: str, watched: int, ttl: int = 60) -> asyncio.Future[Stored]:
        return asyncio.ensure_future(
            state.apply(
                user_id=user,
                video_id=video,
                course_id=course,
                duration_ms=DURATION,
                position_ms=watched,
                watched_ms=watched,
                client_time_ms=NOW,
                now_ms=NOW,
                enrollment_ttl=ttl,
            )
        )

    before = state.batches
    calls = [apply(u, n + 1) for n, u in enumerate(users)]
    calls += [apply(stranger, 5, ttl=0), apply(unseeded, 5)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert state.batches - before == 1, "one script call for the whole turn's samples"
    assert [r.watched_ms for r in results[:40]] == list(range(1, 41))  # type: ignore[union-attr]
    assert isinstance(results[40], EnrollmentUnknown)
    assert isinstance(results[41], NotSeeded)
    assert await valkey.scard(DIRTY) == 40
    assert not await valkey.exists(
        PREFIX + member(stranger, video), PREFIX + member(unseeded, video)
    )
    with pytest.raises(ValueError, match="not a progress sample"):
        await state.apply(user_id="two words", video_id=video, course_id=course,
                          duration_ms=DURATION, position_ms=1, watched_ms=1, client_time_ms=NOW,
                          now_ms=NOW, enrollment_ttl=60)  # fmt: skip
