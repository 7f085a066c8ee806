"""Service-level targets per scenario (`bench/sla.yaml`) and the pass/fail verdict of a run.

Latency targets judge successful calls. Codes a scenario lists as `shed` (RESOURCE_EXHAUSTED for
login: the designed answer to overload) are counted apart from errors; every other failure is
an error and fails the run above `max_error_ratio` (default 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "sla.yaml"
# bench --driver: the Python workers, or the compiled open-loop HTTP tool (bench.httpload).
DRIVERS = frozenset({"python", "httpload"})


@dataclass(frozen=True)
class Target:
    scenario: str
    source: str
    role: str = "workflow"
    p95_ms: float | None = None
    p99_ms: float | None = None
    min_throughput: float | None = None
    min_ratio_of_ceiling: float | None = None
    shed: frozenset[str] = frozenset()
    max_shed_ratio: float | None = None
    max_error_ratio: float = 0.0
    # The load the target holds at (per process); the CLI's flags override it.
    concurrency: int | None = None
    rate: float | None = None
    # Who sends the load (bench --driver): the Python workers unless the target names one.
    driver: str | None = None

    @classmethod
    def from_yaml(cls, name: str, raw: Mapping[str, Any]) -> Target:
        known = {
            "source",
            "role",
            "p95_ms",
            "p99_ms",
            "min_throughput",
            "min_ratio_of_ceiling",
            "shed",
            "max_shed_ratio",
            "max_error_ratio",
            "load",
        }
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"sla.yaml {name}: unknown keys {sorted(unknown)}")
        if not raw.get("source"):
            raise ValueError(f"sla.yaml {name}: every target needs a source")
        load = raw.get("load") or {}
        driver = load.get("driver")
        if driver is not None and driver not in DRIVERS:
            raise ValueError(f"sla.yaml {name}: load.driver must be one of {sorted(DRIVERS)}")

        def num(key: str) -> float | None:
            value = raw.get(key)
            return None if value is None else float(value)

        return cls(
            scenario=name,
            source=str(raw["source"]).strip(),
            role=str(raw.get("role", "workflow")),
            p95_ms=num("p95_ms"),
            p99_ms=num("p99_ms"),
            min_throughput=num("min_throughput"),
            min_ratio_of_ceiling=num("min_ratio_of_ceiling"),
            shed=frozenset(str(c) for c in raw.get("shed", ())),
            max_shed_ratio=num("max_shed_ratio"),
            max_error_ratio=float(raw.get("max_error_ratio", 0.0)),
            concurrency=int(load["concurrency"]) if "concurrency" in load else None,
            rate=float(load["rate"]) if "rate" in load else None,
            driver=driver,
        )

    def describe(self) -> str:
        parts = []
        if self.p95_ms is not None:
            parts.append(f"p95≤{self.p95_ms:g}ms")
        if self.p99_ms is not None:
            parts.append(f"p99≤{self.p99_ms:g}ms")
        if self.min_throughput is not None:
            parts.append(f"≥{self.min_throughput:g}/s")
        if self.min_ratio_of_ceiling is not None:
            parts.append(f"≥{self.min_ratio_of_ceiling:g}x ceil")
        return " ".join(parts) or "-"


def load_sla(path: Path = DEFAULT_PATH) -> dict[str, Target]:
    raw = yaml.safe_load(path.read_text()) or {}
    scenarios = raw.get("scenarios") or {}
    return {name: Target.from_yaml(name, body or {}) for name, body in scenarios.items()}


@dataclass(frozen=True)
class Observed:
    ok: int
    errors: Mapping[str, int]
    p95_ms: float | None
    p99_ms: float | None
    throughput: float
    ratio_of_ceiling: float | None
    # Set for an open-loop run: its throughput is the planned rate, not a capacity.
    planned_rate: float | None = None


# An open loop must deliver this share of its planned calls; below it the server fell behind.
KEPT_RATE = 0.95


@dataclass(frozen=True)
class Check:
    name: str
    target: float
    actual: float | None
    # None: could not be judged in this run (no ceiling measured); it neither passes nor fails.
    passed: bool | None


@dataclass(frozen=True)
class Verdict:
    passed: bool | None
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]


def split_errors(target: Target | None, errors: Mapping[str, int]) -> tuple[int, int]:
    """(shed, other errors) for a scenario's error counts."""
    shed_codes = target.shed if target else frozenset()
    shed = sum(n for code, n in errors.items() if code in shed_codes)
    return shed, sum(errors.values()) - shed


def evaluate(target: Target | None, seen: Observed) -> Verdict:
    if target is None:
        return Verdict(None, ())
    shed, errors = split_errors(target, seen.errors)
    attempted = seen.ok + shed + errors
    checks = [Check("successful calls", 1, seen.ok, seen.ok >= 1)]

    def at_most(name: str, limit: float | None, actual: float | None) -> None:
        if limit is not None:
            checks.append(Check(name, limit, actual, None if actual is None else actual <= limit))

    def at_least(name: str, floor: float | None, actual: float | None) -> None:
        if floor is not None:
            checks.append(Check(name, floor, actual, None if actual is None else actual >= floor))

    at_most("p95_ms", target.p95_ms, seen.p95_ms)
    at_most("p99_ms", target.p99_ms, seen.p99_ms)
    if seen.planned_rate:
        # Capacity targets cannot be judged at a planned rate; keeping up with it can.
        at_least("kept_rate", KEPT_RATE, seen.throughput / seen.planned_rate)
    else:
        at_least("throughput", target.min_throughput, seen.throughput)
        at_least("ratio_of_ceiling", target.min_ratio_of_ceiling, seen.ratio_of_ceiling)
    at_most("error_ratio", target.max_error_ratio, errors / attempted if attempted else 0.0)
    at_most("shed_ratio", target.max_shed_ratio, shed / attempted if attempted else 0.0)
    judged = [c.passed for c in checks if c.passed is not None]
    return Verdict(all(judged), tuple(checks))
