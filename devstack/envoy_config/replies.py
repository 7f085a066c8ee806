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


def json_local_replies() -> dict[str, Any]:
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
