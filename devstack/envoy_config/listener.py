"""The edge's one listener: the HTTP connection manager and its filter chain."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from devstack.envoy_config.common import BODY_LIMIT, LOCAL_RATE_LIMIT, address, extension
from devstack.envoy_config.contract import Contract, Upstream, transcoder_descriptor
from devstack.envoy_config.limits import (
    CONNECTION_IDLE_TIMEOUT,
    DEFAULT_STREAM_IDLE_TIMEOUT,
    DOWNSTREAM_CONNECTION_WINDOW,
    DOWNSTREAM_MAX_CONCURRENT_STREAMS,
    DOWNSTREAM_STREAM_WINDOW,
    MAX_HEADERS_COUNT,
    MAX_JSON_REQUEST_BYTES,
    MAX_JSON_RESPONSE_BYTES,
    MAX_REQUEST_HEADERS_KB,
    REQUEST_HEADERS_TIMEOUT,
)
from devstack.envoy_config.replies import access_log, json_local_replies
from devstack.envoy_config.routes import AuthRateLimit, route_config


def listener(
    host: str,
    port: int,
    protoset: Path,
    contract: Contract,
    upstreams: list[Upstream],
    log_all_requests: bool,
    auth_limit: AuthRateLimit,
) -> dict[str, Any]:
    hcm = {
        "stat_prefix": "edge",
        # AUTO: HTTP/1.1 (JSON, gRPC-Web) and prior-knowledge HTTP/2 (native gRPC) on one port.
        "codec_type": "AUTO",
        # The peer is the client (no proxy in front of the edge): it is the address Envoy
        # writes into x-forwarded-for / x-envoy-external-address (see routes.py).
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
        "access_log": [access_log(log_all_requests)],
        "local_reply_config": json_local_replies(),
        "route_config": route_config(contract, upstreams, auth_limit),
        "http_filters": _http_filters(protoset, contract, upstreams),
    }
    manager = extension(
        "envoy.filters.network.http_connection_manager",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        **hcm,
    )
    return {
        "name": "edge",
        "address": address(host, port),
        "filter_chains": [{"filters": [manager]}],
    }


def _http_filters(
    protoset: Path, contract: Contract, upstreams: list[Upstream]
) -> list[dict[str, Any]]:
    # Order matters: CORS answers preflights before anything else; gRPC-Web becomes plain gRPC
    # before the transcoder, which passes gRPC through and turns JSON into gRPC for the router.
    filters = [
        extension("envoy.filters.http.cors", "envoy.extensions.filters.http.cors.v3.Cors"),
        extension(
            "envoy.filters.http.grpc_web", "envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"
        ),
        # A JSON body larger than this is refused with 413 (at once when Content-Length says
        # so) before anything is forwarded. Disabled on every gRPC route: a stream's body is the
        # sum of its messages over hours, and gRPC servers cap each message anyway.
        extension(
            BODY_LIMIT,
            "envoy.extensions.filters.http.body_size_limit.v3.BodySizeLimit",
            max_request_bytes=MAX_JSON_REQUEST_BYTES,
        ),
    ]
    transcoded = sorted(u.grpc_service for u in upstreams if u.grpc_service in contract.services)
    if transcoded:
        filters.append(_transcoder(protoset, transcoded))
    # After the transcoder, so a JSON call is limited on the gRPC path it was rewritten to, by
    # the same route (and bucket) as its gRPC and gRPC-Web twins. Without a bucket of its own
    # the filter passes everything; routes that carry one are limited (routes.py).
    filters.append(
        extension(
            LOCAL_RATE_LIMIT,
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="edge_rate_limit",
        )
    )
    router = "envoy.extensions.filters.http.router.v3.Router"
    filters.append(extension("envoy.filters.http.router", router, suppress_envoy_headers=True))
    return filters


def _transcoder(protoset: Path, services: list[str]) -> dict[str, Any]:
    return extension(
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
