"""The course workflow through Envoy as JSON, the way the README shows it: create, add a video,
publish, search with a typo, enroll (twice), check, and the HTTP codes of the failures."""

from __future__ import annotations

import uuid

import httpx

from devstack.runstate import Endpoints
from tests.people import People, Person


def bearer(who: Person) -> dict[str, str]:
    return {"authorization": f"Bearer {who.token}"}


async def test_course_workflow_as_json(stack: Endpoints, people: People) -> None:
    teacher, student = people.instructor(), people.student()
    category = f"edge-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=f"http://{stack.edge}", timeout=10) as edge:
        created = await edge.post(
            "/api/courses",
            headers=bearer(teacher),
            json={
                "course": {"title": "Kotlin für Anfänger", "category": category,
                           "level": "COURSE_LEVEL_BEGINNER", "language": "de", "capacity": 1},
                "idempotencyKey": uuid.uuid4().hex,
            },
        )  # fmt: skip
        assert created.status_code == 200, created.text
        course = created.json()["course"]
        assert course["state"] == "COURSE_STATE_DRAFT"
        cid = course["courseId"]
        video = await edge.post(
            f"/api/courses/{cid}/videos",
            headers=bearer(teacher),
            json={"video": {"title": "Hallo", "duration": "300s"}, "idempotencyKey": "v1"},
        )
        assert video.status_code == 200 and video.json()["video"]["duration"] == "300s"
        published = await edge.post(f"/api/courses/{cid}/publish", headers=bearer(teacher), json={})
        assert published.json()["course"]["totalDuration"] == "300s"
        found = await edge.get(
            "/api/courses/search", params={"query": "kotlni fur", "category": category}
        )
        assert [r["course"]["courseId"] for r in found.json()["results"]] == [cid]
        first = await edge.post(f"/api/courses/{cid}/enroll", headers=bearer(student), json={})
        again = await edge.post(f"/api/courses/{cid}/enroll", headers=bearer(student), json={})
        assert first.json()["created"] is True
        assert again.json().get("created", False) is False
        assert (
            first.json()["enrollment"]["enrollmentId"] == again.json()["enrollment"]["enrollmentId"]
        )
        check = await edge.get(
            f"/api/courses/{cid}/enrollments/{student.user_id}", headers=bearer(student)
        )
        assert check.json()["enrolled"] is True
        full = await edge.post(
            f"/api/courses/{cid}/enroll", headers=bearer(people.student()), json={}
        )
        assert full.status_code == 400 and "full" in full.json()["message"]
        missing = await edge.get(f"/api/courses/{uuid.uuid4()}")
        assert missing.status_code == 404
        malformed = await edge.get("/api/courses/not-a-uuid")
        assert malformed.status_code == 400 and "UUID" in malformed.json()["message"]
