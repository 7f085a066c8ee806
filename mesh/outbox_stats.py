"""The outbox's depth as gauges (issue 16 item 3): rows waiting, the oldest one's age, and dead
letters. Sampled by every relay (one short read every few seconds); replicas sharing a table
report the same values, so alerts take the max per service."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Table, func, select

from mesh import metrics
from mesh.db import Database

log = logging.getLogger("mesh.outbox")

SAMPLE_SECONDS = 5.0


async def sample_forever(
    db: Database, outbox: Table, dead_letter: Table, every: float = SAMPLE_SECONDS
) -> None:
    backlog = select(
        func.count(),
        func.coalesce(func.extract("epoch", func.now() - func.min(outbox.c.created_at)), 0),
    ).select_from(outbox)
    dead = select(func.count()).select_from(dead_letter)
    while True:
        try:
            async with db.read() as conn:
                rows, oldest = (await conn.execute(backlog)).one()
                buried = (await conn.execute(dead)).scalar_one()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an outage: the relay logs it; the gauges keep their values
            log.debug("outbox sample failed: %s", exc)
        else:
            metrics.OUTBOX_BACKLOG.set(rows)
            metrics.OUTBOX_OLDEST_AGE.set(max(0.0, float(oldest)))
            metrics.OUTBOX_DEAD_LETTERS.set(buried)
        await asyncio.sleep(every)
