"""The measurement window, the call budget and the open-loop arrival plan stay in bounds."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.driver import plans, split
from bench.schedule import NS_PER_S, Budget, Window, arrivals
from bench.worker import WorkerPlan


def window(warmup_s: float = 0.0, duration_s: float = 1.0) -> Window:
    return Window.after(1_000_000, warmup_s, duration_s)


def test_window_after_places_measure_and_end() -> None:
    w = Window.after(100, 2.0, 3.0)

    assert (w.start_ns, w.measure_ns, w.end_ns) == (100, 100 + 2 * NS_PER_S, 100 + 5 * NS_PER_S)
    assert not w.measured(w.measure_ns - 1)
    assert w.measured(w.measure_ns)
    assert not w.measured(w.end_ns)


@given(
    rate=st.floats(1, 5_000),
    duration_s=st.floats(0.01, 2.0),
    phase=st.floats(0, 0.999),
)
def test_fixed_arrivals_are_evenly_spaced_inside_the_window(
    rate: float, duration_s: float, phase: float
) -> None:
    w = window(duration_s=duration_s)
    planned = list(arrivals(rate, w, poisson=False, rng=random.Random(0), phase=phase))

    assert all(w.start_ns <= t < w.end_ns for t in planned)
    assert planned == sorted(planned)
    # k = 0 … n-1 with (k + phase) / rate < duration: n is bounded by rate · duration + 1.
    assert len(planned) <= rate * duration_s + 1
    assert len(planned) >= rate * duration_s - 1
    gaps = {b - a for a, b in itertools.pairwise(planned)}
    interval = NS_PER_S / rate
    assert all(abs(g - interval) <= 1 for g in gaps)


def test_fixed_phases_interleave_two_processes() -> None:
    w = window(duration_s=0.01)
    first = list(arrivals(1_000, w, poisson=False, rng=random.Random(0), phase=0.0))
    second = list(arrivals(1_000, w, poisson=False, rng=random.Random(0), phase=0.5))

    both = sorted(first + second)
    gaps = {b - a for a, b in itertools.pairwise(both)}
    assert gaps == {500_000}


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**32), rate=st.sampled_from([200.0, 1_000.0, 5_000.0]))
def test_poisson_arrivals_average_the_rate(seed: int, rate: float) -> None:
    duration_s = 2.0
    w = window(duration_s=duration_s)
    planned = list(arrivals(rate, w, poisson=True, rng=random.Random(seed)))

    assert all(w.start_ns <= t < w.end_ns for t in planned)
    assert planned == sorted(planned)
    expected = rate * duration_s
    # Poisson count: standard deviation sqrt(expected); 6 of them never fail by chance.
    assert abs(len(planned) - expected) <= 6 * expected**0.5


@pytest.mark.parametrize(("rate", "phase"), [(0.0, 0.0), (-1.0, 0.0), (10.0, 1.0), (10.0, -0.1)])
def test_arrivals_refuse_nonsense(rate: float, phase: float) -> None:
    with pytest.raises(ValueError):
        next(arrivals(rate, window(), poisson=False, rng=random.Random(0), phase=phase))


@given(
    limit=st.integers(0, 50) | st.none(),
    offsets=st.lists(st.integers(0, 4 * NS_PER_S), max_size=200),
)
def test_budget_admits_warmup_then_at_most_limit_measured_and_nothing_after_the_end(
    limit: int | None, offsets: list[int]
) -> None:
    w = Window.after(0, 1.0, 2.0)
    budget = Budget(w, limit)
    admitted = [t for t in sorted(offsets) if budget.claim(t)]

    assert all(t < w.end_ns for t in admitted)
    warmup = [t for t in offsets if t < w.measure_ns]
    assert [t for t in admitted if t < w.measure_ns] == sorted(warmup)
    measured = [t for t in admitted if w.measured(t)]
    in_window = [t for t in offsets if w.measured(t)]
    assert len(measured) == (len(in_window) if limit is None else min(limit, len(in_window)))


def test_budget_refuses_a_negative_limit() -> None:
    with pytest.raises(ValueError):
        Budget(window(), -1)


@given(total=st.integers(0, 10_000), parts=st.integers(1, 64))
def test_split_shares_a_count_evenly(total: int, parts: int) -> None:
    shares = split(total, parts)

    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_plans_share_count_and_rate_between_processes() -> None:
    base = WorkerPlan(
        scenario="health",
        index=0,
        addresses=("127.0.0.1:1",),
        channels=2,
        concurrency=4,
        warmup_s=0,
        duration_s=1,
        count=1001,
        rate=300.0,
        poisson=False,
        timeout_s=1,
        seed=7,
        data=None,
    )

    made = plans(base, 3)

    assert [p.index for p in made] == [0, 1, 2]
    assert sum(p.count or 0 for p in made) == 1001
    assert all(p.rate == pytest.approx(100.0) for p in made)
    assert len({p.phase for p in made}) == 3
    assert len({p.seed for p in made}) == 3
