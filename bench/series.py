"""Per-second series of a run: calls, errors and latency percentiles second by second, so the
SLA report can show how a run behaved over time (a warm-up tail, a stall, a slow drift) and
not only its totals.

Each worker keeps one small histogram per second of the window, by the second a call belongs
to (its planned start in an open loop, its start otherwise: the same rule that decides whether
it counts at all). Two significant figures are enough for a plot and keep each histogram a
few hundred bytes; the run's totals still come from the precise histogram in `histogram`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

from bench import histogram

INTERVAL_S = 1
PERCENTILES = (50.0, 95.0, 99.0)
_NS = 1_000_000_000 * INTERVAL_S


def _new() -> HdrHistogram:
    return HdrHistogram(histogram.LOWEST_US, histogram.HIGHEST_US, 2)


class SecondBuckets:
    """One worker's series; `record`/`error` take the call's reference time in ns."""

    def __init__(self, measure_ns: int) -> None:
        self._origin = measure_ns
        self._hists: list[HdrHistogram] = []
        self._ok: list[int] = []
        self._errors: list[int] = []

    def _index(self, t_ns: int) -> int:
        i = max(0, (t_ns - self._origin) // _NS)
        while len(self._ok) <= i:
            self._hists.append(_new())
            self._ok.append(0)
            self._errors.append(0)
        return i

    def record(self, t_ns: int, latency_us: int) -> None:
        i = self._index(t_ns)
        self._hists[i].record_value(latency_us)
        self._ok[i] += 1

    def error(self, t_ns: int) -> None:
        self._errors[self._index(t_ns)] += 1

    def encode(self) -> dict[str, Any]:
        return {
            "ok": list(self._ok),
            "errors": list(self._errors),
            "histograms": [histogram.encode(h) for h in self._hists],
        }


def merge(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The workers' series second by second: counts summed, histograms merged, percentiles
    in ms (None for a second with no successful call)."""
    parts = [p for p in parts if p]
    seconds = max((len(p["ok"]) for p in parts), default=0)
    ok = [0] * seconds
    errors = [0] * seconds
    merged = [_new() for _ in range(seconds)]
    for part in parts:
        for i, n in enumerate(part["ok"]):
            ok[i] += n
        for i, n in enumerate(part["errors"]):
            errors[i] += n
        for i, encoded in enumerate(part["histograms"]):
            h = histogram.decode(encoded)
            if h.get_total_count():
                merged[i].add(h)
    out: dict[str, Any] = {"interval_s": INTERVAL_S, "ok": ok, "errors": errors}
    for p in PERCENTILES:
        out[f"p{p:g}"] = [
            h.get_value_at_percentile(p) / 1000.0 if h.get_total_count() else None for h in merged
        ]
    return out
