"""The run's report: a dict per scenario (written as JSON) and the table printed from it.

JSON shape (schema 2: schema 1 plus each scenario's per-second `series`), one file per run
under bench/results/, with its SLA report beside it (see `sla_report`):

    {"schema": 2, "run_id", "started_at", "finished_at", "target": {"kind", "addresses"},
     "settings": {...}, "host": {...}, "ceiling": {"scenario", "throughput"} | null,
     "passed": bool, "scenarios": [
        {"name", "status": "ok" | "failed", "error": str | null, "service",
         "load": {"driver": "python" | "httpload", "mode": "closed" | "open", "processes",
                  "concurrency", "channels", "rate"},
         "calls": {"ok", "errors": {code: n}, "shed", "failed", "warmup", "prepare_errors"},
         "latency_ms": {"p50", "p90", "p95", "p99", "p999", "max", "mean"},
         "throughput", "ratio_of_ceiling", "elapsed_s",
         "open_loop": {"late_starts", "max_lag_ms"} | null, "counters": {...},
         "driver": {"window_cpu_s", "cores", "cpu_us_per_call", "children_cpu_s", "wall_s"},
         "sla": {"source", "target", "passed": bool | null,
                 "checks": [{"name", "target", "actual", "passed"}]} | null,
         "histogram": HdrHistogram base64,
         "series": {"interval_s", "ok": [n per second], "errors": [...],
                    "p50", "p95", "p99": [ms per second, null when no call]},
         "stack_cpu": {"span_s", "total_cores", "total_us_per_call",
                       "processes": {name: {"cpu_s", "cores", "us_per_call"}}} | null
                      (absent against a bare --address; see bench.stack_cpu)}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import histogram, stack_cpu
from bench.driver import Merged
from bench.sla import Observed, Target, Verdict, evaluate, split_errors

SCHEMA = 2
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Worker CPU above this share of the worker processes' cores: the driver may be the bottleneck.
DRIVER_BUSY = 0.8


def scenario_entry(
    name: str,
    service: str,
    load: dict[str, Any],
    merged: Merged,
    target: Target | None,
    ceiling: float | None,
) -> dict[str, Any]:
    latency = histogram.summary_ms(merged.hist)
    ratio = merged.throughput / ceiling if ceiling else None
    verdict = evaluate(
        target,
        Observed(
            ok=merged.ok,
            errors=merged.errors,
            p95_ms=latency["p95"],
            p99_ms=latency["p99"],
            throughput=merged.throughput,
            ratio_of_ceiling=ratio,
            planned_rate=load.get("rate"),
        ),
    )
    shed, failed = split_errors(target, merged.errors)
    attempted = merged.ok + shed + failed
    return {
        "name": name,
        "status": "ok",
        "error": None,
        "service": service,
        "load": load,
        "calls": {
            "ok": merged.ok,
            "errors": dict(sorted(merged.errors.items())),
            "shed": shed,
            "failed": failed,
            "warmup": merged.warmup_calls,
            "warmup_errors": merged.warmup_errors,
            "prepare_errors": merged.prepare_errors,
        },
        "latency_ms": latency,
        "throughput": round(merged.throughput, 1),
        "ratio_of_ceiling": None if ratio is None else round(ratio, 3),
        "elapsed_s": round(merged.elapsed_s, 3),
        "open_loop": (
            {"late_starts": merged.late_starts, "max_lag_ms": merged.max_lag_us / 1000}
            if load.get("mode") == "open"
            else None
        ),
        "counters": merged.counters,
        "driver": {
            "window_cpu_s": round(merged.worker_cpu_s, 3),
            "cores": round(merged.worker_cpu_s / merged.elapsed_s, 2) if merged.elapsed_s else 0,
            "cpu_us_per_call": round(merged.worker_cpu_s * 1e6 / attempted, 1) if attempted else 0,
            "children_cpu_s": round(merged.children_cpu_s, 3),
            "wall_s": round(merged.wall_s, 3),
        },
        "sla": sla_entry(target, verdict),
        "histogram": histogram.encode(merged.hist),
        "series": merged.series,
    }


def failed_entry(name: str, service: str, load: dict[str, Any], error: str) -> dict[str, Any]:
    return {"name": name, "status": "failed", "error": error, "service": service, "load": load}


def sla_entry(target: Target | None, verdict: Verdict) -> dict[str, Any] | None:
    if target is None:
        return None
    return {
        "source": target.source,
        "target": target.describe(),
        "passed": verdict.passed,
        "checks": [
            {"name": c.name, "target": c.target, "actual": _round(c.actual), "passed": c.passed}
            for c in verdict.checks
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def passed(entries: list[dict[str, Any]]) -> bool:
    """A run passes when every scenario ran and none failed its SLA (no SLA: not judged)."""
    return all(e["status"] == "ok" and (e["sla"] or {}).get("passed") is not False for e in entries)


def write_json(report: dict[str, Any], path: Path | None) -> Path:
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = report["started_at"].replace(":", "").replace("-", "")
        path = RESULTS_DIR / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


COLUMNS = ("scenario", "calls/s", "x ceil", "p50", "p95", "p99", "max", "errors", "SLA", "verdict")


def table(entries: list[dict[str, Any]]) -> str:
    """One row per scenario, latencies in ms, then one driver line per scenario."""
    rows = [COLUMNS]
    for e in entries:
        if e["status"] != "ok":
            rows.append((e["name"], "-", "-", "-", "-", "-", "-", "-", "-", "ERROR"))
            continue
        lat, sla = e["latency_ms"], e["sla"]
        rows.append(
            (
                e["name"],
                f"{e['throughput']:.1f}",
                "-" if e["ratio_of_ceiling"] is None else f"{e['ratio_of_ceiling']:.2f}",
                *(format_ms(lat[k]) for k in ("p50", "p95", "p99", "max")),
                format_errors(e["calls"]),
                sla["target"] if sla else "-",
                verdict_text(sla),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(_notes(e) for e in entries)
    return "\n".join(lines)


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_errors(calls: dict[str, Any]) -> str:
    if not calls["errors"]:
        return "0"
    return " ".join(f"{code}:{n}" for code, n in calls["errors"].items())


def verdict_text(sla: dict[str, Any] | None) -> str:
    if sla is None:
        return "no SLA"
    if sla["passed"]:
        return "PASS"
    failed = [c["name"] for c in sla["checks"] if c["passed"] is False]
    return "FAIL " + ",".join(failed)


def _notes(e: dict[str, Any]) -> str:
    if e["status"] != "ok":
        return f"{e['name']}: {e['error']}"
    load, drv = e["load"], e["driver"]
    mode = f"open loop at {load['rate']:g}/s" if load["mode"] == "open" else "closed loop"
    compiled = load.get("driver") == "httpload"
    who = "httpload" if compiled else (
        f"{load['processes']}x{load['concurrency']} callers over "
        f"{load['channels']} channels/process"
    )  # fmt: skip
    note = (
        f"{e['name']}: {mode}, {who}; driver {drv['cores']:.2f} cores in the window "
        f"({drv['cpu_us_per_call']:.0f} µs/call), {drv['children_cpu_s']:.1f} s CPU in all"
    )
    if not compiled and drv["cores"] > DRIVER_BUSY * load["processes"]:
        note += " — DRIVER SATURATED: add --processes or read the numbers as a floor"
    if e["calls"]["shed"]:
        note += f"; shed {e['calls']['shed']}"
    if e["calls"]["prepare_errors"]:
        note += f"; untimed repairs failed {e['calls']['prepare_errors']}"
    if e["open_loop"] and e["open_loop"]["late_starts"]:
        ol = e["open_loop"]
        note += f"; {ol['late_starts']} late starts (max {ol['max_lag_ms']:.1f} ms: add callers)"
    for key, n in e["counters"].items():
        note += f"; {key} {n}"
    if e.get("stack_cpu"):
        note += f"\n  CPU over {e['stack_cpu']['span_s']:g} s of the window:\n"
        note += stack_cpu.table(e["stack_cpu"])
    return note
