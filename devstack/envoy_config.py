"""Render the edge Envoy's config: one listener for native gRPC, gRPC-Web and JSON/REST.

The config is built as a Python data structure and dumped as YAML (v3 API), so every value is
typed and computed from the contract rather than templated text. The protoset decides what is
transcoded (services), which routes are streaming (any method with client or server streaming)
and which REST paths exist (their `google.api.http` templates). Why each limit has its value is
written next to the constant and summed up in envoy/README.md.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

# Reflection and the standard health service are answered by this upstream for the whole edge
# (its reflection lists every platform service).
META_UPSTREAM = "user"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)

# Types a service may put in google.rpc.Status details (mesh.errors sends BadRequest). The
# transcoder renders a status for JSON callers only if it knows every detail's type; with an
# unknown one it answers an empty body, so these are added to the descriptor it reads.
ERROR_MODEL_FILES = (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)

# google.rpc.Code in the JSON body of errors Envoy answers itself, by HTTP status (the inverse
# of what the transcoder does for a service's status); any other status says UNKNOWN.
LOCAL_REPLY_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    404: code_pb2.NOT_FOUND,
    408: code_pb2.DEADLINE_EXCEEDED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
    504: code_pb2.DEADLINE_EXCEEDED,
}
UNKNOWN = code_pb2.UNKNOWN

# --- Timeouts -------------------------------------------------------------------------------
# A unary call that has not answered in 15 s is stuck (argon2 login ~30-100 ms, dashboards are
# one indexed query); a client's grpc-timeout may shorten it, never lengthen it.
UNARY_TIMEOUT = "15s"
# Live clients heartbeat every 30 s; 600 s of silence on a stream means the peer is gone, and
# anything shorter than a few heartbeats would cut quiet-but-healthy sessions.
STREAM_IDLE_TIMEOUT = "600s"
# Idle timeout of unary streams (HCM default; streaming routes override it per route).
DEFAULT_STREAM_IDLE_TIMEOUT = "60s"
# Slowloris guard: the whole request header block must arrive within 10 s of connecting.
REQUEST_HEADERS_TIMEOUT = "10s"
# A downstream or upstream connection with no stream for 5 min is closed.
CONNECTION_IDLE_TIMEOUT = "300s"
UPSTREAM_CONNECT_TIMEOUT = "1s"

# --- Sizes ----------------------------------------------------------------------------------
# Bearer JWTs are < 1 KiB; 32 KiB of headers is generous and half Envoy's 60 KiB default.
MAX_REQUEST_HEADERS_KB = 32
MAX_HEADERS_COUNT = 100
# JSON request bodies: forms and profile edits are small (video bytes never pass the edge); 1 MiB
# stops abuse long before memory matters. A JSON response (a catalog page, a dashboard) may be
# buffered up to 4 MiB, the services' gRPC message cap.
MAX_JSON_REQUEST_BYTES = 1 << 20
MAX_JSON_RESPONSE_BYTES = 4 << 20
# HTTP/2: a browser or a load driver multiplexes many live streams on one connection (a session
# holds up to 1,000 participants); flow-control windows bound the memory each may pin.
DOWNSTREAM_MAX_CONCURRENT_STREAMS = 2048
DOWNSTREAM_STREAM_WINDOW = 256 << 10
DOWNSTREAM_CONNECTION_WINDOW = 1 << 20
UPSTREAM_MAX_CONCURRENT_STREAMS = 1024
UPSTREAM_STREAM_WINDOW = 1 << 20
UPSTREAM_CONNECTION_WINDOW = 4 << 20
MAX_DOWNSTREAM_CONNECTIONS = 8192

# --- Upstream health ------------------------------------------------------------------------
# gRPC health every second (also when idle: a replica started after Envoy is used within ~1 s);
# three misses eject a replica, one pass brings it back. 2 s timeout so a busy event loop under
# a benchmark is not mistaken for a dead one.
HEALTH_INTERVAL = "1s"
HEALTH_TIMEOUT = "2s"
HEALTH_UNHEALTHY_THRESHOLD = 3
HEALTH_HEALTHY_THRESHOLD = 1
# HTTP/2 PING every 30 s (mesh servers allow one per 10 s) finds a half-open connection to a
# vanished pod in at most 40 s even when no call is in flight.
KEEPALIVE_INTERVAL = "30s"
KEEPALIVE_TIMEOUT = "10s"
# Circuit breakers for a 2-core box: far above what it can serve, low enough that a runaway
# client gets fast 503s instead of unbounded queues. max_requests counts open streams too.
MAX_UPSTREAM_CONNECTIONS = 1024
MAX_PENDING_REQUESTS = 1024
MAX_REQUESTS = 8192
MAX_RETRIES = 3

BODY_LIMIT = "envoy.filters.http.body_size_limit"
UPSTREAM_HTTP = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# --- CORS -----------------------------------------------------------------------------------
LOCAL_ORIGIN_REGEX = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?$"
CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = (
    "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-request-id, "
    "x-accept-content-transfer-encoding, x-accept-response-streaming"
)
CORS_EXPOSE_HEADERS = "grpc-status, grpc-message, grpc-status-details-bin, x-request-id"
# Browsers cache a preflight this long (Chrome caps at 2 h); 10 min keeps config edits visible.
CORS_MAX_AGE = "600"


@dataclass(frozen=True)
class Upstream:
    """One platform service behind the edge."""

    name: str  # "user"
    grpc_service: str  # "elearn.user.v1.UserService"
    endpoints: list[tuple[str, int]]  # every replica's (host, port)


@dataclass(frozen=True)
class Contract:
    """What the edge needs from the descriptor set."""

    services: frozenset[str]
    # "/pkg.Service/Method" of every client-, server- or bidi-streaming method.
    streaming_paths: tuple[str, ...]
    # Service -> the path templates of its google.api.http bindings ("/api/users/{user_id}").
    rest_templates: dict[str, tuple[str, ...]]


def read_contract(protoset: Path) -> Contract:
    """Read services, streaming methods and REST paths out of a FileDescriptorSet."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(protoset.read_bytes())
    services: set[str] = set()
    streaming: list[str] = []
    templates: dict[str, tuple[str, ...]] = {}
    for file in fds.file:
        for service in file.service:
            full = f"{file.package}.{service.name}" if file.package else service.name
            services.add(full)
            paths: list[str] = []
            for method in service.method:
                if method.client_streaming or method.server_streaming:
                    streaming.append(f"/{full}/{method.name}")
                if method.options.HasExtension(annotations_pb2.http):
                    paths.extend(_rule_paths(method.options.Extensions[annotations_pb2.http]))
            templates[full] = tuple(paths)
    return Contract(frozenset(services), tuple(sorted(streaming)), templates)


def _rule_paths(rule: http_pb2.HttpRule) -> Iterable[str]:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        yield rule.custom.path
    elif pattern is not None:
        yield getattr(rule, pattern)
    for extra in rule.additional_bindings:
        yield from _rule_paths(extra)


def transcoder_descriptor(protoset: Path) -> bytes:
    """The protoset plus the error-model files it lacks, without source info (comments are for
    grpcurl; Envoy needs only the types, and the descriptor is inlined in the config)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(protoset.read_bytes())
    for file in fds.file:
        file.ClearField("source_code_info")
    present = {file.name for file in fds.file}

    def add(file: descriptor.FileDescriptor) -> None:
        if file.name in present:
            return
        for dependency in file.dependencies:  # Envoy builds files in order: imports first
            add(dependency)
        file.CopyToProto(fds.file.add())
        present.add(file.name)

    for file in ERROR_MODEL_FILES:
        add(file)
    return fds.SerializeToString()


def rest_matchers(templates: Iterable[str]) -> list[dict[str, str]]:
    """Route matches covering the templates: a prefix for templated paths
    ("/api/users/{user_id}" -> "/api/users/"), the exact path for literal ones."""
    prefixes: set[str] = set()
    paths: set[str] = set()
    for template in templates:
        head = template.split("{", 1)[0].split("*", 1)[0].split(":", 1)[0]
        if head == template:
            paths.add(template)
            continue
        prefix = head[: head.rfind("/") + 1]
        if prefix == "/":  # its route would catch every path
            raise ValueError(f"REST template {template!r} must start with a literal segment")
        prefixes.add(prefix)
    kept = sorted(p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes))
    exact = sorted(p for p in paths if not any(p.startswith(q) for q in kept))
    return [{"prefix": p} for p in kept] + [{"path": p} for p in exact]


def render(
    *,
    edge_host: str,
    edge_port: int,
    admin_port: int,
    protoset: Path,
    upstreams: list[Upstream],
    log_all_requests: bool = False,
) -> str:
    """The edge's Envoy bootstrap as YAML. An upstream without endpoints (run with 0 replicas)
    is still routed and answers UNAVAILABLE. By default the access log keeps only failed or
    slow requests (a line per call would cost the benchmark CPU); `log_all_requests` logs all."""
    contract = read_contract(protoset)
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise ValueError(f"upstream names must be unique: {names}")
    config = {
        "node": {"id": "elearn-edge", "cluster": "elearn-edge"},
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [
                _listener(edge_host, edge_port, protoset, contract, upstreams, log_all_requests)
            ],
            "clusters": [_cluster(u) for u in upstreams],
        },
        "overload_manager": {
            "resource_monitors": [
                _extension(
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


def _typed(proto: str, **fields: Any) -> dict[str, Any]:
    """An Any-typed config: `@type` from the proto's full name, then its fields."""
    return {"@type": f"type.googleapis.com/{proto}", **fields}


def _extension(name: str, proto: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "typed_config": _typed(proto, **fields)}


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _listener(
    host: str,
    port: int,
    protoset: Path,
    contract: Contract,
    upstreams: list[Upstream],
    log_all_requests: bool,
) -> dict[str, Any]:
    hcm = {
        "stat_prefix": "edge",
        # AUTO: HTTP/1.1 (JSON, gRPC-Web) and prior-knowledge HTTP/2 (native gRPC) on one port.
        "codec_type": "AUTO",
        "use_remote_address": True,
        "generate_request_id": True,
        # A client's own x-request-id (allowed by CORS) is kept so it can trace its call.
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        "normalize_path": True,
        "merge_slashes": True,
        "max_request_headers_kb": MAX_REQUEST_HEADERS_KB,
        # No whole-request timeout: streams live for hours; unary calls get route timeouts.
        "request_timeout": "0s",
        "request_headers_timeout": REQUEST_HEADERS_TIMEOUT,
        "stream_idle_timeout": DEFAULT_STREAM_IDLE_TIMEOUT,
        "common_http_protocol_options": {
            "idle_timeout": CONNECTION_IDLE_TIMEOUT,
            "max_headers_count": MAX_HEADERS_COUNT,
            # Underscored names can smuggle past header-based policies; refuse them outright.
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": DOWNSTREAM_MAX_CONCURRENT_STREAMS,
            "initial_stream_window_size": DOWNSTREAM_STREAM_WINDOW,
            "initial_connection_window_size": DOWNSTREAM_CONNECTION_WINDOW,
        },
        "access_log": [_access_log(log_all_requests)],
        "local_reply_config": _json_local_replies(),
        "route_config": _route_config(contract, upstreams),
        "http_filters": _http_filters(protoset, contract, upstreams),
    }
    manager = _extension(
        "envoy.filters.network.http_connection_manager",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        **hcm,
    )
    return {
        "name": "edge",
        "address": _address(host, port),
        "filter_chains": [{"filters": [manager]}],
    }


def _http_filters(
    protoset: Path, contract: Contract, upstreams: list[Upstream]
) -> list[dict[str, Any]]:
    # Order matters: CORS answers preflights before anything else; gRPC-Web becomes plain gRPC
    # before the transcoder, which passes gRPC through and turns JSON into gRPC for the router.
    filters = [
        _extension("envoy.filters.http.cors", "envoy.extensions.filters.http.cors.v3.Cors"),
        _extension(
            "envoy.filters.http.grpc_web", "envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"
        ),
        # A JSON body larger than this is refused with 413 (at once when Content-Length says
        # so) before anything is forwarded. Disabled on every gRPC route: a stream's body is the
        # sum of its messages over hours, and gRPC servers cap each message anyway.
        _extension(
            BODY_LIMIT,
            "envoy.extensions.filters.http.body_size_limit.v3.BodySizeLimit",
            max_request_bytes=MAX_JSON_REQUEST_BYTES,
        ),
    ]
    transcoded = sorted(u.grpc_service for u in upstreams if u.grpc_service in contract.services)
    if transcoded:
        filters.append(_transcoder(protoset, transcoded))
    router = "envoy.extensions.filters.http.router.v3.Router"
    filters.append(_extension("envoy.filters.http.router", router, suppress_envoy_headers=True))
    return filters


def _transcoder(protoset: Path, services: list[str]) -> dict[str, Any]:
    return _extension(
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor_bin=base64.b64encode(transcoder_descriptor(protoset)).decode(),
        services=services,
        print_options={
            "add_whitespace": False,
            # Zero values and empty lists appear, so a client sees a stable shape per message.
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": False,
            # Server streams as one JSON object per line: readable chunk by chunk with fetch().
            "stream_newline_delimited": True,
        },
        convert_grpc_status=True,
        # Browsers' URLSearchParams encode spaces as '+' (search queries).
        query_param_unescape_plus=True,
        case_insensitive_enum_parsing=True,
        # Bad REST input is the caller's error (404/400) and never reaches a service.
        request_validation_options={
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
            "reject_binding_body_field_collisions": True,
        },
        # What the transcoder itself may buffer while converting (the body filter above caps
        # the request as a whole); a unary JSON response is buffered whole.
        max_request_body_size=MAX_JSON_REQUEST_BYTES,
        max_response_body_size=MAX_JSON_RESPONSE_BYTES,
    )


def _route_config(contract: Contract, upstreams: list[Upstream]) -> dict[str, Any]:
    routes: list[dict[str, Any]] = []
    for upstream in upstreams:
        # Exact streaming paths first: they must win over their service's prefix route.
        prefix = f"/{upstream.grpc_service}/"
        routes += [
            _grpc_route({"path": p}, upstream.name, streaming=True)
            for p in contract.streaming_paths
            if p.startswith(prefix)
        ]
        routes.append(_grpc_route({"prefix": prefix}, upstream.name, streaming=False))
    if META_UPSTREAM in {u.name for u in upstreams}:
        routes.append(
            _grpc_route({"path": f"/{HEALTH_SERVICE}/Watch"}, META_UPSTREAM, streaming=True)
        )
        routes.append(
            _grpc_route({"prefix": f"/{HEALTH_SERVICE}/"}, META_UPSTREAM, streaming=False)
        )
        routes += [
            _grpc_route({"prefix": f"/{s}/"}, META_UPSTREAM, streaming=True)
            for s in REFLECTION_SERVICES
        ]
    # REST routes, matched on the original path before the transcoder rewrites a JSON call to
    # its gRPC path (and re-routes it by the gRPC routes above). The CORS filter needs a route
    # entry here to answer preflights and decorate responses (a direct response does not
    # count); the JSON body limit applies only on these. A non-gRPC request that is no binding
    # is refused by the transcoder (404/400) before it could be forwarded.
    for upstream in upstreams:
        for match in rest_matchers(contract.rest_templates.get(upstream.grpc_service, ())):
            routes.append({"match": match, "route": _unary_action(upstream.name)})
    return {
        "name": "edge",
        "virtual_hosts": [
            {
                "name": "edge",
                "domains": ["*"],
                "routes": routes,
                "typed_per_filter_config": {
                    "envoy.filters.http.cors": _typed(
                        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
                        allow_origin_string_match=[{"safe_regex": {"regex": LOCAL_ORIGIN_REGEX}}],
                        allow_methods=CORS_ALLOW_METHODS,
                        allow_headers=CORS_ALLOW_HEADERS,
                        expose_headers=CORS_EXPOSE_HEADERS,
                        max_age=CORS_MAX_AGE,
                    )
                },
                # Only failures where the request provably never reached a service are retried,
                # on another replica: safe for every method, idempotent or not.
                "retry_policy": {
                    "retry_on": "connect-failure,refused-stream,reset-before-request",
                    "num_retries": 2,
                    "retry_host_predicate": [
                        _extension(
                            "envoy.retry_host_predicates.previous_hosts",
                            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                        )
                    ],
                    "host_selection_retry_max_attempts": 3,
                },
            }
        ],
    }


def _grpc_route(match: dict[str, str], cluster: str, *, streaming: bool) -> dict[str, Any]:
    if streaming:
        # No route timeout; a deadline the client sets still applies (grpc-timeout, uncapped).
        action = {
            "cluster": cluster,
            "timeout": "0s",
            "idle_timeout": STREAM_IDLE_TIMEOUT,
            "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        }
    else:
        action = _unary_action(cluster)
    no_body_limit = _typed("envoy.config.route.v3.FilterConfig", disabled=True)
    return {
        "match": match,
        "route": action,
        "typed_per_filter_config": {BODY_LIMIT: no_body_limit},
    }


def _unary_action(cluster: str) -> dict[str, Any]:
    # grpc-timeout may shorten the route timeout, never lengthen it.
    return {
        "cluster": cluster,
        "timeout": UNARY_TIMEOUT,
        "max_stream_duration": {"grpc_timeout_header_max": UNARY_TIMEOUT},
    }


def _json_local_replies() -> dict[str, Any]:
    """Errors Envoy itself answers (unknown path, bad query or JSON, body too large, no
    upstream) reach JSON callers in the shape of the services' errors: {"code", "message"}.
    gRPC and gRPC-Web callers keep grpc-status and grpc-message."""
    json_caller = {
        "or_filter": {
            "filters": [
                {"header_filter": {"header": h}}
                for h in (
                    {"name": "x-envoy-original-path", "present_match": True},  # transcoded
                    {"name": "content-type", "present_match": False},
                    {
                        "name": "content-type",
                        "string_match": {"prefix": "application/grpc"},
                        "invert_match": True,
                    },
                )
            ]
        }
    }
    mappers = [
        {
            "filter": {"and_filter": {"filters": [json_caller, _status_is(http_status)]}},
            "body_format_override": _status_body(code),
        }
        for http_status, code in LOCAL_REPLY_CODES.items()
    ]
    mappers.append({"filter": json_caller, "body_format_override": _status_body(UNKNOWN)})
    return {"mappers": mappers}


def _status_is(http_status: int) -> dict[str, Any]:
    value = {"default_value": http_status, "runtime_key": f"edge.local_reply.{http_status}"}
    return {"status_code_filter": {"comparison": {"op": "EQ", "value": value}}}


def _status_body(code: int) -> dict[str, Any]:
    return {
        "json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%"},
        "content_type": "application/json",
    }


def _access_log(log_all_requests: bool) -> dict[str, Any]:
    fields = {
        "time": "%START_TIME%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "grpc_path": "%REQ(:PATH)%",
        "protocol": "%PROTOCOL%",
        "status": "%RESPONSE_CODE%",
        "grpc_status": "%GRPC_STATUS%",
        "flags": "%RESPONSE_FLAGS%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "duration_ms": "%DURATION%",
        "upstream": "%UPSTREAM_HOST%",
        "bytes_in": "%BYTES_RECEIVED%",
        "bytes_out": "%BYTES_SENT%",
        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    }
    log = _extension(
        "envoy.access_loggers.stdout",
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        log_format={"json_format": fields},
    )
    if not log_all_requests:
        log["filter"] = {
            "or_filter": {
                "filters": [
                    {"status_code_filter": {"comparison": _at_least(400, "edge.log.min_status")}},
                    {"grpc_status_filter": {"statuses": ["OK"], "exclude": True}},
                    {"duration_filter": {"comparison": _at_least(1000, "edge.log.min_ms")}},
                ]
            }
        }
    return log


def _at_least(value: int, runtime_key: str) -> dict[str, Any]:
    return {"op": "GE", "value": {"default_value": value, "runtime_key": runtime_key}}


def _cluster(upstream: Upstream) -> dict[str, Any]:
    static = all(_is_ip(host) for host, _ in upstream.endpoints)
    replicas = [{"endpoint": {"address": _address(h, p)}} for h, p in upstream.endpoints]
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
            UPSTREAM_HTTP: _typed(
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
