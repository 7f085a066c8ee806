"""Render the edge Envoy's config: one listener for native gRPC, gRPC-Web and JSON/REST.

The config is built as a Python data structure and dumped as YAML (v3 API), so every value is
typed and computed from the contract rather than templated text. The protoset decides what is
transcoded (services), which routes are streaming (any method with client or server streaming)
and which REST paths exist (their `google.api.http` templates). Why each limit has its value is
written next to the constant (limits.py) and summed up in envoy/README.md.

Parts: contract.py (what the protoset says), listener.py (connection manager and filters),
routes.py (routes, retries, sign-in rate limit, client address), replies.py (Envoy's own error
bodies, access log), clusters.py (upstreams).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from devstack.envoy_config.clusters import cluster
from devstack.envoy_config.common import BODY_LIMIT, LOCAL_RATE_LIMIT, address, extension
from devstack.envoy_config.contract import (
    Contract,
    Upstream,
    read_contract,
    rest_matchers,
    transcoder_descriptor,
)
from devstack.envoy_config.limits import MAX_DOWNSTREAM_CONNECTIONS
from devstack.envoy_config.listener import listener
from devstack.envoy_config.routes import AUTH_SERVICE, RATE_LIMITED_METHODS, AuthRateLimit

__all__ = [
    "AUTH_SERVICE",
    "BODY_LIMIT",
    "LOCAL_RATE_LIMIT",
    "RATE_LIMITED_METHODS",
    "AuthRateLimit",
    "Contract",
    "Upstream",
    "read_contract",
    "render",
    "rest_matchers",
    "transcoder_descriptor",
]


def render(
    *,
    edge_host: str,
    edge_port: int,
    admin_port: int,
    protoset: Path,
    upstreams: list[Upstream],
    log_all_requests: bool = False,
    auth_rate_limit: AuthRateLimit | None = None,
) -> str:
    """The edge's Envoy bootstrap as YAML. An upstream without endpoints (run with 0 replicas)
    is still routed and answers UNAVAILABLE. By default the access log keeps only failed or
    slow requests (a line per call would cost the benchmark CPU); `log_all_requests` logs all.
    `auth_rate_limit` sets the per-edge token bucket of each sign-in method (default:
    AuthRateLimit(), far above the login benchmark's rate)."""
    contract = read_contract(protoset)
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ValueError(f"upstream names must be unique: {names}")
    auth_limit = auth_rate_limit or AuthRateLimit()
    edge = listener(
        edge_host, edge_port, protoset, contract, upstreams, log_all_requests, auth_limit
    )
    config = {
        "node": {"id": "elearn-edge", "cluster": "elearn-edge"},
        "admin": {"address": address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [edge],
            "clusters": [cluster(u) for u in upstreams],
        },
        "overload_manager": {
            "resource_monitors": [
                extension(
                    "envoy.resource_monitors.global_downstream_max_connections",
                    "envoy.extensions.resource_monitors.downstream_connections.v3."
                    "DownstreamConnectionsConfig",
                    max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS,
                )
            ]
        },
    }
    # libyaml's dumper when present: the pure-Python one takes ~0.1 s for the inlined descriptor.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(config, Dumper=dumper, sort_keys=False, width=100)
