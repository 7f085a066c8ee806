"""Cache invalidation by event (M1): the course service's own events, consumed from JetStream.

Writers already invalidate right after their commit. This consumer does it again when the
event arrives, which covers what a direct delete cannot: a concurrent cache miss that read the
row just before the commit and stored it just after the delete, and writes made by other
replicas or by the progress flusher (a completion changes an enrollment's cached status). One
durable consumer is shared by every replica, since the cache they invalidate is shared too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from elearn.events.v1 import course_events_pb2 as events
from mesh import tracing
from mesh.bus import EVENT_STREAM, Bus, watch_consumer
from svc_course.lookups import Lookups

log = logging.getLogger("svc_course.cache_events")

DURABLE = "course-cache-invalidation"
SUBJECTS = "elearn.course.>"
_COURSE_EVENTS: dict[
    str, type[events.CourseUpdated] | type[events.CoursePublished] | type[events.CourseArchived]
] = {
    "elearn.course.course_updated": events.CourseUpdated,
    "elearn.course.course_published": events.CoursePublished,
    "elearn.course.course_archived": events.CourseArchived,
}


async def invalidate(lookups: Lookups, subject: str, payload: bytes) -> None:
    """Drop what one event makes stale. Unknown subjects are someone else's business."""
    if subject in ("elearn.course.enrolled", "elearn.course.unenrolled"):
        e: events.Enrolled | events.Unenrolled = (
            events.Enrolled.FromString(payload)
            if subject.endswith(".enrolled")
            else events.Unenrolled.FromString(payload)
        )
        await lookups.forget_enrollment_and_course(e.course_id, e.user_id)
    elif subject == "elearn.course.course_completed":
        done = events.CourseCompleted.FromString(payload)
        await lookups.forget_enrollments([(done.course_id, done.user_id)])
    elif subject == "elearn.course.video_progress_flushed":
        flushed = events.VideoProgressFlushed.FromString(payload)
        pairs = {(e.course_id, e.user_id) for e in flushed.entries}
        await lookups.forget_enrollments(sorted(pairs))
    elif subject in _COURSE_EVENTS:
        changed = _COURSE_EVENTS[subject].FromString(payload)
        await lookups.forget_course(changed.course.course_id)


async def consume(bus: Bus, lookups: Lookups, *, batch: int = 256) -> None:
    """Run forever; a failed batch is redelivered after the consumer's ack wait."""
    config = ConsumerConfig(
        durable_name=DURABLE,
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=10,
        max_ack_pending=10_000,
    )
    sub = await bus.js.pull_subscribe(SUBJECTS, durable=DURABLE, config=config)
    watcher = asyncio.create_task(watch_consumer(bus, EVENT_STREAM, DURABLE))
    try:
        await _fetch_loop(sub, lookups, batch)
    finally:
        watcher.cancel()


async def _fetch_loop(sub: Any, lookups: Lookups, batch: int) -> None:
    while True:
        try:
            messages: list[Msg] = await sub.fetch(batch, timeout=1.0)
        except (NatsTimeout, TimeoutError):
            continue  # nothing new within the fetch window
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fetching course events failed; retrying")
            await asyncio.sleep(1.0)
            continue
        for msg in messages:
            try:
                with tracing.consumer_span("invalidate", msg.subject, msg.headers):
                    await invalidate(lookups, msg.subject, msg.data)
            except Exception:
                log.exception("cache invalidation for %s failed", msg.subject)
                await msg.nak(delay=1.0)
            else:
                await msg.ack()
