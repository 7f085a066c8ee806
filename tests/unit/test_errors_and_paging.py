"""Error mapping to gRPC statuses with field details, and page tokens."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import FieldErrors, InvalidArgument, NotFound
from mesh.pagination import decode_token, encode_token, page_size


def test_field_errors_collect_every_violation() -> None:
    errors = FieldErrors()
    errors.check(False, "email", "is required")
    errors.check(True, "password", "never shown")
    errors.add("display_name", "is too long")
    with pytest.raises(InvalidArgument) as caught:
        errors.raise_if_any()
    status = caught.value.to_status()
    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "email: is required" in status.details and "display_name" in status.details
    rich = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    detail = error_details_pb2.BadRequest()
    assert rich.details[0].Unpack(detail)
    assert [(v.field, v.description) for v in detail.field_violations] == [
        ("email", "is required"),
        ("display_name", "is too long"),
    ]


def test_no_violations_raise_nothing() -> None:
    FieldErrors().raise_if_any()


def test_plain_error_has_no_details() -> None:
    status = NotFound("user x not found").to_status()
    assert status.code is grpc.StatusCode.NOT_FOUND
    assert status.details == "user x not found"


@given(st.lists(st.one_of(st.text(), st.integers()), min_size=2, max_size=2))
def test_page_tokens_round_trip(key: list[object]) -> None:
    assert decode_token(encode_token(key), 2) == key


@pytest.mark.parametrize("token", ["%%%", "bm90IGpzb24", encode_token([1]), encode_token({"a": 1})])  # type: ignore[list-item]
def test_malformed_page_token_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        decode_token(token, 2)


def test_page_size_bounds() -> None:
    assert page_size(0) == 50
    assert page_size(7) == 7
    assert page_size(10_000) == 100
    with pytest.raises(InvalidArgument):
        page_size(-1)
