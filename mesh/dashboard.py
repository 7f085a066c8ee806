"""A Grafana-importable dashboard generated from mesh.metric_catalogue (issue 16 item 6): one
row per catalogue row, one time-series panel per metric, the data source chosen at import.
We do not ship or run Grafana; the file is for operators who do.

    python -m mesh.dashboard          # rewrite deploy/grafana/elearn.json
    python -m mesh.dashboard --check  # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mesh.metric_catalogue import CATALOGUE, Metric

OUTPUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "elearn.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
PANEL_WIDTH, PANEL_HEIGHT, PER_ROW = 8, 8, 3


def _panel(metric: Metric, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": metric.title,
        "description": f"{metric.name} ({metric.kind})",
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": metric.unit}, "overrides": []},
        "targets": [{"refId": "A", "datasource": DATASOURCE, "expr": metric.query}],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    rows: dict[str, list[Metric]] = {}
    for metric in CATALOGUE:
        rows.setdefault(metric.row, []).append(metric)
    y, panel_id = 0, 1
    for title, metrics in rows.items():
        panels.append(
            {"id": panel_id, "type": "row", "title": title, "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
        )  # fmt: skip
        panel_id, y = panel_id + 1, y + 1
        for index, metric in enumerate(metrics):
            x = (index % PER_ROW) * PANEL_WIDTH
            row_y = y + (index // PER_ROW) * PANEL_HEIGHT
            panels.append(_panel(metric, panel_id, x, row_y))
            panel_id += 1
        y += -(-len(metrics) // PER_ROW) * PANEL_HEIGHT
    return {
        "__inputs": [
            {"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
             "pluginId": "prometheus", "pluginName": "Prometheus"}
        ],
        "title": "elearn platform",
        "uid": "elearn-platform",
        "tags": ["elearn"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }  # fmt: skip


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run `python -m mesh.dashboard`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
