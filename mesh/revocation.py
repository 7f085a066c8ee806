"""Session revocation events (issue 10, item 5).

Placeholder on the svc_user branch with the agreed signature only; the full version (the
SessionRevoked event written to the outbox) comes from the auth branch at merge.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.outbox import Outbox


async def record_session_revoked(
    outbox: Outbox, conn: AsyncConnection, *, user_id: str, session_id: str, reason: str
) -> None:
    """Record, inside the caller's transaction, that a session of `user_id` is revoked
    (`session_id` "" means every session of the user), so verifiers drop its access tokens."""
    return None
