"""Expected failures as exceptions the domain raises, and their mapping to gRPC statuses.

Domain code raises these; the server interceptor turns them into a status with a clear
message (and google.rpc.BadRequest details when a field is at fault). Anything else becomes
INTERNAL with a request id and no internals. Envoy maps the codes to HTTP for JSON callers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import grpc
import nats.errors
import psycopg
import redis.exceptions
import sqlalchemy.exc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mesh import metrics

log = logging.getLogger("mesh.errors")


class ServiceError(Exception):
    """An expected failure the caller should see as `code` with `message`."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        violations: Sequence[tuple[str, str]] = (),
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # (field path, what is wrong with it) pairs, sent as google.rpc.BadRequest.
        self.violations = tuple(violations)
        # When the caller may try again (load shedding), sent as google.rpc.RetryInfo.
        self.retry_after_seconds = retry_after_seconds

    def to_status(self) -> grpc.Status:
        proto = status_pb2.Status(code=self.code.value[0], message=self.message)
        if self.violations:
            detail = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.violations
                ]
            )
            proto.details.add().Pack(detail)
        if self.retry_after_seconds is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromTimedelta(timedelta(seconds=self.retry_after_seconds))
            proto.details.add().Pack(retry)
        return rpc_status.to_status(proto)


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(ServiceError):
    code = grpc.StatusCode.UNIMPLEMENTED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


# Valkey refusing or failing a command for a reason the caller may retry (a full noeviction
# server answers OOM; a restarting one answers LOADING).
_VALKEY_OUTAGES = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MaxConnectionsError,
)
# Library errors are chained (SQLAlchemy wraps psycopg's); a short walk finds the root cause.
_MAX_CHAIN = 5


def infrastructure_error(exc: BaseException) -> ServiceError | None:
    """The status an outage of Postgres, Valkey or NATS should reach the caller as, or None
    when `exc` is not one. Connection loss and exhausted pools are UNAVAILABLE (the caller
    may retry, Envoy may retry elsewhere); a statement cancelled by `statement_timeout` is
    DEADLINE_EXCEEDED. Counted per dependency and logged without the statement's text."""
    mapped = _classify(exc)
    if mapped is None:
        return None
    dependency, error = mapped
    metrics.DEPENDENCY_ERRORS.labels(dependency, error.code.name).inc()
    log.warning(
        "%s failure mapped to %s",
        dependency,
        error.code.name,
        extra={"dependency": dependency, "error": type(exc).__name__},
    )
    return error


def _classify(exc: BaseException) -> tuple[str, ServiceError] | None:
    seen: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if seen is None:
            return None
        found = _classify_one(seen)
        if found is not None:
            return found
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def _classify_one(exc: BaseException) -> tuple[str, ServiceError] | None:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        # Checked before OperationalError, its base class: the server is up, the query slow.
        return "postgres", DeadlineExceeded("the database query took too long and was cancelled")
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return "postgres", Unavailable("database busy: no connection free; retry shortly")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return "postgres", Unavailable("database unavailable; retry shortly")
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "postgres", Unavailable("database connection lost; retry shortly")
    if isinstance(exc, _VALKEY_OUTAGES):
        return "valkey", Unavailable("key-value store unavailable; retry shortly")
    if isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(("OOM", "LOADING")):
        return "valkey", Unavailable("key-value store unavailable; retry shortly")
    if isinstance(exc, nats.errors.Error):
        return "nats", Unavailable("event bus unavailable; retry shortly")
    return None


class FieldErrors:
    """Collects every bad field of a request so the caller learns them all at once."""

    def __init__(self) -> None:
        self._violations: list[tuple[str, str]] = []

    def add(self, field: str, problem: str) -> None:
        self._violations.append((field, problem))

    def check(self, ok: bool, field: str, problem: str) -> None:
        if not ok:
            self.add(field, problem)

    def raise_if_any(self) -> None:
        if self._violations:
            summary = "; ".join(f"{f}: {p}" for f, p in self._violations)
            raise InvalidArgument(f"invalid request: {summary}", violations=self._violations)


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT
