"""Request checks for svc_user: every bad field is reported at once, by name."""

from __future__ import annotations

import uuid

from elearn.user.v1 import user_service_pb2 as pb
from mesh.errors import FieldErrors, InvalidArgument
from svc_user.accounts import ROLE_NAMES

MAX_EMAIL = 254
MIN_PASSWORD, MAX_PASSWORD = 8, 256
MAX_DISPLAY_NAME = 100
MAX_KEY = 128
MAX_REFRESH_TOKEN = 256
UPDATABLE = {"display_name"}


def normal_email(raw: str) -> str:
    return raw.strip().lower()


def _printable(text: str) -> bool:
    return text.isprintable()


def check_email(errors: FieldErrors, email: str, field: str = "email") -> None:
    local, at, domain = email.partition("@")
    errors.check(bool(email), field, "is required")
    if email:
        errors.check(len(email) <= MAX_EMAIL, field, f"must be at most {MAX_EMAIL} characters")
        errors.check(
            bool(at)
            and bool(local)
            and bool(domain)
            and "@" not in domain
            and " " not in email
            and _printable(email),
            field,
            "must look like name@example.org",
        )


def check_display_name(errors: FieldErrors, name: str, field: str = "display_name") -> None:
    errors.check(bool(name), field, "is required")
    errors.check(
        len(name) <= MAX_DISPLAY_NAME, field, f"must be at most {MAX_DISPLAY_NAME} characters"
    )
    errors.check(_printable(name), field, "must not contain control characters")


def register(req: pb.RegisterRequest) -> tuple[str, str]:
    """Checked (email, display_name), normalised."""
    errors = FieldErrors()
    email, name = normal_email(req.email), req.display_name.strip()
    check_email(errors, email)
    errors.check(
        MIN_PASSWORD <= len(req.password) <= MAX_PASSWORD,
        "password",
        f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
    )
    check_display_name(errors, name)
    check_idempotency_key(errors, req.idempotency_key)
    errors.raise_if_any()
    return email, name


def check_idempotency_key(errors: FieldErrors, key: str) -> None:
    errors.check(bool(key), "idempotency_key", "is required so that retries are safe")
    errors.check(len(key) <= MAX_KEY, "idempotency_key", f"must be at most {MAX_KEY} characters")
    errors.check(_printable(key), "idempotency_key", "must be printable")


def login(req: pb.LoginRequest) -> str:
    errors = FieldErrors()
    email = normal_email(req.email)
    errors.check(bool(email), "email", "is required")
    errors.check(len(email) <= MAX_EMAIL, "email", f"must be at most {MAX_EMAIL} characters")
    errors.check(bool(req.password), "password", "is required")
    errors.check(
        len(req.password) <= MAX_PASSWORD, "password", f"must be at most {MAX_PASSWORD} characters"
    )
    errors.raise_if_any()
    return email


def refresh_token(token: str) -> str:
    errors = FieldErrors()
    errors.check(bool(token), "refresh_token", "is required")
    errors.check(len(token) <= MAX_REFRESH_TOKEN, "refresh_token", "is too long")
    errors.raise_if_any()
    return token


def user_id(raw: str, field: str = "user_id") -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID", violations=[(field, "must be a UUID")]
        ) from None


def role(value: int, field: str = "role") -> str:
    name = ROLE_NAMES.get(value)  # type: ignore[call-overload]
    if name is None:
        raise InvalidArgument(
            f"{field} must be one of ROLE_STUDENT, ROLE_INSTRUCTOR, ROLE_ADMIN",
            violations=[(field, "unknown or unspecified role")],
        )
    return name


def update_me(req: pb.UpdateMeRequest) -> str:
    errors = FieldErrors()
    paths = set(req.update_mask.paths)
    errors.check(bool(paths), "update_mask", "name the fields to change (display_name)")
    unknown = paths - UPDATABLE
    errors.check(not unknown, "update_mask", f"cannot change {', '.join(sorted(unknown))}")
    name = req.user.display_name.strip()
    if "display_name" in paths:
        check_display_name(errors, name, "user.display_name")
    errors.raise_if_any()
    return name
