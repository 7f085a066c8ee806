"""The read model fed by real events in the real JetStream stream (issue 14 items 1-5): the
dashboard figures, idempotence under duplicates and out-of-order delivery, at-risk learners,
course detail, permissions, cache invalidation and the freshness metric."""

from __future__ import annotations

import asyncio
import re
import urllib.request
import uuid

import grpc
import pytest

from devstack.stack import Endpoints
from elearn.analytics.v1 import analytics_service_pb2 as pb
from elearn.analytics.v1.analytics_service_pb2_grpc import AnalyticsServiceStub
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from tests.conftest import Account, make_account
from tests.mesh.polling import eventually
from tests.svc_analytics.conftest import CORRECT, INCORRECT, Publisher, days_ago, now


async def _row(stub: AnalyticsServiceStub, who: Account, course: str) -> pb.CourseStats | None:
    answer = await stub.ListInstructorCourseStats(
        pb.ListInstructorCourseStatsRequest(instructor_id=who.user.user_id), metadata=who.auth
    )
    return next((c for c in answer.courses if c.course_id == course), None)


def _figures(row: pb.CourseStats | None) -> tuple[object, ...] | None:
    if row is None:
        return None
    return (
        row.title, row.enrollment_count, row.completion_count, round(row.completion_rate, 6),
        round(row.completion_percent, 6), round(row.average_score_percent, 6),
        row.graded_submission_count, row.active_learner_count, row.at_risk_learner_count,
    )  # fmt: skip


async def _seed(pub: Publisher, instructor: str) -> dict[str, str]:
    names = ("course", "l1", "l2", "l3", "l4", "l5", "v1", "q", "q1", "q2")
    ids = {k: str(uuid.uuid4()) for k in names}
    c = ids["course"]
    await pub.course(c, instructor, "Algebra")
    await pub.enroll(c, instructor, ids["l1"])
    await pub.enroll(c, instructor, ids["l2"], at=days_ago(10))
    await pub.enroll(c, instructor, ids["l3"])
    # Out of order: the later Unenrolled (seq 2) arrives before its Enrolled (seq 1).
    await pub.enroll(c, instructor, ids["l4"], seq=2, enrolled=False)
    await pub.enroll(c, instructor, ids["l4"], seq=1)
    await pub.enroll(c, instructor, ids["l5"], at=days_ago(10))
    await pub.progress([
        (c, ids["l1"], ids["v1"], 100, 100, True, 100.0, now()),
        (c, ids["l5"], ids["v1"], 30, 100, False, 30.0, days_ago(9)),
    ])  # fmt: skip
    both = [(ids["q1"], CORRECT), (ids["q2"], CORRECT)]
    ids["s1"] = await pub.graded(c, ids["l1"], ids["q"], 80, True, both)
    half = [(ids["q1"], INCORRECT), (ids["q2"], CORRECT)]
    await pub.graded(c, ids["l3"], ids["q"], 40, False, half)
    await pub.complete(c, instructor, ids["l1"])
    return ids


# enrolled l1 l2 l3 l5 (l4 left); completed l1; grades 80 and 40; active in 7 days: l1 (progress)
# and l3 (submission); at risk: l2 and l5 idle, l3 failing.
EXPECTED = ("Algebra", 4, 1, 0.25, 25.0, 60.0, 2, 2, 3)


async def test_dashboard_figures_from_events_survive_duplicates_and_reordering(
    stack: Endpoints, users: UserServiceStub, analytics: AnalyticsServiceStub, publisher: Publisher
) -> None:
    instructor = await make_account(users, "instructor")
    me = instructor.user.user_id
    ids = await _seed(publisher, me)

    async def settled() -> bool:
        return _figures(await _row(analytics, instructor, ids["course"])) == EXPECTED

    await eventually(settled, within=20)

    # The same events again (as a relay retrying past the de-duplication window would send
    # them), then a sentinel: once the sentinel is visible, the duplicates were applied.
    await _seed_again(publisher, ids, me)
    sentinel = str(uuid.uuid4())
    await publisher.course(sentinel, me, "Sentinel")

    async def sentinel_seen() -> bool:
        return await _row(analytics, instructor, sentinel) is not None

    await eventually(sentinel_seen, within=20)
    assert _figures(await _row(analytics, instructor, ids["course"])) == EXPECTED

    # A new enrollment shows within seconds although the page was just cached (15 s TTL): the
    # course's counters changed, so its dashboard was retired.
    await publisher.enroll(ids["course"], me, str(uuid.uuid4()))

    async def counted() -> bool:
        row = await _row(analytics, instructor, ids["course"])
        return row is not None and row.enrollment_count == 5

    assert await eventually(counted, within=10) < 10


async def _seed_again(pub: Publisher, ids: dict[str, str], instructor: str) -> None:
    c = ids["course"]
    sub = ids["s1"]
    both = [(ids["q1"], CORRECT), (ids["q2"], CORRECT)]
    await pub.graded(c, ids["l1"], ids["q"], 80, True, both, submission=sub)
    # A grade with an older version arriving late changes nothing.
    wrong = [(ids["q1"], INCORRECT)]
    await pub.graded(c, ids["l1"], ids["q"], 10, False, wrong, submission=sub, version=0)
    await pub.enroll(c, instructor, ids["l4"], seq=1, at=days_ago(1))
    await pub.complete(c, instructor, ids["l1"])


@pytest.fixture
def stub(analytics: AnalyticsServiceStub) -> AnalyticsServiceStub:
    return analytics


async def test_at_risk_learners_detail_and_permissions(
    stack: Endpoints, users: UserServiceStub, stub: AnalyticsServiceStub, publisher: Publisher,
    admin: Account,
) -> None:  # fmt: skip
    instructor = await make_account(users, "instructor")
    ids = await _seed(publisher, instructor.user.user_id)

    async def settled() -> bool:
        row = await _row(stub, instructor, ids["course"])
        return _figures(row) == EXPECTED

    await eventually(settled, within=20)
    first = await stub.ListAtRiskLearners(
        pb.ListAtRiskLearnersRequest(course_id=ids["course"], page_size=2), metadata=admin.auth
    )
    assert first.next_page_token
    rest = await stub.ListAtRiskLearners(
        pb.ListAtRiskLearnersRequest(
            course_id=ids["course"], page_size=2, page_token=first.next_page_token
        ),
        metadata=instructor.auth,
    )
    assert not rest.next_page_token
    learners = list(first.learners) + list(rest.learners)
    # Most idle first: l2 (enrolled 10 days ago, nothing since), l5 (last progress 9 days ago).
    assert [x.user_id for x in learners] == [ids["l2"], ids["l5"], ids["l3"]]
    assert [list(x.reasons) for x in learners] == [
        [pb.AT_RISK_REASON_INACTIVE], [pb.AT_RISK_REASON_INACTIVE], [pb.AT_RISK_REASON_FAILING]
    ]  # fmt: skip
    assert not learners[0].HasField("last_activity_time")
    assert learners[1].progress_percent == pytest.approx(30.0)

    detail = await stub.GetCourseAnalytics(
        pb.GetCourseAnalyticsRequest(course_id=ids["course"]), metadata=instructor.auth
    )
    assert [b.count for b in detail.score_distribution] == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    assert [(q.question_id, q.answer_count, q.correct_share) for q in detail.questions] == [
        (ids["q1"], 2, 0.5), (ids["q2"], 2, 1.0)
    ]  # fmt: skip
    (video,) = detail.videos
    assert (video.video_id, video.viewer_count, video.completion_count) == (ids["v1"], 2, 1)
    assert video.drop_off_rate == pytest.approx(0.5)
    assert [round(r, 3) for r in video.retention] == [1.0] * 3 + [0.5] * 7

    stranger = await make_account(users, "stranger")
    calls = [
        stub.ListInstructorCourseStats(
            pb.ListInstructorCourseStatsRequest(instructor_id=instructor.user.user_id),
            metadata=stranger.auth,
        ),
        stub.ListAtRiskLearners(
            pb.ListAtRiskLearnersRequest(course_id=ids["course"]), metadata=stranger.auth
        ),
        stub.GetCourseAnalytics(
            pb.GetCourseAnalyticsRequest(course_id=ids["course"]), metadata=stranger.auth
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ListInstructorCourseStats(
            pb.ListInstructorCourseStatsRequest(instructor_id="nope"), metadata=admin.auth
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_event_to_applied_latency_is_exported(
    stack: Endpoints, users: UserServiceStub, analytics: AnalyticsServiceStub, publisher: Publisher
) -> None:
    instructor = await make_account(users, "instructor")
    course = str(uuid.uuid4())
    await publisher.course(course, instructor.user.user_id, "Metered")

    async def seen() -> bool:
        return await _row(analytics, instructor, course) is not None

    await eventually(seen, within=20)
    url = f"http://{stack.metrics['analytics'][0]}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    match = re.search(r'^event_apply_lag_seconds_count\{consumer="analytics"\} (\S+)$', body, re.M)
    assert match is not None and float(match.group(1)) >= 1
