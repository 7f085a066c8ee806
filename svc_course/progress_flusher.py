"""Write-behind of video progress (finding S1): claimed samples go to Postgres in batches.

It runs in a process of its own (`python -m svc_course.progress_worker`), never in a replica
that answers calls: a flush of thousands of samples is tens of milliseconds of Python work,
and on the request loop every call waiting behind it showed in the p95.

Every `interval` a flusher claims up to `batch_size` dirty samples at a time from the state
Valkey (an atomic Lua claim, so two replicas never take the same sample), writes the batch in
ONE transaction — one upsert over arrays, one enrollment update, the events through the
outbox — and only then releases the claim. A crash before the release leaves the claim to
expire after `lease`, when any replica re-takes it; re-writing a batch is harmless because
every column merges monotonically. A sample that arrives during a flush is back in the dirty
set and goes out with the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Row

from elearn.events.v1 import course_events_pb2 as events
from mesh import tracing
from mesh.db import Database
from mesh.outbox import Outbox, new_event_id
from svc_course import progress_repository as repo
from svc_course.progress_state import Claim, Claimed, ProgressState

log = logging.getLogger("svc_course.progress_flusher")

FLUSHED_SUBJECT = "elearn.course.video_progress_flushed"
COMPLETED_SUBJECT = "elearn.course.course_completed"
# What an operator watches for S1: samples written, how long a sample waited in Valkey before
# its commit (the window a lost state server would cost), batch time, and the backlog.
FLUSHED = Counter("progress_flushed_samples_total", "Progress samples written to Postgres.")
SAMPLE_AGE = Histogram(
    "progress_flush_sample_age_seconds",
    "Time from a progress sample reaching Valkey to its batch committing.",
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
BATCH_SECONDS = Histogram(
    "progress_flush_batch_seconds",
    "Time to write one flush batch (upsert, enrollments, events, commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_SIZE = Histogram(
    "progress_flush_batch_size",
    "Samples per flush batch: near the batch size, the flusher is running behind.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
BACKLOG = Gauge("progress_dirty_samples", "Progress samples waiting for a flush (last seen).")
# A deadlock between two replicas updating the same enrollments aborts one transaction; the
# claim is still held, so the loser simply writes again.
WRITE_ATTEMPTS = 3


class ProgressFlusher:
    def __init__(
        self,
        db: Database,
        state: ProgressState,
        outbox: Outbox,
        *,
        interval_seconds: float,
        batch_size: int,
        lease_seconds: float,
        keep_seconds: int,
    ) -> None:
        self._db = db
        self._state = state
        self._outbox = outbox
        self.interval = interval_seconds
        self.batch_size = batch_size
        self._lease_ms = int(lease_seconds * 1000)
        self._keep = keep_seconds
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Flush every interval until cancelled; a failed round is logged and retried."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("progress flush failed; the samples stay in Valkey for the next")

    async def flush(self, max_batches: int = 1000) -> int:
        """Claim and write batches until the dirty set is drained; returns samples written."""
        written = 0
        BACKLOG.set(await self._state.dirty())
        async with self._lock:
            for _ in range(max_batches):
                claim = await self._state.claim(
                    now_ms=now_ms(), lease_ms=self._lease_ms, limit=self.batch_size
                )
                if not claim.members:
                    break
                try:
                    if claim.samples:
                        await self._write(claim)
                except asyncio.CancelledError:
                    # Shutting down mid-flush: the transaction rolled back; hand the samples
                    # back so the final drain (or another replica) writes them now.
                    await asyncio.shield(self._state.release(claim))
                    raise
                await self._state.ack(claim, self._keep)
                written += len(claim.samples)
                if len(claim.members) < self.batch_size:
                    break
        return written

    async def drain(self, timeout_seconds: float) -> int:
        """At shutdown: flush until the dirty set is empty or the time is up. Samples other
        replicas have claimed are theirs to finish (or re-taken when their lease expires)."""
        deadline = time.monotonic() + timeout_seconds
        written = 0
        while time.monotonic() < deadline:
            written += await self.flush()
            if await self._state.dirty() == 0:
                break
        return written

    async def _write(self, claim: Claim) -> None:
        """Commit the claimed samples; the claim is released only after this returns."""
        samples = claim.samples
        traced = await self._state.take_traces([s.member for s in samples])
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                started = time.perf_counter()
                with tracing.continued("progress flush", traced):
                    await self._commit(samples)
                BATCH_SECONDS.observe(time.perf_counter() - started)
                break
            except Exception:
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.warning("progress batch write failed; retrying", exc_info=True)
        self._outbox.notify()
        FLUSHED.inc(len(samples))
        BATCH_SIZE.observe(len(samples))
        committed = now_ms()
        for sample in samples:
            SAMPLE_AGE.observe(max(0, committed - sample.stored.updated_at_ms) / 1000)

    async def _commit(self, samples: Sequence[Claimed]) -> None:
        batch = _batch(samples)
        durations = {(s.user_id, s.video_id): s.duration_ms for s in samples}
        async with self._db.transaction() as conn:
            rows = await repo.upsert(conn, batch)
            enrollments = await repo.refresh_enrollments(conn, batch.user_ids, batch.course_ids)
            percent = {(str(e.user_id), str(e.course_id)): e.progress_percent for e in enrollments}
            for e in enrollments:
                if e.newly_completed:
                    event_id, now = new_event_id()
                    completed = events.CourseCompleted(
                        event_id=event_id,
                        occur_time=now,
                        enrollment_id=str(e.id),
                        course_id=str(e.course_id),
                        instructor_id=str(e.instructor_id),
                        user_id=str(e.user_id),
                    )
                    await self._outbox.add(
                        conn, COMPLETED_SUBJECT, event_id, completed,
                        aggregate_id=f"enrollment:{e.id}",
                    )  # fmt: skip
            event_id, now = new_event_id()
            flushed = events.VideoProgressFlushed(
                event_id=event_id,
                occur_time=now,
                entries=[_entry(r, durations, percent) for r in rows],
            )
            await self._outbox.add(conn, FLUSHED_SUBJECT, event_id, flushed)


def _batch(samples: Sequence[Claimed]) -> repo.Batch:
    return repo.Batch(
        user_ids=[uuid.UUID(s.user_id) for s in samples],
        video_ids=[uuid.UUID(s.video_id) for s in samples],
        course_ids=[uuid.UUID(s.course_id) for s in samples],
        positions=[s.stored.position_ms for s in samples],
        watched=[s.stored.watched_ms for s in samples],
        furthest=[s.stored.furthest_ms for s in samples],
        client_times=[_time(s.stored.client_time_ms) for s in samples],
        completed_ats=[
            _time(s.stored.completed_at_ms) if s.stored.completed_at_ms else None for s in samples
        ],
        updated_ats=[_time(s.stored.updated_at_ms) for s in samples],
    )


def _entry(
    row: Row, durations: dict[tuple[str, str], int], percent: dict[tuple[str, str], float]
) -> events.VideoProgressEntry:
    user, video, course = str(row.user_id), str(row.video_id), str(row.course_id)
    update_time = Timestamp()
    update_time.FromDatetime(row.client_time)
    return events.VideoProgressEntry(
        user_id=user,
        course_id=course,
        video_id=video,
        position=duration_ms(row.position_ms),
        watched=duration_ms(row.watched_ms),
        duration=duration_ms(durations.get((user, video), 0)),
        completed=row.completed_at is not None,
        course_progress_percent=float(percent.get((user, course), 0.0)),
        update_time=update_time,
        furthest=duration_ms(row.furthest_ms),
    )


def duration_ms(ms: int) -> Duration:
    return Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
