"""Asserting gRPC failures: the status code and a readable message."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest


async def fails_with(
    code: grpc.StatusCode, call: Awaitable[Any], match: str | None = None
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, f"expected {code.name}, got {error.code().name}: {error.details()}"
    if match is not None:
        assert re.search(match, error.details() or ""), error.details()
    return error


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    from google.rpc import error_details_pb2, status_pb2

    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw is not None, "no rich error details"
    status = status_pb2.Status.FromString(raw)
    request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(request)
    return [v.field for v in request.field_violations]
