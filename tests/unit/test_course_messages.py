"""svc_course.messages.timestamp matches protobuf's own FromDatetime, which it replaces for
speed, on aware, naive, pre-epoch and sub-second values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from svc_course.messages import timestamp


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 4, 16, 30, 1, 123456, tzinfo=UTC),
        datetime(2026, 12, 4, 18, 30, 1, 999999, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 12, 4, 16, 30, 1, 5),
        datetime(1969, 7, 20, 20, 17, 40, 250000, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
    ],
)
def test_timestamp_matches_protobuf(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


def test_no_value_gives_no_timestamp() -> None:
    assert timestamp(None) is None
