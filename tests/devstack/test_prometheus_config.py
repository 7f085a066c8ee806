"""Prometheus's configuration without starting a stack: one job per started process with every
replica as a target, Envoy's admin stats, the rules of deploy/prometheus; `promtool check
config` validates it (rule files included)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from devstack import prometheus
from devstack.ports import LOOPBACK, ServicePorts


def test_every_replica_and_envoy_are_scraped(tmp_path: Path) -> None:
    services = {
        "user": (ServicePorts(20051, 21051), ServicePorts(20061, 21061)),
        "quiz-worker": (ServicePorts(20056, 21056),),
        "live": (),
    }
    jobs = prometheus.scrape_jobs(services, envoy_admin=19901)
    targets = {
        job["job_name"]: [(c["targets"], c.get("labels")) for c in job["static_configs"]]
        for job in jobs
    }
    assert targets == {
        "user": [
            ([f"{LOOPBACK}:21051"], {"replica": "0"}),
            ([f"{LOOPBACK}:21061"], {"replica": "1"}),
        ],
        "quiz-worker": [([f"{LOOPBACK}:21056"], {"replica": "0"})],
        "envoy": [([f"{LOOPBACK}:19901"], None)],
    }
    assert next(j for j in jobs if j["job_name"] == "envoy")["metrics_path"] == "/stats/prometheus"
    assert "envoy" not in {j["job_name"] for j in prometheus.scrape_jobs(services, None)}


def test_the_config_loads_the_rules_and_validates(tmp_path: Path) -> None:
    jobs = prometheus.scrape_jobs({"user": (ServicePorts(1, 2),)}, envoy_admin=3)
    text = prometheus.render_config(jobs, prometheus.rule_files())
    assert {Path(p).name for p in json.loads(text)["rule_files"]} == {"rules.yml", "sla_rules.yml"}
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    done = subprocess.run(
        [str(prometheus.PROMTOOL), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_server_listens_on_loopback_with_data_under_the_data_dir(tmp_path: Path) -> None:
    proc = prometheus.server(
        config_path=tmp_path / "config" / "prometheus.yml",
        config_text="{}\n",
        data_dir=tmp_path / "prometheus",
        port=29999,
        log_path=tmp_path / "prometheus.log",
    )
    assert f"--web.listen-address={LOOPBACK}:29999" in proc.argv
    assert f"--storage.tsdb.path={tmp_path / 'prometheus'}" in proc.argv
