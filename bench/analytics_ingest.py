"""`python -m bench.analytics_ingest`: how fast the analytics consumers replay a backlog
(issue 14, "Ingest": events applied per second over a backlog of 1,000,000 events).

    python -m bench.analytics_ingest --endpoints PATH [--events 1000000] [--courses 2000]

Pauses the service's durable consumer (JetStream consumer pause, nats-server >= 2.11), publishes
the backlog to the subjects it reads the way the outbox relay does (Nats-Msg-Id, aggregate
seq), resumes it, and times it until nothing is pending or unacknowledged. Events applied are
read from the service's `events_applied_total` counter, so the figure is what the consumers
applied, redeliveries included. The backlog, per learner: Enrolled, VideoProgressFlushed (one
entry), SubmissionGraded (5 questions) and CourseCompleted, over --courses courses of one
fresh instructor. The pause has a deadline, so a tool that dies leaves no consumer stopped
for more than --pause-limit seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from tqdm import tqdm

from devstack.runstate import Endpoints
from elearn.events.v1 import course_events_pb2 as ce
from elearn.events.v1 import quiz_events_pb2 as qe
from elearn.quiz.v1 import quiz_service_pb2 as quiz
from mesh.bus import EVENT_STREAM
from mesh.outbox import AGGREGATE_ID_HEADER, AGGREGATE_SEQ_HEADER
from svc_analytics.ingest import CONSUMER

WINDOW = 2_000  # publishes awaiting their acknowledgement at once
_APPLIED = re.compile(r'^events_applied_total\{consumer="analytics"\} (\S+)$', re.M)

Event = tuple[str, bytes, dict[str, str]]


def applied(metrics_addresses: list[str]) -> float:
    """Events applied so far, summed over the replicas."""
    total = 0.0
    for address in metrics_addresses:
        body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
        match = _APPLIED.search(body)
        total += float(match.group(1)) if match else 0.0
    return total


def _ts(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


def _msg(subject: str, event: object, aggregate: str = "") -> Event:
    headers = {"Nats-Msg-Id": event.event_id}  # type: ignore[attr-defined]
    if aggregate:
        headers[AGGREGATE_ID_HEADER] = aggregate
        headers[AGGREGATE_SEQ_HEADER] = "1"
    return subject, event.SerializeToString(), headers  # type: ignore[attr-defined]


def backlog(events: int, courses: int) -> Iterator[Event]:
    instructor = str(uuid.uuid4())
    course_ids = [str(uuid.uuid4()) for _ in range(courses)]
    quiz_ids = [str(uuid.uuid4()) for _ in range(courses)]
    video_ids = [str(uuid.uuid4()) for _ in range(courses)]
    questions = [str(uuid.uuid4()) for _ in range(5)]
    now = datetime.now(UTC)
    sent = 0
    for course in course_ids:
        info = ce.CourseInfo(course_id=course, instructor_id=instructor, title="ingest")
        yield _msg("elearn.course.course_created",
                   ce.CourseCreated(event_id=str(uuid.uuid4()), occur_time=_ts(now), course=info),
                   course)  # fmt: skip
        sent += 1
    learner = 0
    while sent < events:
        course, quiz_id = course_ids[learner % courses], quiz_ids[learner % courses]
        user = str(uuid.uuid4())
        at = _ts(now - timedelta(seconds=learner % 86_400))
        ids: dict[str, Any] = {"course_id": course, "user_id": user, "instructor_id": instructor}
        enrollment = str(uuid.uuid4())
        four = [
            _msg("elearn.course.enrolled", ce.Enrolled(event_id=str(uuid.uuid4()), occur_time=at,
                 enrollment_id=enrollment, **ids), enrollment),
            _msg("elearn.course.video_progress_flushed", ce.VideoProgressFlushed(
                event_id=str(uuid.uuid4()), occur_time=at, entries=[ce.VideoProgressEntry(
                    user_id=user, course_id=course, video_id=video_ids[learner % courses],
                    position=Duration(seconds=learner % 600), duration=Duration(seconds=600),
                    course_progress_percent=learner % 101, update_time=at)])),
            _msg("elearn.quiz.submission_graded", qe.SubmissionGraded(
                event_id=str(uuid.uuid4()), occur_time=at, submission_id=str(uuid.uuid4()),
                quiz_id=quiz_id, course_id=course, user_id=user, attempt_number=1,
                grade_version=1, score_percent=learner % 101, passed=learner % 101 >= 60,
                submit_time=at, questions=[qe.QuestionGrade(
                    question_id=q, outcome=quiz.QUESTION_OUTCOME_CORRECT
                    if (learner + i) % 3 else quiz.QUESTION_OUTCOME_INCORRECT)
                    for i, q in enumerate(questions)])),
            _msg("elearn.course.course_completed", ce.CourseCompleted(
                event_id=str(uuid.uuid4()), occur_time=at, enrollment_id=enrollment, **ids)),
        ]  # fmt: skip
        for item in four[: events - sent]:
            yield item
            sent += 1
        learner += 1


async def publish(js: JetStreamContext, events: int, courses: int) -> None:
    """Pipelined publishes (publish_async: waiting for each acknowledgement in turn made the
    publisher, not the consumer, the bottleneck), every acknowledgement checked per window."""
    pending: list[asyncio.Future[Any]] = []
    with tqdm(total=events, desc="publish", unit="event", unit_scale=True) as bar:
        for subject, data, headers in backlog(events, courses):
            pending.append(await js.publish_async(subject, data, headers=headers))
            if len(pending) >= WINDOW:
                await asyncio.gather(*pending)
                bar.update(len(pending))
                pending.clear()
        await asyncio.gather(*pending)
        bar.update(len(pending))


async def run(args: argparse.Namespace) -> int:
    endpoints = Endpoints.load(args.endpoints)
    metrics_address = endpoints.metrics["analytics"]
    nc = await nats.connect(endpoints.nats_url)
    js = nc.jetstream()
    limit = datetime.now(UTC) + timedelta(seconds=args.pause_limit)
    await js.pause_consumer(EVENT_STREAM, CONSUMER, limit.isoformat().replace("+00:00", "Z"))
    try:
        started = time.monotonic()
        await publish(js, args.events, args.courses)
        print(f"published {args.events} events in {time.monotonic() - started:.1f} s "
              "(consumer paused)")  # fmt: skip
        before = await asyncio.to_thread(applied, metrics_address)
    finally:
        await js.resume_consumer(EVENT_STREAM, CONSUMER)
    started = time.monotonic()
    with tqdm(total=args.events, desc="apply", unit="event", unit_scale=True) as bar:
        while True:
            info = await js.consumer_info(EVENT_STREAM, CONSUMER)
            now = await asyncio.to_thread(applied, metrics_address)
            bar.n = int(now - before)
            bar.refresh()
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            if time.monotonic() - started > args.give_up:
                print(f"gave up after {args.give_up:g} s", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    count = now - before
    await nc.close()
    print(f"applied {count:.0f} events in {elapsed:.1f} s: {count / elapsed:,.0f} events/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.analytics_ingest", description=__doc__)
    p.add_argument("--endpoints", type=Path, default=Path(".stack/endpoints.json"))
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--courses", type=int, default=2_000)
    p.add_argument("--pause-limit", type=float, default=1800.0)
    p.add_argument("--give-up", type=float, default=3600.0)
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
