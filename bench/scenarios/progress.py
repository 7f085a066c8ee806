"""progress / progress_json: UpdateVideoProgress, the platform's hottest write (finding S1).

Setup makes an instructor, one published course of VIDEOS videos (10 minutes each) and enrolls
every bench student, all through the public API. Each caller is one student who keeps
"watching": it cycles over the course's videos with a growing position, so the run writes
students x VIDEOS distinct (viewer, video) samples, each re-sent many times, as players that
report every ~30 s would. Every call is a real write: one Lua merge in the state Valkey; the
flusher turns the distinct samples into a few batched upserts (the report's note gives the
statement count when pg_stat_statements is loaded).

`progress` speaks native gRPC (through Envoy by default, `--target direct` to the replicas);
`progress_json` sends `PUT /api/videos/{id}/progress` as JSON through Envoy, the browser's
path and the issue's target, over a minimal keep-alive HTTP/1.1 client.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from bench.http1 import Http1Connection, HttpTarget, build_request
from bench.scenarios.base import Scenario, SetupContext, UnexpectedResponse, raw_method
from elearn.course.v1 import course_service_pb2 as cpb
from elearn.course.v1 import course_service_pb2_grpc
from elearn.user.v1 import user_service_pb2 as upb
from elearn.user.v1 import user_service_pb2_grpc

UPDATE = "/elearn.course.v1.CourseService/UpdateVideoProgress"
VIDEOS = 20
VIDEO_SECONDS = 600
# Samples per (caller, video) before the positions start over: 30 s apart, like a player.
ROUNDS = VIDEO_SECONDS // 30


async def prepare_course(ctx: SetupContext) -> dict[str, Any]:
    """An instructor's published course with VIDEOS videos; every caller's student enrolled."""
    if ctx.endpoints is None or not ctx.endpoints.admin_email or not ctx.endpoints.admin_password:
        raise UnexpectedResponse("the progress scenarios need the stack's endpoints (admin)")
    user_address = ctx.endpoints.edge or ctx.endpoints.services["user"][0]
    async with grpc.aio.insecure_channel(user_address) as user_channel:
        users = user_service_pb2_grpc.UserServiceStub(user_channel)
        sessions = await ctx.accounts.ensure_sessions(user_channel, ctx.callers)
        admin = await users.Login(
            upb.LoginRequest(email=ctx.endpoints.admin_email, password=ctx.endpoints.admin_password)
        )
        # Unique per setup: both progress scenarios may run in one bench run.
        email = f"bench-{ctx.run_id}-instructor-{uuid.uuid4().hex[:8]}@bench.local"
        teacher = await users.Register(
            upb.RegisterRequest(
                email=email,
                password=ctx.accounts.password,
                display_name="bench instructor",
                idempotency_key=uuid.uuid4().hex,
            )
        )
        await users.GrantRole(
            upb.GrantRoleRequest(user_id=teacher.user.user_id, role=upb.ROLE_INSTRUCTOR),
            metadata=_auth(admin.tokens.access_token),
        )
        login = await users.Login(upb.LoginRequest(email=email, password=ctx.accounts.password))
    courses = course_service_pb2_grpc.CourseServiceStub(ctx.channel)
    teach = _auth(login.tokens.access_token)
    course = (
        await courses.CreateCourse(
            cpb.CreateCourseRequest(
                course=cpb.Course(
                    title=f"Bench course {ctx.run_id}",
                    description="Videos the progress benchmark watches.",
                    category="programming",
                    level=cpb.COURSE_LEVEL_BEGINNER,
                    language="en",
                ),
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=teach,
        )
    ).course
    videos = []
    for n in range(1, VIDEOS + 1):
        made = await courses.CreateVideo(
            cpb.CreateVideoRequest(
                course_id=course.course_id,
                video=cpb.Video(
                    title=f"Part {n}", position=n, duration=Duration(seconds=VIDEO_SECONDS)
                ),
                idempotency_key=uuid.uuid4().hex,
            ),
            metadata=teach,
        )
        videos.append(made.video.video_id)
    await courses.PublishCourse(
        cpb.PublishCourseRequest(course_id=course.course_id), metadata=teach
    )
    tokens = sorted({s.access_token for s in sessions})
    for token in tokens:
        await courses.Enroll(
            cpb.EnrollRequest(course_id=course.course_id, idempotency_key=uuid.uuid4().hex),
            metadata=_auth(token),
        )
    return {
        "tokens": [s.access_token for s in sessions],
        "videos": videos,
        "edge": ctx.endpoints.edge,
    }


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def _positions(caller: int) -> list[tuple[int, int]]:
    """(video index, position s) in watching order, each caller starting elsewhere."""
    order = [(v, (r + 1) * 30) for r in range(ROUNDS) for v in range(VIDEOS)]
    shift = (caller * 7) % len(order)
    return order[shift:] + order[:shift]


class ProgressGrpc(Scenario):
    name = "progress"
    summary = "CourseService/UpdateVideoProgress over gRPC (write-behind through Valkey)"
    service = "course"

    async def setup(self, ctx: SetupContext) -> Any:
        return await prepare_course(ctx)

    def make_state(self, data: Any, caller: int) -> Any:
        token = data["tokens"][caller % len(data["tokens"])]
        requests = [
            cpb.UpdateVideoProgressRequest(
                video_id=data["videos"][v],
                position=Duration(seconds=pos),
                watched=Duration(seconds=pos),
            ).SerializeToString()
            for v, pos in _positions(caller)
        ]
        return {"metadata": _auth(token), "requests": requests, "next": 0}

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return raw_method(channel, UPDATE)

    async def call(self, stub: Any, state: Any) -> None:
        i = state["next"]
        state["next"] = (i + 1) % len(state["requests"])
        await stub(state["requests"][i], metadata=state["metadata"], timeout=self.timeout_s)


def _json_requests(data: Any, caller: int) -> list[HttpTarget]:
    """One caller's PUTs, in watching order; `url` is the path (the edge goes in front)."""
    token = data["tokens"][caller % len(data["tokens"])]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return [
        HttpTarget(
            "PUT",
            f"/api/videos/{data['videos'][v]}/progress",
            headers,
            json.dumps({"position": f"{pos}s", "watched": f"{pos}s"}).encode(),
        )
        for v, pos in _positions(caller)
    ]


class ProgressJson(Scenario):
    name = "progress_json"
    summary = "PUT /api/videos/{id}/progress as JSON through Envoy (the browser's path)"
    service = "course"

    async def setup(self, ctx: SetupContext) -> Any:
        data = await prepare_course(ctx)
        if not data["edge"]:
            raise UnexpectedResponse("progress_json needs Envoy (the stack's edge address)")
        return data

    def make_state(self, data: Any, caller: int) -> Any:
        host, _, port = data["edge"].rpartition(":")
        requests = [
            build_request(t.method, data["edge"], t.url, t.headers, t.body)
            for t in _json_requests(data, caller)
        ]
        return {"conn": Http1Connection(host, int(port)), "requests": requests, "next": 0}

    def http_targets(self, data: Any, callers: int) -> list[HttpTarget]:
        """For `--driver httpload`: every caller's requests interleaved (the first of each, then
        the second …), so consecutive calls come from different viewers, as from the Python
        driver's callers."""
        per_caller = [_json_requests(data, c) for c in range(callers)]
        base = f"http://{data['edge']}"
        return [
            HttpTarget(t.method, base + t.url, t.headers, t.body)
            for step in zip(*per_caller, strict=True)
            for t in step
        ]

    def make_stub(self, channel: grpc.aio.Channel) -> Any:
        return None

    async def call(self, stub: Any, state: Any) -> None:
        i = state["next"]
        state["next"] = (i + 1) % len(state["requests"])
        await state["conn"].send(state["requests"][i], self.timeout_s)
