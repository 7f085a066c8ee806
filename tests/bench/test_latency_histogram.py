"""Per-process histograms merged in the parent give the percentiles of all samples together."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bench import histogram

# HdrHistogram with 3 significant figures: a reported value is within 0.1% of a recorded one
# (the bucket's upper edge); allow twice that plus one unit for rounding at small values.
REL = 0.002

latencies = st.lists(st.integers(1, 5_000_000), min_size=1, max_size=400)


def exact_percentile(values: list[int], p: float) -> int:
    """The sample at HdrHistogram's rank for p: p% of the count, rounded half up, at least 1."""
    ordered = sorted(values)
    rank = max(1, math.floor(p / 100 * len(ordered) + 0.5))
    return ordered[rank - 1]


def histogram_of(values: list[int]) -> histogram.HdrHistogram:
    h = histogram.new_histogram()
    for v in values:
        h.record_value(v)
    return h


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(latencies, min_size=1, max_size=4))
def test_merging_encoded_parts_equals_one_histogram_of_everything(parts: list[list[int]]) -> None:
    merged = histogram.merge(histogram.encode(histogram_of(p)) for p in parts)
    whole = histogram_of([v for p in parts for v in p])

    assert merged.get_total_count() == whole.get_total_count()
    assert merged.get_max_value() == whole.get_max_value()
    for p in (50, 95, 99, 99.9):
        assert merged.get_value_at_percentile(p) == whole.get_value_at_percentile(p)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(latencies, min_size=2, max_size=4))
def test_merged_percentiles_match_the_exact_ones_within_precision(parts: list[list[int]]) -> None:
    merged = histogram.merge(histogram.encode(histogram_of(p)) for p in parts)
    everything = [v for p in parts for v in p]

    for p in (50, 95, 99):
        exact = exact_percentile(everything, p)
        assert abs(merged.get_value_at_percentile(p) - exact) <= exact * REL + 1


def test_percentiles_of_a_known_split_distribution() -> None:
    # Process A saw 900 fast calls, process B 100 slow ones: p50 is fast, p95 and p99 slow.
    fast = histogram_of([1_000] * 900)
    slow = histogram_of([50_000] * 100)

    summary = histogram.summary_ms(
        histogram.merge([histogram.encode(fast), histogram.encode(slow)])
    )

    assert summary["p50"] == 1.0
    assert summary["p95"] is not None and abs(summary["p95"] - 50.0) <= 50.0 * REL
    assert summary["max"] is not None and abs(summary["max"] - 50.0) <= 50.0 * REL


def test_empty_parts_merge_to_an_empty_summary() -> None:
    merged = histogram.merge([histogram.encode(histogram.new_histogram())])

    assert merged.get_total_count() == 0
    assert set(histogram.summary_ms(merged).values()) == {None}


def test_clamp_keeps_values_recordable() -> None:
    assert histogram.clamp_us(0) == histogram.LOWEST_US
    assert histogram.clamp_us(10**12) == histogram.HIGHEST_US
    assert histogram.clamp_us(1234) == 1234
    h = histogram.new_histogram()
    h.record_value(histogram.clamp_us(10**12))
    assert h.get_total_count() == 1
