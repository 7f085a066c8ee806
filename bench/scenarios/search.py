"""search: CourseService/SearchCourses over a seeded catalog (M3's target: p95 under 50 ms over
100,000 courses, typo queries included).

Seed first: `python -m svc_course.seed --courses 100000 ...` (it analyzes the tables it filled
at its end, so the planner knows the catalog's size before the first search). Queries are
drawn from the seeded vocabulary: subjects, subject + focus pairs, and the same with two
letters swapped (a typo the trigram correction must repair) — about 3,700 distinct queries,
each caller walking them from its own offset. Result pages are cached under a catalog
generation, so a long run is mostly hits once every query has been asked; the report's `cold`
counter says how many calls came first for their query in this caller (an upper bound on the
misses it caused).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.scenarios.base import Scenario, SetupContext, raw_method
from elearn.course.v1 import course_service_pb2 as pb
from svc_course.seed import CJK_TITLES, FOCUS, SUBJECTS

SEARCH = "/elearn.course.v1.CourseService/SearchCourses"


def typo(word: str, rng: random.Random) -> str:
    """The word with two neighbouring letters swapped (not the first: people get that right)."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def queries(seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for subject in SUBJECTS:
        out += [subject.lower(), typo(subject.lower(), rng)]
        for focus in FOCUS:
            pair = f"{subject} {focus}".lower()
            out += [pair, " ".join(typo(w, rng) for w in pair.split())]
    out += [title[:3] for title in CJK_TITLES]
    return list(dict.fromkeys(out))


@dataclass
class Walker:
    requests: list[bytes]
    at: int
    seen: set[int] = field(default_factory=set)
    cold: int = 0


class Search(Scenario):
    name = "search"
    summary = "CourseService/SearchCourses: seeded-catalog queries, a third with typos"
    service = "course"

    async def setup(self, ctx: SetupContext) -> Any:
        probe = await raw_method(ctx.channel, SEARCH)(
            pb.SearchCoursesRequest(page_size=1).SerializeToString(), timeout=self.timeout_s
        )
        if not pb.SearchCoursesResponse.FromString(probe).results:
            raise ConnectionError(
                "the catalog is empty: seed it first (python -m svc_course.seed --courses 100000)"
            )
        return [pb.SearchCoursesRequest(query=q).SerializeToString() for q in queries()]

    def make_state(self, data: Any, caller: int) -> Walker:
        return Walker(data, (caller * 7919) % len(data))

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, SEARCH)

    async def call(self, stub: Any, state: Walker) -> None:
        index = state.at
        state.at = (state.at + 1) % len(state.requests)
        if index not in state.seen:
            state.seen.add(index)
            state.cold += 1
        await stub(state.requests[index], timeout=self.timeout_s)

    def counters(self, states: list[Any]) -> dict[str, int]:
        return {"cold": sum(s.cold for s in states)}
