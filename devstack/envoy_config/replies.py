"""Errors Envoy answers itself, shaped like a service's for JSON callers; and the access log."""

from __future__ import annotations

from typing import Any

from google.rpc import code_pb2

from devstack.envoy_config.common import extension

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
# What a caller refused by the sign-in rate limit reads (the only 429 Envoy answers itself).
RATE_LIMITED_MESSAGE = "too many sign-in requests at this edge; retry in a second"


def json_local_replies() -> dict[str, Any]:
    """Errors Envoy itself answers (unknown path, bad query or JSON, body too large, no
    upstream) reach JSON callers in the shape of the services' errors: {"code", "message"}.
    gRPC and gRPC-Web callers keep grpc-status and grpc-message."""
    grpc_caller = {
        "and_filter": {
            "filters": [
                {"header_filter": {"header": h}}
                for h in (
                    {"name": "x-envoy-original-path", "present_match": False},
                    {"name": "content-type", "string_match": {"prefix": "application/grpc"}},
                )
            ]
        }
    }
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
    # The rate limiter's 429 reaches a gRPC-Web caller as HTTP 429 with a text body, which
    # the grpc_web filter turns into UNAVAILABLE (Envoy's mapping of 429, and a status clients
    # retry at once). A trailers-only gRPC answer says RESOURCE_EXHAUSTED to gRPC-Web and native
    # gRPC callers alike.
    mappers: list[dict[str, Any]] = [
        {
            "filter": {"and_filter": {"filters": [grpc_caller, _status_is(429)]}},
            "status_code": 200,
            "body": {"inline_string": ""},
            "headers_to_add": [
                {
                    "header": {"key": "grpc-status", "value": str(code_pb2.RESOURCE_EXHAUSTED)},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                },
                {
                    "header": {"key": "grpc-message", "value": RATE_LIMITED_MESSAGE},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                },
            ],
        },
        {
            "filter": {"and_filter": {"filters": [json_caller, _status_is(429)]}},
            "body": {"inline_string": RATE_LIMITED_MESSAGE},
            "body_format_override": _status_body(code_pb2.RESOURCE_EXHAUSTED),
        },
    ]
    mappers += [
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


def access_log(log_all_requests: bool) -> dict[str, Any]:
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
    log = extension(
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
