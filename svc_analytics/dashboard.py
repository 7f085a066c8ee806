"""Reads: the instructor dashboard (cached per instructor generation), a course's at-risk
learners and its detail. Rates and scores: *_percent fields are 0 to 100, *_rate and *_share
fields are fractions 0 to 1 (see the contract)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row

from elearn.analytics.v1 import analytics_service_pb2 as pb
from mesh.cache import Cache, CacheKind
from mesh.context import Caller
from mesh.db import Database
from mesh.errors import InvalidArgument, NotFound, PermissionDenied
from mesh.pagination import decode_token, encode_token
from svc_analytics import reads
from svc_analytics.entries import fill_stats, next_page, stats_entry

# Short: a dashboard page is also retired as soon as one of its courses' counters change.
DASHBOARD = CacheKind("analytics-dashboard", 15)
IDLE_AFTER = timedelta(days=7)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DETAIL_LIMIT = 500


def idle_cutoff(now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - IDLE_AFTER


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def dashboard_page(rows: Sequence[Sequence[Any]], size: int) -> bytes:
    """One serialized ListInstructorCourseStatsResponse: `rows` (entry first, then the id as
    text and created_at in µs) holds up to size + 1 rows, the extra one only telling that a
    next page exists. Each entry is a serialized response of one course, so the page is them
    joined."""
    page = b"".join([row[0] for row in rows[:size]])
    if len(rows) > size:
        last = rows[size - 1]
        created = _EPOCH + timedelta(microseconds=last[-1])
        token = encode_token([created.isoformat(), last[-2]])
        page += next_page(token)
    return page


def _built(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows of STATS_COLUMNS (then id and created_at) as dashboard_page takes them."""
    return [(stats_entry(row), *row[-2:]) for row in rows]


def _after(token: str) -> tuple[datetime, UUID] | None:
    key = decode_token(token, 2)
    if key is None:
        return None
    try:
        return datetime.fromisoformat(key[0]), UUID(key[1])
    except (TypeError, ValueError):
        raise InvalidArgument(
            "page_token is malformed; pass next_page_token from the previous page unchanged",
            violations=[("page_token", "not a token this service issued")],
        ) from None


class Dashboards:
    def __init__(self, db: Database, cache: Cache) -> None:
        self._db = db
        self._cache = cache

    async def instructor(self, caller: Caller, instructor: UUID, size: int, token: str) -> bytes:
        """The serialized page: cached as bytes and returned as bytes (the method is registered
        with an identity serializer), so a hit parses and builds nothing."""
        if str(instructor) != caller.user_id and not caller.is_admin:
            raise PermissionDenied("only the instructor or an admin may read this dashboard")
        after = _after(token)

        async def load() -> bytes:
            async with self._db.read_driver("SELECT analytics dashboard") as conn:
                rows = await reads.dashboard(conn, instructor, size + 1, after)
                if any(row[0] is None for row in rows):
                    rows = _built(await reads.dashboard(
                        conn, instructor, size + 1, after, entries=False
                    ))  # fmt: skip
            return dashboard_page(rows, size)

        # The instructor's pages form one group: ingest bumps it when a course's counters move.
        page = await self._cache.get_or_load_in_generation(
            DASHBOARD, str(instructor), f"{size}:{token}", load
        )
        return page or b""

    async def _course(self, caller: Caller, course: UUID) -> Row[Any]:
        async with self._db.read() as conn:
            row = await reads.course_row(conn, course)
        if row is None:
            raise NotFound("no analytics for this course (unknown course or no events yet)")
        if str(row.instructor_id) != caller.user_id and not caller.is_admin:
            raise PermissionDenied("only the course's instructor or an admin may read this")
        return row

    async def at_risk(
        self, caller: Caller, course: UUID, size: int, token: str
    ) -> pb.ListAtRiskLearnersResponse:
        await self._course(caller, course)
        after = _after(token)
        cutoff = idle_cutoff()
        async with self._db.read() as conn:
            rows = await reads.at_risk(conn, course, cutoff, size + 1, after)
        page = rows[:size]
        learners = []
        for r in page:
            reasons = []
            if r.last_seen_at < cutoff:
                reasons.append(pb.AT_RISK_REASON_INACTIVE)
            if r.failing_quiz_count > 0:
                reasons.append(pb.AT_RISK_REASON_FAILING)
            learners.append(
                pb.AtRiskLearner(
                    user_id=str(r.user_id),
                    reasons=reasons,
                    last_activity_time=_ts(r.last_activity_at),
                    enroll_time=_ts(r.enrolled_at),
                    progress_percent=r.progress_percent,
                    failing_quiz_count=r.failing_quiz_count,
                )
            )
        next_token = ""
        if len(rows) > size:
            last = page[-1]
            next_token = encode_token([last.last_seen_at.isoformat(), str(last.user_id)])
        return pb.ListAtRiskLearnersResponse(learners=learners, next_page_token=next_token)

    async def course(
        self, caller: Caller, course: UUID, quiz: UUID | None
    ) -> pb.GetCourseAnalyticsResponse:
        row = await self._course(caller, course)
        async with self._db.read() as conn:
            scores, questions, videos = await reads.course_detail(conn, course, quiz, DETAIL_LIMIT)
        counts = {r.bucket: r.n for r in scores}
        buckets = [
            pb.ScoreBucket(
                lower_percent=b * 10.0, upper_percent=b * 10.0 + 10.0, count=counts.get(b, 0)
            )
            for b in range(10)
        ]
        answer = pb.GetCourseAnalyticsResponse(
            score_distribution=buckets,
            questions=[
                pb.QuestionStats(
                    quiz_id=str(q.quiz_id),
                    question_id=str(q.question_id),
                    answer_count=q.n,
                    correct_share=float(q.correct_share or 0),
                    discrimination=float(q.discrimination or 0),
                )
                for q in questions
            ],
            videos=[
                pb.VideoDropOff(
                    video_id=str(v.video_id),
                    title=v.title,
                    position=v.position,
                    viewer_count=v.viewers,
                    completion_count=v.completions,
                    drop_off_rate=1.0 - v.completions / v.viewers if v.viewers else 0.0,
                    retention=[float(getattr(v, f"r{k}") or 0) for k in range(1, 11)],
                )
                for v in videos
            ],
        )
        fill_stats(answer.stats, row)
        answer.update_time.CopyFrom(answer.stats.update_time)
        return answer
