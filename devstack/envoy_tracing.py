"""The edge's tracer (`--observe`): Envoy starts a trace for each request, or continues the one
a client's `traceparent` names, and exports its spans over OTLP/gRPC to the stack's collector
(Jaeger). The services continue the trace from the `traceparent` Envoy forwards.

A separate step on the rendered config, like the media route, so the edge renderer and the
config of a stack without observing stay as they are. Envoy samples the requests it starts
with the same ratio as the services (mesh's TRACE_SAMPLE_RATIO), so the decision made at the
edge is the one every service downstream follows.
"""

from __future__ import annotations

from typing import Any

import yaml

from devstack.envoy_config.common import UPSTREAM_HTTP, address, typed
from mesh.config import MeshSettings

COLLECTOR_CLUSTER = "otlp_collector"
SERVICE_NAME = "envoy"


def default_ratio() -> float:
    return float(MeshSettings.model_fields["trace_sample_ratio"].default)


def with_tracing(
    config_yaml: str, *, collector: tuple[str, int], sample_ratio: float | None = None
) -> str:
    config = yaml.load(config_yaml, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    resources = config["static_resources"]
    for listener in resources["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                if network_filter["name"] == "envoy.filters.network.http_connection_manager":
                    ratio = default_ratio() if sample_ratio is None else sample_ratio
                    network_filter["typed_config"]["tracing"] = tracing(ratio)
    resources["clusters"].append(collector_cluster(*collector))
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(config, Dumper=dumper, sort_keys=False, width=100))


def tracing(sample_ratio: float) -> dict[str, Any]:
    return {
        # Envoy's sampling is a percentage of the requests it starts a trace for.
        "random_sampling": {"value": round(sample_ratio * 100, 6)},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": typed(
                "envoy.config.trace.v3.OpenTelemetryConfig",
                grpc_service={"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "1s"},
                service_name=SERVICE_NAME,
            ),
        },
    }


def collector_cluster(host: str, port: int) -> dict[str, Any]:
    return {
        "name": COLLECTOR_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            UPSTREAM_HTTP: typed(UPSTREAM_HTTP, explicit_http_config={"http2_protocol_options": {}})
        },
        "load_assignment": {
            "cluster_name": COLLECTOR_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(host, port)}}]}],
        },
    }
