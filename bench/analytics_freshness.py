"""`python -m bench.analytics_freshness`: event-to-dashboard lag under load (issue 14,
"Freshness": p95 under 2 s while the progress and exam-rush scenarios run).

    python -m bench.analytics_freshness --endpoints PATH [--duration 20] [--probes-per-second 2]
                                        [--load progress,exam_rush]

Two measures, from the same window:
- probes: a probe course gets an Enrolled event every 1/rate s, stamped with its creation time
  and published to JetStream the way the outbox relay publishes; the tool polls the
  instructor dashboard (through the edge, as the admin) until the new enrollment count shows.
  Lag = first read showing it - the event's creation time. This is the dashboard as a user
  sees it: consumer, counters, cache retirement and the read path.
- histogram: the consumer's own `event_apply_lag_seconds` (creation, i.e. occur_time, to
  commit, every event it applied, the load's included), read from the analytics metrics before
  and after; its p95 is given as the upper bound of the bucket that holds it.
`--load` runs one `python -m bench --scenario NAME` per scenario, at once, for the duration;
the probes go on until they end (`--load ''` probes an idle stack for the duration).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import nats
from google.protobuf.timestamp_pb2 import Timestamp

from devstack.runstate import Endpoints
from elearn.analytics.v1 import analytics_service_pb2 as pb
from elearn.analytics.v1.analytics_service_pb2_grpc import AnalyticsServiceStub
from elearn.events.v1 import course_events_pb2 as ce
from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from mesh.outbox import AGGREGATE_ID_HEADER, AGGREGATE_SEQ_HEADER

POLL_S = 0.01
GIVE_UP_S = 30.0
_BUCKET = re.compile(
    r'^event_apply_lag_seconds_bucket\{consumer="analytics",le="([^"]+)"\} (\S+)$', re.M
)


def _ts(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


def lag_buckets(metrics_address: str) -> dict[float, float]:
    """Cumulative counts per upper bound of the consumer's lag histogram."""
    url = f"http://{metrics_address}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    return {float(le): float(n) for le, n in _BUCKET.findall(body)}


def p95_bound(before: dict[float, float], after: dict[float, float]) -> tuple[float, float]:
    """(events in the window, upper bound of the bucket holding their 95th percentile)."""
    bounds = sorted(after)
    delta = [after[b] - before.get(b, 0.0) for b in bounds]
    total = delta[-1] if delta else 0.0
    for bound, cumulative in zip(bounds, delta, strict=True):
        if total and cumulative >= 0.95 * total:
            return total, bound
    return total, float("nan")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def probe(endpoints: Endpoints, until: Callable[[], bool], rate: float) -> list[float]:
    assert endpoints.edge, "the stack has no edge"
    course, instructor = str(uuid.uuid4()), str(uuid.uuid4())
    nc = await nats.connect(endpoints.nats_url)
    js = nc.jetstream()
    lags: list[float] = []
    async with grpc.aio.insecure_channel(endpoints.edge) as channel:
        login = await UserServiceStub(channel).Login(
            user_pb.LoginRequest(email=endpoints.admin_email, password=endpoints.admin_password)
        )
        auth = (("authorization", f"Bearer {login.tokens.access_token}"),)
        stub = AnalyticsServiceStub(channel)
        request = pb.ListInstructorCourseStatsRequest(instructor_id=instructor)

        async def enrolled() -> int:
            page = await stub.ListInstructorCourseStats(request, metadata=auth, timeout=5)
            return next((c.enrollment_count for c in page.courses), 0)

        info = ce.CourseInfo(course_id=course, instructor_id=instructor, title="freshness probe")
        created = ce.CourseCreated(
            event_id=str(uuid.uuid4()), occur_time=_ts(datetime.now(UTC)), course=info
        )
        await js.publish("elearn.course.course_created", created.SerializeToString(),
                         headers={"Nats-Msg-Id": created.event_id, AGGREGATE_ID_HEADER: course,
                                  AGGREGATE_SEQ_HEADER: "1"})  # fmt: skip
        count = 0
        while not until():
            started = time.monotonic()
            count += 1
            event = ce.Enrolled(
                event_id=str(uuid.uuid4()), occur_time=_ts(datetime.now(UTC)),
                enrollment_id=str(uuid.uuid4()), course_id=course, instructor_id=instructor,
                user_id=str(uuid.uuid4()),
            )  # fmt: skip
            await js.publish("elearn.course.enrolled", event.SerializeToString(),
                             headers={"Nats-Msg-Id": event.event_id,
                                      AGGREGATE_ID_HEADER: event.enrollment_id,
                                      AGGREGATE_SEQ_HEADER: "1"})  # fmt: skip
            deadline = started + GIVE_UP_S
            while await enrolled() < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"enrollment {count} not on the dashboard in {GIVE_UP_S} s")
                await asyncio.sleep(POLL_S)
            seen = datetime.now(UTC)
            lags.append((seen - event.occur_time.ToDatetime(tzinfo=UTC)).total_seconds())
            await asyncio.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
    await nc.close()
    return lags


async def run(args: argparse.Namespace) -> int:
    endpoints = Endpoints.load(args.endpoints)
    metrics_address = endpoints.metrics["analytics"][0]
    before = await asyncio.to_thread(lag_buckets, metrics_address)
    # One bench process per scenario, so they run at once; the probes last as long as they do.
    loads = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench", "--scenario", name, "--duration", str(args.duration),
            "--warmup", "0", "--endpoints", str(args.endpoints),
            stdout=asyncio.subprocess.DEVNULL,
        )
        for name in filter(None, args.load.split(","))
    ]  # fmt: skip
    end = time.monotonic() + args.duration

    def done() -> bool:
        if loads:
            return all(proc.returncode is not None for proc in loads)
        return time.monotonic() >= end

    lags = await probe(endpoints, done, args.probes_per_second)
    for proc in loads:
        await proc.wait()
    after = await asyncio.to_thread(lag_buckets, metrics_address)
    events, bound = p95_bound(before, after)
    ms = [lag * 1000 for lag in lags]
    print(f"load: {args.load or 'none'}, {args.duration:g} s")
    print(f"probes: {len(ms)}  event-to-dashboard p50 {_percentile(ms, 0.5):.0f} ms  "
          f"p95 {_percentile(ms, 0.95):.0f} ms  max {max(ms):.0f} ms")  # fmt: skip
    print(f"consumer histogram: {events:.0f} events applied, p95 <= {bound:g} s (bucket bound)")
    return 0 if _percentile(ms, 0.95) < 2000 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.analytics_freshness", description=__doc__)
    p.add_argument("--endpoints", type=Path, default=Path(".stack/endpoints.json"))
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--probes-per-second", type=float, default=2.0)
    p.add_argument("--load", default="progress,exam_rush",
                   help="bench scenarios run meanwhile ('' for none)")  # fmt: skip
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
