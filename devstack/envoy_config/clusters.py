"""One cluster per platform service: replicas, HTTP/2, health checks, ejection, breakers."""

from __future__ import annotations

import ipaddress
from typing import Any

from devstack.envoy_config.common import UPSTREAM_HTTP, address, typed
from devstack.envoy_config.contract import Upstream
from devstack.envoy_config.limits import (
    CONNECTION_IDLE_TIMEOUT,
    HEALTH_HEALTHY_THRESHOLD,
    HEALTH_INTERVAL,
    HEALTH_TIMEOUT,
    HEALTH_UNHEALTHY_THRESHOLD,
    KEEPALIVE_INTERVAL,
    KEEPALIVE_TIMEOUT,
    MAX_PENDING_REQUESTS,
    MAX_REQUESTS,
    MAX_RETRIES,
    MAX_UPSTREAM_CONNECTIONS,
    UPSTREAM_CONNECT_TIMEOUT,
    UPSTREAM_CONNECTION_WINDOW,
    UPSTREAM_MAX_CONCURRENT_STREAMS,
    UPSTREAM_STREAM_WINDOW,
)


def cluster(upstream: Upstream) -> dict[str, Any]:
    static = all(_is_ip(host) for host, _ in upstream.endpoints)
    replicas = [{"endpoint": {"address": address(h, p)}} for h, p in upstream.endpoints]
    cluster: dict[str, Any] = {
        "name": upstream.name,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": UPSTREAM_CONNECT_TIMEOUT,
        # Least request, not round robin: long-lived live streams and costly logins load
        # replicas unevenly, and open streams count as active requests.
        "lb_policy": "LEAST_REQUEST",
        "load_assignment": {
            "cluster_name": upstream.name,
            "endpoints": [{"lb_endpoints": replicas}] if replicas else [],
        },
        "typed_extension_protocol_options": {
            UPSTREAM_HTTP: typed(
                UPSTREAM_HTTP,
                common_http_protocol_options={"idle_timeout": CONNECTION_IDLE_TIMEOUT},
                explicit_http_config={
                    "http2_protocol_options": {
                        "max_concurrent_streams": UPSTREAM_MAX_CONCURRENT_STREAMS,
                        "initial_stream_window_size": UPSTREAM_STREAM_WINDOW,
                        "initial_connection_window_size": UPSTREAM_CONNECTION_WINDOW,
                        "connection_keepalive": {
                            "interval": KEEPALIVE_INTERVAL,
                            "timeout": KEEPALIVE_TIMEOUT,
                        },
                    }
                },
            )
        },
        "health_checks": [
            {
                "timeout": HEALTH_TIMEOUT,
                "interval": HEALTH_INTERVAL,
                "no_traffic_interval": HEALTH_INTERVAL,
                "unhealthy_threshold": HEALTH_UNHEALTHY_THRESHOLD,
                "healthy_threshold": HEALTH_HEALTHY_THRESHOLD,
                "grpc_health_check": {"service_name": upstream.grpc_service},
            }
        ],
        "outlier_detection": {
            # Application statuses map to 5xx (UNIMPLEMENTED 501, DEADLINE_EXCEEDED 504), so
            # only failures Envoy sees itself (refused, reset, timed-out connections) eject.
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 3,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_consecutive_5xx": 0,
            "enforcing_consecutive_gateway_failure": 0,
            "enforcing_success_rate": 0,
            "enforcing_local_origin_success_rate": 0,
            "interval": "5s",
            "base_ejection_time": "10s",
            "max_ejection_time": "60s",
            "max_ejection_percent": 50,
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": MAX_UPSTREAM_CONNECTIONS,
                    "max_pending_requests": MAX_PENDING_REQUESTS,
                    "max_requests": MAX_REQUESTS,
                    "max_retries": MAX_RETRIES,
                    "track_remaining": True,
                }
            ]
        },
    }
    if not static:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
