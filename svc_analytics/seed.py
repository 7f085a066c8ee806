"""`python -m svc_analytics.seed`: fill the analytics read model directly (no events) for the
bench: courses (a given number owned by one "bench instructor"), enrollments with activity and
progress, graded submissions and their per-question answers, then every course's counters.

Rows are generated inside Postgres (generate_series) in chunks, with a progress bar; ids are
md5-derived from --tag, so a rerun with the same tag adds nothing. Full size: 1,000,000
enrollments and 5,000,000 graded answers (the defaults); the 10k comparison is
`--tag bench10k --courses 250 --enrollments 10000 --answers 50000` (bench reads the tag from
BENCH_ANALYTICS_TAG). The database is DATABASE_URL, else the one in --endpoints (a stack's
endpoints.json, default .stack/endpoints.json).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from tqdm import tqdm

from devstack.processes import StackError
from devstack.runstate import tool_database_url
from mesh.db import Database
from svc_analytics import repository
from svc_analytics.models import SCHEMA
from svc_analytics.settings import AnalyticsSettings

# Small enough that no transaction holds its connection past the pool's 2 s warning bound.
CHUNK = 20_000


@dataclass(frozen=True)
class Plan:
    tag: str = "bench"
    courses: int = 5_000
    bench_courses: int = 200
    enrollments: int = 1_000_000
    answers: int = 5_000_000
    questions: int = 10


def md5_uuid(value: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(value.encode()).hexdigest())


def bench_instructor(tag: str) -> uuid.UUID:
    return md5_uuid(f"{tag}:instructor:bench")


# Parameters arrive untyped; one row of typed values (p) keeps the statements readable.
_P = """(SELECT CAST(:tag AS text) AS tag, CAST(:courses AS int) AS courses,
  CAST(:bench AS int) AS bench, CAST(:enrollments AS int) AS enrollments,
  CAST(:questions AS int) AS questions, CAST(:lo AS int) AS lo, CAST(:hi AS int) AS hi) p"""

_COURSES = text(f"""
INSERT INTO courses (course_id, instructor_id, title, created_at, updated_at)
SELECT md5(p.tag || ':course:' || i)::uuid,
       CASE WHEN i <= p.bench THEN md5(p.tag || ':instructor:bench')::uuid
            ELSE md5(p.tag || ':instructor:' || (i % 1000))::uuid END,
       'Course ' || i, now() - make_interval(mins => i), now()
FROM {_P}, generate_series(p.lo, p.hi) AS i
ON CONFLICT DO NOTHING
""")

# Learner j takes course 1 + j % courses; a fifth completed, activity spread over 20 days.
_LEARNERS = text(f"""
INSERT INTO learners (course_id, user_id, active, completed, enroll_seq, enroll_at, enrolled_at,
                      last_activity_at, last_seen_at, progress_percent, progress_at,
                      failing_quiz_count)
SELECT md5(p.tag || ':course:' || (1 + j % p.courses))::uuid, md5(p.tag || ':user:' || j)::uuid,
       true, j % 5 = 0, 1, e, e, a, GREATEST(e, a), j % 101, a, (j % 7 = 0)::int
FROM {_P}, generate_series(p.lo, p.hi) AS j,
     LATERAL (SELECT now() - make_interval(days => j % 30) AS e,
                     now() - make_interval(days => j % 20, secs => j % 3600) AS a) t
ON CONFLICT DO NOTHING
""")

# Each submission answers its quiz's `questions` questions (ids derived from the quiz's), a
# third of them wrongly.
_SUBMISSIONS = text(f"""
INSERT INTO submissions (submission_id, course_id, quiz_id, user_id, attempt_number,
                         grade_version, score_percent, passed, graded_at, question_ids,
                         positions, correct)
SELECT md5(p.tag || ':sub:' || k)::uuid, md5(p.tag || ':course:' || t.course)::uuid,
       t.quiz::uuid, md5(p.tag || ':user:' || t.j)::uuid, 1, 1, (k * 37) % 101,
       (k * 37) % 101 >= 60, now(),
       ARRAY(SELECT md5(t.quiz::uuid::text || ':q:' || q)::uuid
             FROM generate_series(1, p.questions) AS q ORDER BY q),
       ARRAY(SELECT q FROM generate_series(1, p.questions) AS q ORDER BY q),
       ARRAY(SELECT (k + q) % 3 <> 0 FROM generate_series(1, p.questions) AS q ORDER BY q)
FROM {_P}, generate_series(p.lo, p.hi) AS k,
     LATERAL (SELECT 1 + k % p.enrollments AS j) e,
     LATERAL (SELECT e.j, 1 + e.j % p.courses AS course) c,
     LATERAL (SELECT c.j, c.course, md5(p.tag || ':quiz:' || c.course || ':' || k % 2) AS quiz) t
ON CONFLICT DO NOTHING
""")


async def _chunks(db: Database, label: str, stmt: object, total: int, params: dict[str, object],
                  quiet: bool) -> None:  # fmt: skip
    with tqdm(total=total, desc=label, unit="row", disable=quiet, unit_scale=True) as bar:
        for lo in range(1, total + 1, CHUNK):
            hi = min(lo + CHUNK - 1, total)
            async with db.transaction() as conn:
                await conn.execute(stmt, {**params, "lo": lo, "hi": hi})  # type: ignore[call-overload]
            bar.update(hi - lo + 1)


async def seed(db: Database, plan: Plan, *, quiet: bool = False) -> uuid.UUID:
    """Write the plan's rows; returns the bench instructor's id."""
    base = {"tag": plan.tag, "courses": plan.courses, "bench": plan.bench_courses,
            "enrollments": plan.enrollments, "questions": plan.questions}  # fmt: skip
    await _chunks(db, "courses", _COURSES, plan.courses, base, quiet)
    await _chunks(db, "enrollments", _LEARNERS, plan.enrollments, base, quiet)
    submissions = plan.answers // plan.questions
    await _chunks(db, "submissions", _SUBMISSIONS, submissions, base, quiet)
    ids = [md5_uuid(f"{plan.tag}:course:{i}") for i in range(1, plan.courses + 1)]
    cutoff = datetime.now(UTC) - timedelta(days=7)
    with tqdm(total=len(ids), desc="counters", unit="course", disable=quiet) as bar:
        for i in range(0, len(ids), 500):
            async with db.transaction_driver("analytics refresh") as conn:
                chunk = ids[i : i + 500]
                await repository.refresh(conn, chunk, cutoff, recount=chunk)
            bar.update(len(ids[i : i + 500]))
    return bench_instructor(plan.tag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svc_analytics.seed", description=__doc__)
    defaults = Plan()
    parser.add_argument("--tag", default=defaults.tag)
    parser.add_argument("--courses", type=int, default=defaults.courses)
    parser.add_argument("--bench-courses", type=int, default=defaults.bench_courses)
    parser.add_argument("--enrollments", type=int, default=defaults.enrollments)
    parser.add_argument("--answers", type=int, default=defaults.answers)
    parser.add_argument("--questions", type=int, default=defaults.questions)
    parser.add_argument("--endpoints", type=Path, default=Path(".stack/endpoints.json"))
    args = parser.parse_args(argv)
    plan = Plan(args.tag, args.courses, min(args.bench_courses, args.courses), args.enrollments,
                args.answers, args.questions)  # fmt: skip

    # Bulk statements run longer than a service's statement timeout allows.
    update: dict[str, object] = {"db_statement_timeout_ms": 600_000}
    settings = AnalyticsSettings.load()
    try:
        update["database_url"] = tool_database_url(settings.database_url, args.endpoints)
    except StackError as exc:
        parser.error(str(exc))
    settings = settings.model_copy(update=update)

    async def run() -> uuid.UUID:
        async with Database.open(settings, SCHEMA) as db:
            return await seed(db, plan)

    instructor = asyncio.run(run())
    print(f"bench instructor: {instructor} ({plan.bench_courses} courses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
