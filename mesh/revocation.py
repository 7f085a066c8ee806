"""Revoking access tokens before they expire (issue 10 item 5).

A signed access token cannot be recalled, so a revocation is an event: svc_user writes a
`SessionRevoked` into its outbox in the transaction that revokes the session (Logout, refresh
reuse detection, RevokeRole), so it is published exactly when the revocation commits, even
across a crash. Every service that verifies tokens follows the subject on core NATS (JetStream
publishes on it, so core subscribers see each event as it is stored) and tells its
TokenVerifier, which refuses the covered tokens from then until they would have expired anyway.

A verifier that starts later would miss the revocations made before it, so on start it first
replays, from the JetStream stream, the events still relevant (those younger than the longest
token lifetime it accepts), then follows live ones. Events published while an established
connection is down are missed (core NATS keeps no history); those tokens die at their expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf.message import DecodeError
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.events.v1.user_events_pb2 import SessionRevoked
from mesh import tracing
from mesh.auth import TokenVerifier
from mesh.bus import Bus
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
    bus: Bus, verifier: TokenVerifier, subscribed: asyncio.Event | None = None
) -> None:
    """Apply every SessionRevoked still relevant and every one published from now on, until
    cancelled. `subscribed` is set once past revocations are applied and the NATS server has
    the live subscription, so a caller can say SERVING only then."""
    # Live first, history second: an event published in between is seen twice (harmless),
    # never zero times.
    sub = await bus.nc.subscribe(SUBJECT)
    try:
        await bus.nc.flush()
        await _catch_up(bus, verifier)
        if subscribed is not None:
            subscribed.set()
        async for msg in sub.messages:
            with tracing.consumer_span("apply revocation", msg.subject, msg.headers):
                _apply_message(verifier, msg.data)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    # The iterator ends only when the connection is closed under us; a verifier that no longer
    # hears revocations must not keep serving quietly.
    raise RuntimeError(f"the {SUBJECT} subscription ended")


async def _catch_up(bus: Bus, verifier: TokenVerifier) -> None:
    since = datetime.now(UTC) - timedelta(seconds=verifier.revocation_memory_seconds)
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    try:
        history = await bus.js.subscribe(SUBJECT, ordered_consumer=True, config=config)
    except Exception:
        # Without the stream the live subscription still works; only a restart's gap stays.
        log.warning("cannot replay past session revocations", exc_info=True)
        return
    applied = 0
    try:
        info = await history.consumer_info()
        started = info.delivered is not None and bool(info.delivered.consumer_seq)
        # Each message says how many follow it; stop at the last one present now.
        while info.num_pending or started:
            msg = await history.next_msg(timeout=5)
            _apply_message(verifier, msg.data)
            applied += 1
            if not msg.metadata.num_pending:
                break
    except Exception:
        log.warning("replaying past session revocations stopped early", exc_info=True)
    finally:
        with contextlib.suppress(Exception):
            await history.unsubscribe()
    log.info("replayed past session revocations", extra={"events": applied})


def _apply_message(verifier: TokenVerifier, data: bytes) -> None:
    try:
        event = SessionRevoked.FromString(data)
    except DecodeError:
        log.warning("undecodable %s event ignored", SUBJECT)
        return
    apply_revocation(verifier, event)
    log.debug("session revoked", extra={"user_id": event.user_id, "session_id": event.session_id})
