"""The SLA report of a bench run: Markdown plus one PNG per scenario, written beside the run's
JSON (`<stem>.md` and `<stem>/<scenario>.png`).

Each scenario's figure has three panels over the measured window, second by second: latency
p50/p95/p99 against the SLA's p95 and p99 lines; throughput against the SLA's floor and the
ceiling (the `health` scenario of the same run: the same path with an empty handler); error
and shed share against the allowed error ratio. The table above the figures is the run's
totals, so a reader sees the verdict first and how the run got there second.

`python -m bench.sla_report bench/results/<run>.json` rebuilds it from a saved run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

# The backend is chosen before pyplot loads.
import matplotlib.pyplot as plt

from bench.report import format_errors, format_ms, verdict_text

DPI = 100
COLOURS = {"p50": "#4c72b0", "p95": "#dd8452", "p99": "#c44e52"}


def write(run: dict[str, Any], json_path: Path) -> Path:
    """Write the Markdown report and its plots beside `json_path`; returns the Markdown path."""
    plots = json_path.with_suffix("")
    plots.mkdir(parents=True, exist_ok=True)
    ceiling = (run.get("ceiling") or {}).get("throughput")
    sections = []
    for entry in run["scenarios"]:
        if entry["status"] != "ok" or not entry.get("series"):
            continue
        png = plots / f"{entry['name']}.png"
        plot_scenario(entry, ceiling, png)
        sections.append(_section(entry, png.relative_to(json_path.parent)))
    md = json_path.with_suffix(".md")
    md.write_text(_header(run) + _table(run) + "\n" + "\n".join(sections))
    return md


def plot_scenario(entry: dict[str, Any], ceiling: float | None, path: Path) -> None:
    series = entry["series"]
    seconds = list(range(len(series["ok"])))
    limits = _limits(entry)
    fig, (lat, thr, err) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    fig.suptitle(f"{entry['name']} — {_load(entry)}")

    for key in ("p50", "p95", "p99"):
        values = [float("nan") if v is None else v for v in series[key]]
        lat.plot(seconds, values, label=key, color=COLOURS[key], linewidth=1.4)
    for key in ("p95_ms", "p99_ms"):
        if key in limits:
            colour = COLOURS[key.removesuffix("_ms")]
            lat.axhline(limits[key], color=colour, linestyle="--", label=f"SLA {key[:3]}")
    lat.set_ylabel("latency (ms)")
    lat.set_ylim(bottom=0)
    lat.legend(loc="upper right", fontsize="small", ncol=5)

    per_s = [n / series["interval_s"] for n in series["ok"]]
    thr.plot(seconds, per_s, label="successful calls/s", color="#55a868")
    if "throughput" in limits:
        thr.axhline(limits["throughput"], color="#55a868", linestyle="--", label="SLA floor")
    if ceiling:
        thr.axhline(ceiling, color="grey", linestyle=":", label="ceiling (health, same run)")
    if entry["load"].get("rate"):
        thr.axhline(entry["load"]["rate"], color="#8172b2", linestyle="-.", label="planned rate")
    thr.set_ylabel("calls/s")
    thr.set_ylim(bottom=0)
    thr.legend(loc="best", fontsize="small", ncol=2)

    ratio = [_share(e, o) for e, o in zip(series["errors"], series["ok"], strict=True)]
    err.plot(seconds, ratio, label="failed or shed / attempted", color="#c44e52")
    if "error_ratio" in limits:
        err.axhline(limits["error_ratio"], color="#c44e52", linestyle="--", label="SLA max")
    err.set_ylabel("error share")
    err.set_ylim(0, max(0.05, max(ratio, default=0) * 1.2))
    err.set_xlabel(f"second of the measured window (interval {series['interval_s']} s)")
    err.legend(loc="upper right", fontsize="small")

    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _share(errors: int, ok: int) -> float:
    return errors / (errors + ok) if errors + ok else 0.0


def _limits(entry: dict[str, Any]) -> dict[str, float]:
    sla = entry.get("sla") or {}
    return {c["name"]: c["target"] for c in sla.get("checks", []) if c["name"] != "kept_rate"}


def _load(entry: dict[str, Any]) -> str:
    load = entry["load"]
    if load.get("mode") == "open":
        return f"open loop at {load['rate']:g}/s"
    return f"closed loop, {load['processes']}x{load['concurrency']} callers"


def _header(run: dict[str, Any]) -> str:
    host = run.get("host", {})
    ceiling = run.get("ceiling")
    lines = [
        f"# Bench run {run['run_id']}",
        "",
        f"{run['started_at']} to {run['finished_at']}, {host.get('cpus', '?')} CPUs, "
        f"load average before {host.get('loadavg_before', '?')}; "
        + (
            f"ceiling {ceiling['throughput']:,.0f} calls/s ({ceiling['scenario']})."
            if ceiling
            else "no ceiling in this run."
        ),
        "",
        f"**{'PASS' if run['passed'] else 'FAIL'}**",
        "",
    ]
    return "\n".join(lines) + "\n"


def _table(run: dict[str, Any]) -> str:
    rows = [
        "| scenario | p50 ms | p95 ms | p99 ms | calls/s | x ceiling | errors | SLA | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in run["scenarios"]:
        if e["status"] != "ok":
            rows.append(f"| {e['name']} | | | | | | | | ERROR: {e['error']} |")
            continue
        lat, sla = e["latency_ms"], e.get("sla")
        ratio = "-" if e["ratio_of_ceiling"] is None else f"{e['ratio_of_ceiling']:.2f}"
        rows.append(
            f"| {e['name']} | "
            + " | ".join(format_ms(lat[k]) for k in ("p50", "p95", "p99"))
            + " | "
            f"{e['throughput']:,.1f} | {ratio} | {format_errors(e['calls'])} | "
            f"{sla['target'] if sla else '-'} | {verdict_text(sla)} |"
        )
    return "\n".join(rows) + "\n"


def _section(entry: dict[str, Any], png: Path) -> str:
    sla = entry.get("sla")
    source = f"\n\nTarget: {sla['target']}. Source: {sla['source']}" if sla else ""
    return f"## {entry['name']}{source}\n\n![{entry['name']}]({png.as_posix()})\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sla_report", description=__doc__)
    parser.add_argument("run", type=Path, help="a run's JSON report (bench/results/<run>.json)")
    args = parser.parse_args(argv)
    run = json.loads(args.run.read_text())
    if run.get("schema", 1) < 2:
        parser.error(f"{args.run} has no per-second series (schema {run.get('schema', 1)} < 2)")
    print(write(run, args.run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
