"""Latency histograms: one HdrHistogram per worker process, merged in the parent.

Values are microseconds. Workers ship their histogram as HdrHistogram's compressed base64
encoding (a few hundred bytes) rather than raw samples, so merging costs the same whatever the
call count, and the report can carry the merged encoding for later re-analysis.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
# A call slower than a minute is recorded as a minute; the per-call deadline is far below it.
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def clamp_us(value_us: int) -> int:
    """Keep a latency inside the trackable range (record_value drops values outside it)."""
    if value_us < LOWEST_US:
        return LOWEST_US
    if value_us > HIGHEST_US:
        return HIGHEST_US
    return value_us


def encode(histogram: HdrHistogram) -> str:
    return bytes(histogram.encode()).decode("ascii")


def decode(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode("ascii"))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every worker's samples."""
    merged = new_histogram()
    for item in encoded:
        part = decode(item)
        if part.get_total_count():
            merged.add(part)
    return merged


def summary_ms(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50…p99.9, max and mean in milliseconds; None everywhere for an empty histogram."""
    keys = [_percentile_key(p) for p in PERCENTILES] + ["max", "mean"]
    if histogram.get_total_count() == 0:
        return dict.fromkeys(keys, None)
    out: dict[str, float | None] = {
        _percentile_key(p): histogram.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES
    }
    out["max"] = histogram.get_max_value() / 1000.0
    out["mean"] = round(histogram.get_mean_value() / 1000.0, 3)
    return out


def _percentile_key(p: float) -> str:
    return "p" + (f"{p:g}".replace(".", ""))
