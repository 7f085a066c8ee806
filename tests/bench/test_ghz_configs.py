"""bench/ghz/*.json name real methods, read no reflection, and are bounded in count or time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "bench" / "ghz").glob("*.json"))


def protoset_methods(path: Path) -> set[str]:
    files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    return {
        f"{f.package}.{service.name}.{method.name}"
        for f in files.file
        for service in f.service
        for method in service.method
    }


def test_there_is_a_config_per_ghz_drivable_scenario() -> None:
    assert {c.stem for c in CONFIGS} >= {"health", "login", "whoami"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_is_bounded_plaintext_and_names_a_known_call(config: Path) -> None:
    body = json.loads(config.read_text())

    assert body["insecure"] is True
    assert body["host"] == "127.0.0.1:8080"
    assert ("total" in body) != ("duration" in body), "bounded by exactly one of total/duration"
    # ghz turns max-duration into a duration and then ignores total.
    assert "max-duration" not in body
    if "protoset" in body:
        assert body["protoset"] == "envoy/elearn.protoset"
        assert body["call"] in protoset_methods(ROOT / body["protoset"])
    else:
        proto = (ROOT / body["proto"]).read_text()
        service, method = body["call"].rsplit(".", 2)[1:]
        assert f"service {service}" in proto
        assert f"rpc {method}(" in proto
