"""Expected failures as exceptions the domain raises, and their mapping to gRPC statuses.

Domain code raises these; the server interceptor turns them into a status with a clear
message (and google.rpc.BadRequest details when a field is at fault). Anything else becomes
INTERNAL with a request id and no internals. Envoy maps the codes to HTTP for JSON callers.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


class ServiceError(Exception):
    """An expected failure the caller should see as `code` with `message`."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, violations: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        # (field path, what is wrong with it) pairs, sent as google.rpc.BadRequest.
        self.violations = tuple(violations)

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
