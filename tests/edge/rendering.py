"""The edge config rendered as data, and helpers to find its parts (tests/edge/test_render*)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devstack.envoy_config import Upstream, render
from tests.edge.harness import OTHER_SERVICES, PROTOSET, USER_SERVICE

LIVE = "elearn.live.v1.LiveService"
ALL_SERVICES = {"user": USER_SERVICE, **OTHER_SERVICES}


def upstreams(replicas: int = 1, host: str = "127.0.0.1") -> list[Upstream]:
    return [
        Upstream(name, svc, [(host, 50_000 + 10 * i + r) for r in range(replicas)])
        for i, (name, svc) in enumerate(ALL_SERVICES.items())
    ]


def rendered(
    protoset: Path = PROTOSET, ups: list[Upstream] | None = None, **kw: Any
) -> dict[str, Any]:
    text = render(
        edge_host="127.0.0.1",
        edge_port=8080,
        admin_port=9901,
        protoset=protoset,
        upstreams=upstreams() if ups is None else ups,
        **kw,
    )
    config: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return config


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    [listener] = config["static_resources"]["listeners"]
    [chain] = listener["filter_chains"]
    [manager] = chain["filters"]
    typed: dict[str, Any] = manager["typed_config"]
    return typed


def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    [vhost] = hcm(config)["route_config"]["virtual_hosts"]
    found: list[dict[str, Any]] = vhost["routes"]
    return found


def route_for(config: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The first route whose path or prefix matches, as Envoy picks it (method-agnostic)."""
    for route in routes(config):
        match = route["match"]
        if match.get("path") == path or ("prefix" in match and path.startswith(match["prefix"])):
            return route
    return None


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [f for f in hcm(config)["http_filters"] if f["name"] == name]
    return found
