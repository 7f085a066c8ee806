"""CPU per call from process samples: only the samples inside the measured window count."""

from __future__ import annotations

from bench.stack_cpu import Sample, window_share

S = 1_000_000_000


def test_share_uses_the_first_and_last_sample_inside_the_window() -> None:
    samples = [
        Sample(0, {"course-0": 0.0, "envoy": 0.0}),  # warm-up: left out
        Sample(1 * S, {"course-0": 5.0, "envoy": 1.0}),
        Sample(3 * S, {"course-0": 6.0, "envoy": 1.5}),
        Sample(5 * S, {"course-0": 7.0, "envoy": 2.0}),
        Sample(9 * S, {"course-0": 99.0, "envoy": 99.0}),  # after the window: left out
    ]

    share = window_share(samples, 1 * S, 6 * S, calls_per_s=1000.0)

    assert share is not None
    assert share["span_s"] == 4.0
    assert share["processes"]["course-0"] == {"cpu_s": 2.0, "cores": 0.5, "us_per_call": 500.0}
    assert share["processes"]["envoy"] == {"cpu_s": 1.0, "cores": 0.25, "us_per_call": 250.0}
    assert share["total_us_per_call"] == 750.0


def test_share_needs_two_samples_inside_the_window() -> None:
    samples = [Sample(0, {"envoy": 0.0}), Sample(10 * S, {"envoy": 1.0})]

    assert window_share(samples, 1 * S, 9 * S, calls_per_s=100.0) is None
