"""The event consumers: apply stream batches to the read model, refresh the touched courses'
counters in the same transaction, retire their cached dashboards, and measure freshness.

A periodic job refreshes the counters of courses whose learners crossed the 7-day idle line
since its last run, since "active" and "at risk" change with the clock, not only with events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from nats.aio.msg import Msg
from sqlalchemy.exc import DBAPIError

from mesh import metrics
from mesh.bus import Bus, consume_batches
from mesh.cache import Cache
from mesh.db import Database
from mesh.errors import Unavailable
from svc_analytics import reads, repository
from svc_analytics.dashboard import DASHBOARD, idle_cutoff
from svc_analytics.events import Incoming, decode

log = logging.getLogger("svc_analytics.ingest")

CONSUMER = "analytics"
IDLE_REFRESH_CHUNK = 100


class Ingest:
    def __init__(self, db: Database, cache: Cache | None, consumer: str = CONSUMER) -> None:
        self._db = db
        self._cache = cache
        self._consumer = consumer
        self._lag = metrics.EVENT_APPLY_LAG.labels(consumer)
        self._applied = metrics.EVENTS_APPLIED.labels(consumer)

    async def apply(self, msgs: Sequence[Msg]) -> None:
        batch = [Incoming(m.subject, m.data, dict(m.headers or {})) for m in msgs]
        await self.apply_incoming(batch)

    async def apply_incoming(self, batch: Sequence[Incoming]) -> None:
        changes = decode(batch)
        async with self._db.transaction_driver("analytics apply") as conn:
            touched = await repository.apply(conn, changes, idle_cutoff())
        # Observed once the cached pages are retired too: the lag is to the dashboard.
        await self._retire(touched)
        now = datetime.now(UTC)
        for occurred in changes.occurred:
            self._lag.observe(max((now - occurred).total_seconds(), 0.0))
        self._applied.inc(len(changes.occurred))

    async def _retire(self, touched: Sequence[tuple[Any, ...]]) -> None:
        """`touched`: repository.refresh's rows, (course_id, instructor_id, …)."""
        if self._cache is not None and touched:
            await self._cache.bump(DASHBOARD, *sorted({str(row[1]) for row in touched}))

    async def run(
        self, bus: Bus, batch: int, stop: asyncio.Event | None = None, pace_seconds: float = 0.0
    ) -> None:
        await consume_batches(
            bus, self._consumer, self.apply, batch=batch, stop=stop, pace_seconds=pace_seconds
        )

    async def refresh_idle_forever(self, interval_seconds: float) -> None:
        """Refresh courses whose learners went idle since the last pass; the first pass
        refreshes every course (the process cannot know what happened while it was down).
        A failed pass (a statement timeout under load, a database restart) is logged and
        retried at the next interval from the same starting point, so nothing is skipped:
        it must not take the service down, as a background task that raises would."""
        since: datetime | None = None
        while True:
            until = idle_cutoff()
            started = time.monotonic()
            try:
                count = await self._refresh_idle(since, until)
            except (DBAPIError, psycopg.Error, Unavailable) as exc:
                log.warning(
                    "idle refresh failed; retried at the next interval",
                    extra={"error": type(exc).__name__, "retry_seconds": interval_seconds},
                )
            else:
                log.info(
                    "idle refresh",
                    extra={"courses": count, "seconds": round(time.monotonic() - started, 3)},
                )
                since = until
            await asyncio.sleep(interval_seconds)

    async def _refresh_idle(self, since: datetime | None, until: datetime) -> int:
        async with self._db.read() as conn:
            if since is None:
                ids = await reads.all_course_ids(conn)
            else:
                ids = await reads.crossed_idle_line(conn, since, until)
        touched = []
        # One short transaction per chunk: a long one would hold the pool and its locks; 500
        # courses a statement outlasted the 5 s statement timeout on a loaded box.
        for i in range(0, len(ids), IDLE_REFRESH_CHUNK):
            async with self._db.transaction_driver("analytics refresh") as conn:
                touched += await repository.refresh(conn, ids[i : i + IDLE_REFRESH_CHUNK], until)
        await self._retire(touched)
        return len(ids)
