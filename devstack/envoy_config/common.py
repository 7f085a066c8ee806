"""Small builders shared by the config's parts, and extension names more than one part uses."""

from __future__ import annotations

from typing import Any

BODY_LIMIT = "envoy.filters.http.body_size_limit"
LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
UPSTREAM_HTTP = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def typed(proto: str, **fields: Any) -> dict[str, Any]:
    """An Any-typed config: `@type` from the proto's full name, then its fields."""
    return {"@type": f"type.googleapis.com/{proto}", **fields}


def extension(name: str, proto: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "typed_config": typed(proto, **fields)}


def address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}
