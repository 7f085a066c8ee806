"""Purging refresh tokens that can no longer be used (issue 10, item 11).

Every login and every refresh adds a row; without a purge the table only grows. A row is dead
from the earliest of its expiry, its use and its revocation; it is kept `older_than` after
that (a spent token is needed to recognise its replay), then deleted in batches so no single
statement locks or logs much. Replicas may run it side by side: locked rows are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from mesh.db import Database
from svc_user import repository as repo

log = logging.getLogger("svc_user.token_purge")


async def purge_spent_refresh_tokens(db: Database, *, older_than: timedelta, batch: int) -> int:
    """Delete every token dead for longer than `older_than`; returns how many went."""
    before = datetime.now(UTC) - older_than
    total = 0
    while True:
        async with db.transaction() as conn:
            removed = await repo.delete_dead_refresh_tokens(conn, before=before, limit=batch)
        total += removed
        if removed < batch:
            return total


async def purge_forever(
    db: Database, *, older_than: timedelta, batch: int, interval_seconds: float
) -> None:
    """The background task: purge now and then every interval. A failed round (the database
    restarting, say) is logged and retried next time rather than stopping the service."""
    while True:
        try:
            removed = await purge_spent_refresh_tokens(db, older_than=older_than, batch=batch)
            if removed:
                log.info("purged refresh tokens", extra={"removed": removed})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refresh token purge failed; retrying next interval")
        await asyncio.sleep(interval_seconds)
