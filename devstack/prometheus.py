"""Prometheus (`make tools` unpacks Debian's 2.42.0 into .tools/bin), the metrics back-end of a
stack started with `--observe`.

The scrape configuration is written from the processes the stack actually started: one job per
service or worker with every replica's metrics port as a target (labelled with its replica
index, never an id), and Envoy's admin `/stats/prometheus`. The alert rules of deploy/prometheus
are loaded as they are, so the rules `promtool test rules` checks are the rules that run.
Samples live under the stack's data dir; a dev stack keeps a day of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devstack.ports import LOOPBACK, ServicePorts
from devstack.processes import ManagedProcess, built_tool, http_ok

VERSION = "2.42.0"
_TOOLS = Path(__file__).resolve().parent.parent / ".tools" / "bin"
BINARY = _TOOLS / "prometheus"
PROMTOOL = _TOOLS / "promtool"
RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
# Short enough that a dashboard follows a 10 s benchmark and a test sees targets up quickly.
SCRAPE_INTERVAL = "5s"
RETENTION = "1d"


def ui_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def binary() -> Path:
    return built_tool(BINARY, f"Prometheus {VERSION}", "unpacks Debian's prometheus package, once")


def scrape_jobs(
    services: Mapping[str, Sequence[ServicePorts]], envoy_admin: int | None
) -> list[dict[str, Any]]:
    """One job per process name, a target per replica; Envoy's admin stats when it runs."""
    jobs: list[dict[str, Any]] = []
    for name, replicas in services.items():
        if not replicas:
            continue
        jobs.append(
            {
                "job_name": name,
                "static_configs": [
                    {"targets": [f"{LOOPBACK}:{p.metrics}"], "labels": {"replica": str(index)}}
                    for index, p in enumerate(replicas)
                ],
            }
        )
    if envoy_admin is not None:
        jobs.append(
            {
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [f"{LOOPBACK}:{envoy_admin}"]}],
            }
        )
    return jobs


def render_config(jobs: list[dict[str, Any]], rule_files: Sequence[Path]) -> str:
    """The configuration as JSON, a YAML subset Prometheus reads."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": jobs,
    }
    return json.dumps(config, indent=2) + "\n"


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def server(
    *, config_path: Path, config_text: str, data_dir: Path, port: int, log_path: Path
) -> ManagedProcess:
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config_text)
    data_dir.mkdir(parents=True, exist_ok=True)
    # SIGTERM: Prometheus flushes its head block and exits.
    return ManagedProcess(
        name="prometheus",
        index=0,
        argv=[
            str(binary()),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        log_path=log_path,
        grace=5.0,
    )


def is_ready(port: int) -> bool:
    return http_ok(f"{ui_url(port)}/-/ready")
