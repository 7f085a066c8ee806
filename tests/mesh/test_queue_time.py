"""mesh.queue_time: reading the edge's arrival stamp, and the controlled-delay decision."""

from __future__ import annotations

import pytest

from elearn.quiz.v1 import quiz_service_pb2 as pb
from mesh.queue_time import UPLOAD_BYTES_PER_SECOND, WaitBound, waited_seconds

SMALL = pb.SubmitQuizRequest(quiz_id="q")


@pytest.mark.parametrize("value", ["t=100.25", b"t=100.25"])
def test_the_wait_is_now_minus_the_stamp(value: str | bytes) -> None:
    assert waited_seconds(value, now=101.0) == pytest.approx(0.75)


def test_a_stamp_from_the_future_is_no_wait() -> None:
    assert waited_seconds("t=200", now=100.0) == 0.0


@pytest.mark.parametrize("value", ["", "t=", "100.5", "t=soon", "t=nan", "t=1e999x", b"\xff"])
def test_what_envoy_never_writes_is_no_stamp(value: str | bytes) -> None:
    assert waited_seconds(value, now=100.0) is None


def test_a_burst_that_drains_is_refused_only_past_the_bound() -> None:
    waits = WaitBound(bound=1.0, target=0.1, interval=0.5)
    assert not waits.refuse(0.01, SMALL, now=10.0)
    # Waits above the target for less than an interval: a burst, served up to the bound.
    assert not waits.refuse(0.9, SMALL, now=10.2)
    assert not waits.refuse(0.6, SMALL, now=10.4)
    assert waits.refuse(1.2, SMALL, now=10.45)


def test_a_standing_queue_is_cut_to_the_target_until_a_call_gets_through_within_it() -> None:
    waits = WaitBound(bound=1.0, target=0.1, interval=0.5)
    assert not waits.refuse(0.05, SMALL, now=10.0)
    assert not waits.refuse(0.4, SMALL, now=10.3)
    # No call within the target for a whole interval: the queue stands.
    assert waits.refuse(0.4, SMALL, now=10.5)
    assert waits.refuse(0.15, SMALL, now=10.6)
    # One that made it within the target: calm again, and the bound is back.
    assert not waits.refuse(0.08, SMALL, now=10.7)
    assert not waits.refuse(0.4, SMALL, now=10.8)


def test_a_large_message_gets_its_upload_time_on_top() -> None:
    large = pb.SubmitQuizRequest(answers=[pb.Answer(text="x" * 200_000)])
    upload = large.ByteSize() / UPLOAD_BYTES_PER_SECOND  # about 2 s
    waits = WaitBound(bound=1.0, target=0.1, interval=0.5)
    assert not waits.refuse(0.0, SMALL, now=0.0)
    assert not waits.refuse(upload + 0.9, large, now=0.1)
    assert waits.refuse(upload + 1.1, large, now=0.2)
    assert waits.refuse(1.2, b"x" * 100, now=0.3)
    assert not waits.refuse(1.2, b"x" * 100_000, now=0.4)
