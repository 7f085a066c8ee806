"""Request checks for svc_course: every bad field is reported at once, by name, and values come
back normalised (stripped text, de-duplicated tags, enum names as stored)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from google.protobuf.duration_pb2 import Duration

from elearn.course.v1 import course_service_pb2 as pb
from mesh.errors import FieldErrors, InvalidArgument
from svc_course.messages import COURSE_STATES, ENROLLMENT_STATES, LEVELS

MAX_TITLE = 200
MAX_COURSE_DESCRIPTION = 20_000
MAX_VIDEO_DESCRIPTION = 5_000
MAX_CATEGORY = 64
MAX_TAG, MAX_TAGS = 40, 20
MAX_KEY = 128
MAX_QUERY = 200
# Far beyond any real course, and keeps the counters' int32 sums safe.
MAX_CAPACITY = 1_000_000
MAX_VIDEO_SECONDS = 24 * 3600
MAX_POSITION = 10_000
CATEGORY = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# BCP 47 in the shape the catalog uses: a 2-3 letter language and optional subtags.
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
COURSE_PATHS = {"title", "description", "category", "tags", "level", "language", "capacity"}
VIDEO_PATHS = {"title", "description", "position", "duration"}


def uuid_of(raw: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        problem = "is required" if not raw else "must be a UUID"
        raise InvalidArgument(f"{field} {problem}", violations=[(field, problem)]) from None


def sized(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidArgument(
            "page_size must not be negative", violations=[("page_size", "must be >= 0")]
        )
    return min(requested or default, maximum)


def _text(errors: FieldErrors, value: str, field: str, maximum: int, *, required: bool) -> str:
    value = value.strip()
    if required:
        errors.check(bool(value), field, "is required")
    errors.check(len(value) <= maximum, field, f"must be at most {maximum:,} characters")
    errors.check("\x00" not in value, field, "must not contain NUL characters")
    return value


def _title(errors: FieldErrors, value: str, field: str) -> str:
    title = _text(errors, value, field, MAX_TITLE, required=True)
    errors.check(title.isprintable(), field, "must not contain control characters")
    return title


def _key(errors: FieldErrors, key: str) -> str:
    errors.check(bool(key), "idempotency_key", "is required so that retries are safe")
    errors.check(len(key) <= MAX_KEY, "idempotency_key", f"must be at most {MAX_KEY} characters")
    errors.check(key.isprintable(), "idempotency_key", "must be printable")
    return key


def _course_values(errors: FieldErrors, c: pb.Course, paths: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "title" in paths:
        values["title"] = _title(errors, c.title, "course.title")
    if "description" in paths:
        values["description"] = _text(
            errors, c.description, "course.description", MAX_COURSE_DESCRIPTION, required=False
        )
    if "category" in paths:
        category = c.category.strip()
        errors.check(bool(category), "course.category", "is required")
        errors.check(
            len(category) <= MAX_CATEGORY and (not category or bool(CATEGORY.match(category))),
            "course.category",
            f"must be a slug of at most {MAX_CATEGORY} characters, e.g. data-science",
        )
        values["category"] = category
    if "tags" in paths:
        tags = list(dict.fromkeys(t.strip() for t in c.tags))
        errors.check(len(tags) <= MAX_TAGS, "course.tags", f"at most {MAX_TAGS} tags")
        errors.check(
            all(0 < len(t) <= MAX_TAG and t.isprintable() for t in tags),
            "course.tags",
            f"each tag must be 1 to {MAX_TAG} printable characters",
        )
        values["tags"] = tags
    if "level" in paths:
        level = LEVELS.get(c.level)  # type: ignore[call-overload]
        errors.check(level is not None, "course.level", "must be a known CourseLevel")
        values["level"] = level
    if "language" in paths:
        language = c.language.strip()
        errors.check(
            bool(LANGUAGE.match(language)), "course.language", "must be a BCP 47 tag, e.g. en"
        )
        values["language"] = language
    if "capacity" in paths:
        errors.check(
            0 <= c.capacity <= MAX_CAPACITY,
            "course.capacity",
            f"must be 0 (unlimited) to {MAX_CAPACITY:,}",
        )
        values["capacity"] = c.capacity
    return values


def create_course(req: pb.CreateCourseRequest) -> tuple[dict[str, Any], str]:
    errors = FieldErrors()
    paths = set(COURSE_PATHS)
    if req.course.level == pb.COURSE_LEVEL_UNSPECIFIED:
        paths.discard("level")
    values = _course_values(errors, req.course, paths)
    key = _key(errors, req.idempotency_key)
    errors.raise_if_any()
    return values, key


def _mask(errors: FieldErrors, paths: list[str], allowed: set[str]) -> set[str]:
    given = set(paths)
    names = ", ".join(sorted(allowed))
    errors.check(bool(given), "update_mask", f"name the fields to change (any of {names})")
    unknown = given - allowed
    errors.check(not unknown, "update_mask", f"cannot change {', '.join(sorted(unknown))}")
    return given & allowed


def update_course(req: pb.UpdateCourseRequest) -> tuple[uuid.UUID, dict[str, Any]]:
    course_id = uuid_of(req.course.course_id, "course.course_id")
    errors = FieldErrors()
    paths = _mask(errors, list(req.update_mask.paths), COURSE_PATHS)
    values = _course_values(errors, req.course, paths)
    errors.raise_if_any()
    return course_id, values


def duration_seconds(errors: FieldErrors, d: Duration, field: str) -> int:
    ok = d.seconds >= 0 and d.nanos >= 0 and d.seconds <= MAX_VIDEO_SECONDS
    errors.check(ok, field, f"must be 0 to {MAX_VIDEO_SECONDS} seconds")
    # Whole seconds: a player's sub-second remainder does not change a course's length.
    return max(0, d.seconds + (1 if d.nanos >= 500_000_000 else 0))


def _video_values(errors: FieldErrors, v: pb.Video, paths: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "title" in paths:
        values["title"] = _title(errors, v.title, "video.title")
    if "description" in paths:
        values["description"] = _text(
            errors, v.description, "video.description", MAX_VIDEO_DESCRIPTION, required=False
        )
    if "position" in paths:
        errors.check(
            0 <= v.position <= MAX_POSITION, "video.position", f"must be 0 to {MAX_POSITION}"
        )
        values["position"] = v.position
    if "duration" in paths:
        values["duration_seconds"] = duration_seconds(errors, v.duration, "video.duration")
    return values


def create_video(req: pb.CreateVideoRequest) -> tuple[uuid.UUID, dict[str, Any], str]:
    course_id = uuid_of(req.course_id, "course_id")
    errors = FieldErrors()
    values = _video_values(errors, req.video, VIDEO_PATHS)
    key = _key(errors, req.idempotency_key)
    errors.raise_if_any()
    return course_id, values, key


def update_video(req: pb.UpdateVideoRequest) -> tuple[uuid.UUID, dict[str, Any]]:
    video_id = uuid_of(req.video.video_id, "video.video_id")
    errors = FieldErrors()
    paths = _mask(errors, list(req.update_mask.paths), VIDEO_PATHS)
    values = _video_values(errors, req.video, paths)
    if "position" in values and values["position"] == 0:
        errors.add("video.position", "must be 1 or more when moving a video")
    errors.raise_if_any()
    return video_id, values


def course_state(value: int, field: str = "state") -> str | None:
    if value == pb.COURSE_STATE_UNSPECIFIED:
        return None
    name = COURSE_STATES.get(value)  # type: ignore[call-overload]
    if name is None:
        raise InvalidArgument(
            f"{field} is not a known CourseState", violations=[(field, "unknown")]
        )
    return name


def enrollment_states(value: int, field: str = "state") -> tuple[str, ...]:
    """The states to list: the one asked for, or those that hold a seat by default."""
    if value == pb.ENROLLMENT_STATE_UNSPECIFIED:
        return ("active", "completed")
    name = ENROLLMENT_STATES.get(value)  # type: ignore[call-overload]
    if name is None:
        raise InvalidArgument(
            f"{field} is not a known EnrollmentState", violations=[(field, "unknown")]
        )
    return (name,)


def optional_key(key: str) -> str | None:
    if not key:
        return None
    errors = FieldErrors()
    _key(errors, key)
    errors.raise_if_any()
    return key


def search(req: pb.SearchCoursesRequest) -> tuple[str, str | None, str | None, str | None]:
    """(query, category, level, language), normalised; None means no filter."""
    errors = FieldErrors()
    query = " ".join(req.query.split())
    errors.check(len(query) <= MAX_QUERY, "query", f"must be at most {MAX_QUERY} characters")
    errors.check("\x00" not in query, "query", "must not contain NUL characters")
    category = req.category.strip() or None
    errors.check(len(category or "") <= MAX_CATEGORY, "category", "is too long")
    level = None
    if req.level != pb.COURSE_LEVEL_UNSPECIFIED:
        level = LEVELS.get(req.level)  # type: ignore[call-overload]
        errors.check(level is not None, "level", "must be a known CourseLevel")
    language = req.language.strip() or None
    errors.check(
        language is None or bool(LANGUAGE.match(language)), "language", "must be a BCP 47 tag"
    )
    errors.raise_if_any()
    return query, category, level, language
