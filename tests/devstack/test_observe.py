"""`--observe` without starting a stack: the flag, the environment services get, the edge's
tracer (validated by Envoy itself) and Jaeger's config (validated by Jaeger itself)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from devstack import envoy, envoy_tracing, jaeger
from devstack.__main__ import _config, _forwarded, _parser
from devstack.config import PROTOSET
from devstack.ports import LOOPBACK, JaegerPorts, ServicePorts, free_ports
from devstack.services import SharedEnv, service_env


def _shared(**fields: Any) -> SharedEnv:
    return SharedEnv(
        database_url="postgresql+psycopg://x@127.0.0.1:1/x",
        cache_url="redis://127.0.0.1:2/0",
        state_url="redis://127.0.0.1:3/0",
        nats_url="nats://127.0.0.1:4",
        jwt_public_key_file=Path("/k.pub"),
        jwt_private_key_file=Path("/k"),
        admin_email="a@b.c",
        admin_password="pw",
        **fields,
    )


def _edge_yaml() -> str:
    upstreams = [envoy.UpstreamSpec("user", "elearn.user.v1.UserService", [(LOOPBACK, 20051)])]
    return envoy.render_edge_config(
        edge_host=LOOPBACK, edge_port=8080, admin_port=19901, protoset=PROTOSET, upstreams=upstreams
    )


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    manager: dict[str, Any] = config["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"
    ][0]["typed_config"]
    return manager


def _envoy_validates(text: str, tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    argv = [str(envoy.binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_observe_flag_reaches_the_config_and_the_detached_start(tmp_path: Path) -> None:
    args = _parser().parse_args(["start", "--observe", "--data-dir", str(tmp_path)])
    assert _config(args).observe is True
    assert "--observe" in _forwarded(args)
    plain = _parser().parse_args(["start", "--data-dir", str(tmp_path)])
    assert _config(plain).observe is False
    assert "--observe" not in _forwarded(plain)


def test_services_export_only_when_observing() -> None:
    ports = ServicePorts(1, 2)
    off = service_env("user", 0, ports, _shared(), base={})
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in off and "TRACE_SAMPLE_RATIO" not in off
    on = service_env(
        "user", 0, ports, _shared(otlp_endpoint="http://127.0.0.1:9", trace_sample_ratio=0.5)
    )
    assert on["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:9"
    assert on["TRACE_SAMPLE_RATIO"] == "0.5"


def test_edge_tracer_exports_to_the_collector_and_validates(tmp_path: Path) -> None:
    plain = _edge_yaml()
    assert "tracing" not in _hcm(yaml.safe_load(plain))
    traced = envoy_tracing.with_tracing(plain, collector=(LOOPBACK, 24317), sample_ratio=0.25)
    config = yaml.safe_load(traced)
    tracing = _hcm(config)["tracing"]
    assert tracing["random_sampling"] == {"value": 25.0}
    provider = tracing["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typed_config"]["service_name"] == "envoy"
    cluster_name = provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]
    [collector] = [c for c in config["static_resources"]["clusters"] if c["name"] == cluster_name]
    endpoint = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": LOOPBACK, "port_value": 24317}
    _envoy_validates(traced, tmp_path)


def test_edge_samples_at_the_services_default_when_no_ratio_is_given() -> None:
    traced = envoy_tracing.with_tracing(_edge_yaml(), collector=(LOOPBACK, 24317))
    sampling = _hcm(yaml.safe_load(traced))["tracing"]["random_sampling"]["value"]
    assert sampling == envoy_tracing.default_ratio() * 100


def test_jaeger_listens_on_loopback_only_and_its_config_validates(tmp_path: Path) -> None:
    ports = JaegerPorts(*free_ports(5))
    text = jaeger.render_config(ports)
    endpoints = [
        line.split('"endpoint": ')[1].strip().strip('",')
        for line in text.splitlines()
        if '"endpoint"' in line
    ]
    assert sorted(endpoints) == sorted(f"{LOOPBACK}:{p}" for p in ports.all())
    path = tmp_path / "jaeger.yaml"
    path.write_text(text)
    done = subprocess.run(
        [str(jaeger.binary()), "validate", "--config", f"file:{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
