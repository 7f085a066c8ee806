"""The edge's one virtual host: gRPC routes by service and method, health and reflection, the
REST paths CORS needs, the retry policy, the sign-in rate limit and the client-address headers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devstack.envoy_config.common import BODY_LIMIT, LOCAL_RATE_LIMIT, extension, typed
from devstack.envoy_config.contract import Contract, Upstream, rest_matchers
from devstack.envoy_config.limits import (
    AUTH_RATE_BURST,
    AUTH_RATE_PER_SECOND,
    CORS_ALLOW_HEADERS,
    CORS_ALLOW_METHODS,
    CORS_EXPOSE_HEADERS,
    CORS_MAX_AGE,
    HOST_SELECTION_RETRY_MAX_ATTEMPTS,
    LOCAL_ORIGIN_REGEX,
    NUM_RETRIES,
    RETRY_ON,
    STREAM_IDLE_TIMEOUT,
    UNARY_TIMEOUT,
)
from mesh import queue_time

# Reflection and the standard health service are answered by this upstream for the whole edge
# (its reflection lists every platform service).
META_UPSTREAM = "user"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)

# The methods that spend an argon2 hash or mint tokens for an anonymous caller; `/api/auth/*`
# JSON calls are transcoded onto these paths, so one route each covers every protocol.
AUTH_SERVICE = "elearn.user.v1.UserService"
RATE_LIMITED_METHODS = ("Login", "Register", "Refresh")

# The address the services may trust for per-client throttling: the peer Envoy itself saw.
# Whatever a client sent in these headers is overwritten (with use_remote_address Envoy only
# appends to x-forwarded-for, and passes x-envoy-external-address through from loopback and
# private addresses, which it counts as internal).
CLIENT_ADDRESS_HEADERS = ("x-envoy-external-address", "x-forwarded-for")
CLIENT_ADDRESS = "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"


@dataclass(frozen=True)
class AuthRateLimit:
    """Token bucket per edge for each rate-limited sign-in method."""

    per_second: int = AUTH_RATE_PER_SECOND
    burst: int = AUTH_RATE_BURST

    def __post_init__(self) -> None:
        if self.per_second < 1 or self.burst < 1:
            raise ValueError(f"auth rate limit must be positive: {self}")


def route_config(
    contract: Contract, upstreams: list[Upstream], auth_limit: AuthRateLimit
) -> dict[str, Any]:
    routes: list[dict[str, Any]] = []
    for upstream in upstreams:
        # Exact streaming paths first: they must win over their service's prefix route.
        prefix = f"/{upstream.grpc_service}/"
        routes += [
            grpc_route({"path": p}, upstream.name, streaming=True)
            for p in contract.streaming_paths
            if p.startswith(prefix)
        ]
        if upstream.grpc_service == AUTH_SERVICE:
            routes += [
                _rate_limited(grpc_route({"path": f"{prefix}{m}"}, upstream.name), m, auth_limit)
                for m in RATE_LIMITED_METHODS
            ]
        routes.append(grpc_route({"prefix": prefix}, upstream.name))
    if META_UPSTREAM in {u.name for u in upstreams}:
        routes.append(
            grpc_route({"path": f"/{HEALTH_SERVICE}/Watch"}, META_UPSTREAM, streaming=True)
        )
        routes.append(grpc_route({"prefix": f"/{HEALTH_SERVICE}/"}, META_UPSTREAM))
        routes += [
            grpc_route({"prefix": f"/{s}/"}, META_UPSTREAM, streaming=True)
            for s in REFLECTION_SERVICES
        ]
    # REST routes, matched on the original path before the transcoder rewrites a JSON call to
    # its gRPC path (and re-routes it by the gRPC routes above). The CORS filter needs a route
    # entry here to answer preflights and decorate responses (a direct response does not
    # count); the JSON body limit applies only on these. A non-gRPC request that is no binding
    # is refused by the transcoder (404/400) before it could be forwarded.
    for upstream in upstreams:
        for match in rest_matchers(contract.rest_templates.get(upstream.grpc_service, ())):
            routes.append({"match": match, "route": unary_action(upstream.name)})
    return {
        "name": "edge",
        "request_headers_to_add": [
            {
                "header": {"key": name, "value": value},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
            for name, value in (
                *((name, CLIENT_ADDRESS) for name in CLIENT_ADDRESS_HEADERS),
                # When the edge took the request: a service refuses a call that waited too
                # long for it (mesh.queue_time). A client's own stamp is overwritten.
                (queue_time.HEADER, queue_time.ENVOY_VALUE),
            )
        ],
        "virtual_hosts": [
            {
                "name": "edge",
                "domains": ["*"],
                "routes": routes,
                "typed_per_filter_config": {
                    "envoy.filters.http.cors": typed(
                        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
                        allow_origin_string_match=[{"safe_regex": {"regex": LOCAL_ORIGIN_REGEX}}],
                        allow_methods=CORS_ALLOW_METHODS,
                        allow_headers=CORS_ALLOW_HEADERS,
                        expose_headers=CORS_EXPOSE_HEADERS,
                        max_age=CORS_MAX_AGE,
                    )
                },
                "retry_policy": {
                    "retry_on": RETRY_ON,
                    "num_retries": NUM_RETRIES,
                    "retry_host_predicate": [
                        extension(
                            "envoy.retry_host_predicates.previous_hosts",
                            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                        )
                    ],
                    "host_selection_retry_max_attempts": HOST_SELECTION_RETRY_MAX_ATTEMPTS,
                },
            }
        ],
    }


def grpc_route(match: dict[str, str], cluster: str, *, streaming: bool = False) -> dict[str, Any]:
    if streaming:
        # No route timeout; a deadline the client sets still applies (grpc-timeout, uncapped).
        action = {
            "cluster": cluster,
            "timeout": "0s",
            "idle_timeout": STREAM_IDLE_TIMEOUT,
            "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        }
    else:
        action = unary_action(cluster)
    no_body_limit = typed("envoy.config.route.v3.FilterConfig", disabled=True)
    return {
        "match": match,
        "route": action,
        "typed_per_filter_config": {BODY_LIMIT: no_body_limit},
    }


def unary_action(cluster: str) -> dict[str, Any]:
    # grpc-timeout may shorten the route timeout, never lengthen it.
    return {
        "cluster": cluster,
        "timeout": UNARY_TIMEOUT,
        "max_stream_duration": {"grpc_timeout_header_max": UNARY_TIMEOUT},
    }


def _rate_limited(route: dict[str, Any], method: str, limit: AuthRateLimit) -> dict[str, Any]:
    """The route with a token bucket of its own (the listener's filter has none, so it limits
    only routes that carry one). Past it: HTTP 429 with a JSON status for JSON callers,
    RESOURCE_EXHAUSTED for gRPC and gRPC-Web (Envoy's default mapping of 429 is UNAVAILABLE,
    which clients would retry at once)."""
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    route["typed_per_filter_config"][LOCAL_RATE_LIMIT] = typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix=f"auth_{method.lower()}",
        token_bucket={
            "max_tokens": limit.burst,
            "tokens_per_fill": limit.per_second,
            "fill_interval": "1s",
        },
        filter_enabled={**always, "runtime_key": "edge.auth_rate_limit.enabled"},
        filter_enforced={**always, "runtime_key": "edge.auth_rate_limit.enforced"},
        rate_limited_as_resource_exhausted=True,
    )
    return route
