"""Revoking access tokens before they expire (issue 10 item 5).

A signed access token cannot be recalled, so a revocation is an event: svc_user writes a
`SessionRevoked` into its outbox in the transaction that revokes the session (Logout, refresh
reuse detection, RevokeRole), so it is published exactly when the revocation commits, even
across a crash. Every service that verifies tokens follows the subject on core NATS (JetStream
publishes on it, so core subscribers see each event as it is stored) and tells its
TokenVerifier, which refuses the covered tokens from then until they would have expired anyway.

Core NATS keeps no history: a verifier that is disconnected or starting when an event goes out
misses it, and those tokens stay valid until their expiry (15 minutes by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.events.v1.user_events_pb2 import SessionRevoked
from mesh.auth import TokenVerifier
from mesh.outbox import Outbox, new_event_id

log = logging.getLogger("mesh.revocation")

SUBJECT = "elearn.user.session_revoked"


async def record_session_revoked(
    outbox: Outbox,
    conn: AsyncConnection,
    *,
    user_id: str | uuid.UUID,
    session_id: str | uuid.UUID | None,
    reason: str,
) -> None:
    """Record, inside the caller's transaction, that a session's access tokens are revoked.

    `session_id` is the refresh-token family id (the tokens' `sid`); None or "" revokes every
    token of the user issued up to now. Call `outbox.notify()` after the commit so the relay
    publishes at once.
    """
    event_id, occur_time = new_event_id()
    event = SessionRevoked(
        event_id=event_id,
        occur_time=occur_time,
        user_id=str(user_id),
        session_id=str(session_id) if session_id else "",
        reason=reason,
    )
    await outbox.add(conn, SUBJECT, event_id, event)


def apply_revocation(verifier: TokenVerifier, event: SessionRevoked) -> None:
    revoked_at = event.occur_time.seconds + event.occur_time.nanos / 1e9
    if event.session_id:
        verifier.revoke_session(event.session_id, revoked_at)
    else:
        verifier.revoke_user(event.user_id, revoked_at)


async def follow_revocations(
    nc: NATS, verifier: TokenVerifier, subscribed: asyncio.Event | None = None
) -> None:
    """Apply every SessionRevoked published from now on, until cancelled. `subscribed` is set
    once the NATS server has the subscription, so a caller can say SERVING only then."""
    sub = await nc.subscribe(SUBJECT)
    try:
        await nc.flush()
        if subscribed is not None:
            subscribed.set()
        async for msg in sub.messages:
            try:
                event = SessionRevoked.FromString(msg.data)
            except DecodeError:
                log.warning("undecodable %s event ignored", SUBJECT)
                continue
            apply_revocation(verifier, event)
            log.debug(
                "session revoked",
                extra={"user_id": event.user_id, "session_id": event.session_id},
            )
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    # The iterator ends only when the connection is closed under us; a verifier that no longer
    # hears revocations must not keep serving quietly.
    raise RuntimeError(f"the {SUBJECT} subscription ended")
