"""`--receiver go`: the Go receiver (tools/livercv, `make tools-livercv`) holds the streams of
the bare handler (two server processes) and reports what the Python receivers report, every
delivery counted once."""

from __future__ import annotations

from bench.live_ceiling import measure_ceiling
from bench.live_receivers import Receivers
from bench.live_receivers_go import _tally, go_receiver, make_receivers


def test_go_tallies_become_the_python_receivers_tally() -> None:
    tally = _tally(
        {
            "deliveries": 3, "gaps": 1, "duplicates": 0, "dropped": 2, "errors": {},
            "streams": 2, "cpu_seconds": 0.5, "latency_us": [1000, 2000, 30000],
            "publish_us": [500], "by_target_us": {"0": [1000, 2000], "1": [30000]},
        }
    )  # fmt: skip

    assert (tally.deliveries, tally.gaps, tally.dropped, tally.streams) == (3, 1, 2, 2)
    assert set(tally.by_target) == {0, 1}
    assert tally.histogram and tally.to_publish


def test_resume_runs_keep_the_python_receivers() -> None:
    receivers = make_receivers(
        "go", ["127.0.0.1:1"], [("t", "s")], processes=1, channels=1, seconds=1, resume=True
    )

    assert isinstance(receivers, Receivers)


def test_go_receiver_measures_the_bare_handler_with_no_gap() -> None:
    assert go_receiver() is not None, "make tools-livercv builds it (make test does)"

    result = measure_ceiling(20, 20.0, 2.0, processes=2, channels=2, receiver="go", servers=2)

    assert (result["receiver"], result["servers"]) == ("go", 2)
    assert result["opened"] == 20
    assert result["deliveries"] == result["expected_deliveries"] >= result["broadcasts"] * 20
    assert (result["gaps"], result["duplicates"], result["errors"]) == (0, 0, {})
    assert 0 < result["p50_ms"] <= result["p95_ms"]
    assert result["receiver_cpu_us_per_delivery"] > 0


def test_the_grouped_bare_handler_writes_every_stream_of_every_connection() -> None:
    result = measure_ceiling(
        24, 20.0, 2.0, processes=2, channels=3, receiver="go", servers=1, grouped=True
    )

    assert (result["grouped"], result["opened"]) == (True, 24)
    assert result["deliveries"] == result["expected_deliveries"] >= result["broadcasts"] * 24
    assert (result["gaps"], result["duplicates"], result["errors"]) == (0, 0, {})


def test_the_bare_handler_held_to_a_write_bound_still_writes_every_stream_in_order() -> None:
    # Four writes in flight for 24 streams: each write waits for a slot, none is lost.
    result = measure_ceiling(
        24, 20.0, 2.0, processes=2, channels=3, receiver="go", servers=1, grouped=True, bound=4
    )

    assert (result["bound"], result["opened"]) == (4, 24)
    assert result["deliveries"] == result["expected_deliveries"] >= result["broadcasts"] * 24
    assert (result["gaps"], result["duplicates"], result["errors"]) == (0, 0, {})
