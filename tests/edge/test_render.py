"""devstack.envoy_config.render as data: routes, clusters, limits, without starting Envoy
(except one `envoy --mode validate` of the config the real protoset produces). What the edge
does to the requests it forwards is in test_render_requests.py."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from devstack import envoy_config
from devstack.envoy_config import Upstream, render
from tests.edge.harness import PROTOSET, USER_SERVICE
from tests.edge.rendering import (
    ALL_SERVICES,
    LIVE,
    hcm,
    http_filter,
    rendered,
    route_for,
    routes,
    upstreams,
)


def synthetic_live_protoset(tmp_path: Path) -> Path:
    """One service with a bidi, a client-streaming, a server-streaming and a unary method."""
    file = descriptor_pb2.FileDescriptorProto(
        name="elearn/live/v1/live_service.proto", package="elearn.live.v1", syntax="proto3"
    )
    file.message_type.add(name="Msg").field.add(
        name="session_id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )  # fmt: skip
    service = file.service.add(name="LiveService")
    shapes = {
        "Join": (True, True),
        "Upload": (True, False),
        "Subscribe": (False, True),
        "Get": (False, False),
    }
    for name, (client, server) in shapes.items():
        method = service.method.add(
            name=name, input_type=".elearn.live.v1.Msg", output_type=".elearn.live.v1.Msg",
            client_streaming=client, server_streaming=server,
        )  # fmt: skip
        if name in ("Subscribe", "Get"):
            suffix = "/events" if name == "Subscribe" else ""
            rule = http_pb2.HttpRule(get=f"/api/live/sessions/{{session_id}}{suffix}")
            method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    path = tmp_path / "live.protoset"
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString())
    return path


def test_every_streaming_shape_gets_an_exact_route_without_timeout(tmp_path: Path) -> None:
    config = rendered(synthetic_live_protoset(tmp_path))
    order = [r["match"].get("path") or r["match"].get("prefix") for r in routes(config)]
    for method in ("Join", "Upload", "Subscribe"):
        path = f"/{LIVE}/{method}"
        route = route_for(config, path)
        assert route is not None and route["match"] == {"path": path}
        assert route["route"]["timeout"] == "0s"
        assert route["route"]["idle_timeout"] == "600s"
        assert route["route"]["max_stream_duration"] == {"grpc_timeout_header_max": "0s"}
        assert order.index(path) < order.index(f"/{LIVE}/")
    unary = route_for(config, f"/{LIVE}/Get")
    assert unary is not None and unary["match"] == {"prefix": f"/{LIVE}/"}
    assert unary["route"]["timeout"] == "15s"
    assert unary["route"]["max_stream_duration"] == {"grpc_timeout_header_max": "15s"}
    assert "idle_timeout" not in unary["route"]


def test_live_join_from_the_real_protoset_outlives_heartbeats() -> None:
    config = rendered()
    join = route_for(config, f"/{LIVE}/Join")
    assert join is not None and join["match"] == {"path": f"/{LIVE}/Join"}
    assert (
        join["route"] | {"cluster": "live", "timeout": "0s", "idle_timeout": "600s"}
        == join["route"]
    )
    # The listener-wide idle timeout is for unary calls; streaming routes override it upwards.
    assert hcm(config)["stream_idle_timeout"] == "60s"
    assert hcm(config)["request_timeout"] == "0s"


def test_every_streaming_method_in_the_protoset_has_a_stream_route() -> None:
    config = rendered()
    fds = descriptor_pb2.FileDescriptorSet.FromString(PROTOSET.read_bytes())
    streaming = [
        f"/{f.package}.{s.name}/{m.name}"
        for f in fds.file
        for s in f.service
        for m in s.method
        if m.client_streaming or m.server_streaming
    ]
    assert streaming
    for path in streaming:
        route = route_for(config, path)
        assert route is not None and route["match"] == {"path": path}
        assert route["route"]["timeout"] == "0s"


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/index.html", "/api", "/elearn.nope.v1.X/Y", "/media/x"]
)
def test_no_route_catches_unknown_paths(path: str) -> None:
    assert route_for(rendered(), path) is None


def test_reflection_and_health_are_answered_by_the_user_service() -> None:
    config = rendered()
    for path in (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.health.v1.Health/Watch",
    ):
        route = route_for(config, path)
        assert route is not None
        assert route["route"] | {"cluster": "user", "timeout": "0s"} == route["route"]
    check = route_for(config, "/grpc.health.v1.Health/Check")
    assert check is not None and check["route"]["cluster"] == "user"
    assert check["route"]["timeout"] == "15s"


def test_rest_paths_route_to_their_service_with_the_body_limit_on() -> None:
    config = rendered()
    login = route_for(config, "/api/auth/login")
    assert login is not None and login["route"]["cluster"] == "user"
    assert envoy_config.BODY_LIMIT not in login.get("typed_per_filter_config", {})
    grpc_route = route_for(config, f"/{USER_SERVICE}/Login")
    assert grpc_route is not None
    assert grpc_route["typed_per_filter_config"][envoy_config.BODY_LIMIT]["disabled"] is True
    limit = http_filter(config, envoy_config.BODY_LIMIT)["typed_config"]
    assert limit["max_request_bytes"] == 1 << 20


def test_rest_matchers_cover_templates_with_few_routes() -> None:
    matchers = envoy_config.rest_matchers(
        ["/api/users/{user_id}", "/api/users/{user_id}/roles", "/api/users", "/api/users/me",
         "/v1/{name=shelves/*}:publish", "/api/auth/login"]
    )  # fmt: skip
    assert matchers == [
        {"prefix": "/api/users/"},
        {"prefix": "/v1/"},
        {"path": "/api/auth/login"},
        {"path": "/api/users"},
    ]


def test_rest_template_without_a_literal_head_is_refused() -> None:
    with pytest.raises(ValueError, match="literal segment"):
        envoy_config.rest_matchers(["/{name=shelves/*}"])


def test_each_replica_is_a_health_checked_http2_endpoint() -> None:
    config = rendered(ups=upstreams(replicas=3))
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert set(clusters) == set(ALL_SERVICES)
    for name, service in ALL_SERVICES.items():
        cluster = clusters[name]
        assert cluster["type"] == "STATIC"
        assert cluster["lb_policy"] == "LEAST_REQUEST"
        [locality] = cluster["load_assignment"]["endpoints"]
        assert len(locality["lb_endpoints"]) == 3
        [check] = cluster["health_checks"]
        assert check["grpc_health_check"] == {"service_name": service}
        assert check["interval"] == "1s" and check["no_traffic_interval"] == "1s"
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        http2 = options["explicit_http_config"]["http2_protocol_options"]
        assert http2["connection_keepalive"] == {"interval": "30s", "timeout": "10s"}
        assert cluster["outlier_detection"]["consecutive_local_origin_failure"] == 3
        assert cluster["circuit_breakers"]["thresholds"][0]["max_requests"] == 8192


def test_hostname_endpoints_are_resolved_by_dns() -> None:
    config = rendered(ups=upstreams(host="localhost"))
    for cluster in config["static_resources"]["clusters"]:
        assert cluster["type"] == "STRICT_DNS"
        assert cluster["dns_lookup_family"] == "V4_PREFERRED"


def test_admin_listens_on_loopback_only() -> None:
    assert rendered()["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://localhost", True),
        ("http://127.0.0.1:8080", True),
        ("https://localhost:3000", True),
        ("http://localhost.evil.example", False),
        ("http://evil.example", False),
        ("http://127.0.0.1.evil.example:80", False),
    ],
)
def test_cors_allows_only_local_origins(origin: str, allowed: bool) -> None:
    [vhost] = hcm(rendered())["route_config"]["virtual_hosts"]
    policy = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    [matcher] = policy["allow_origin_string_match"]
    assert bool(re.fullmatch(matcher["safe_regex"]["regex"], origin)) is allowed


def test_transcoder_gets_the_protoset_types_plus_the_error_model() -> None:
    config = rendered()
    transcoder = http_filter(config, "envoy.filters.http.grpc_json_transcoder")["typed_config"]
    assert transcoder["services"] == sorted(ALL_SERVICES.values())
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["request_validation_options"]["reject_unknown_method"] is True
    fds = descriptor_pb2.FileDescriptorSet.FromString(
        base64.b64decode(transcoder["proto_descriptor_bin"])
    )
    names = [f.name for f in fds.file]
    assert "google/rpc/error_details.proto" in names
    assert names.index("google/protobuf/duration.proto") < names.index(
        "google/rpc/error_details.proto"
    )
    assert not any(f.HasField("source_code_info") for f in fds.file)


def test_service_missing_from_the_protoset_is_routed_but_not_transcoded(tmp_path: Path) -> None:
    ups = [*upstreams(), Upstream("extra", "elearn.extra.v1.ExtraService", [("127.0.0.1", 1)])]
    config = rendered(ups=ups)
    route = route_for(config, "/elearn.extra.v1.ExtraService/Do")
    assert route is not None and route["route"]["cluster"] == "extra"
    transcoder = http_filter(config, "envoy.filters.http.grpc_json_transcoder")["typed_config"]
    assert "elearn.extra.v1.ExtraService" not in transcoder["services"]


def test_duplicate_upstream_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        rendered(ups=[Upstream("user", USER_SERVICE, [("127.0.0.1", 1)])] * 2)


def test_a_service_run_with_no_replicas_is_still_routed(tmp_path: Path) -> None:
    ups = [
        Upstream(u.name, u.grpc_service, [] if u.name == "live" else u.endpoints)
        for u in upstreams()
    ]
    config = rendered(ups=ups)
    [live] = [c for c in config["static_resources"]["clusters"] if c["name"] == "live"]
    assert live["load_assignment"]["endpoints"] == []
    assert route_for(config, f"/{LIVE}/Join") is not None
    _validate(config_path=tmp_path / "envoy.yaml", ups=ups)


def test_access_log_keeps_failures_only_unless_asked() -> None:
    [quiet] = hcm(rendered())["access_log"]
    assert "or_filter" in quiet["filter"]
    [everything] = hcm(rendered(log_all_requests=True))["access_log"]
    assert "filter" not in everything


def test_listener_limits() -> None:
    manager = hcm(rendered())
    assert manager["codec_type"] == "AUTO"
    assert manager["max_request_headers_kb"] == 32
    assert (
        manager["common_http_protocol_options"]["headers_with_underscores_action"]
        == "REJECT_REQUEST"
    )
    assert manager["http2_protocol_options"]["max_concurrent_streams"] == 2048
    assert manager["use_remote_address"] is True
    assert manager["generate_request_id"] is True


def test_rendered_config_passes_envoy_validation(tmp_path: Path) -> None:
    _validate(config_path=tmp_path / "envoy.yaml", ups=upstreams(replicas=2))


def _validate(*, config_path: Path, ups: list[Upstream]) -> None:
    config_path.write_text(
        render(
            edge_host="127.0.0.1", edge_port=8080, admin_port=9901, protoset=PROTOSET, upstreams=ups
        )
    )
    envoy = Path(sys.executable).with_name("envoy")
    argv = [str(envoy), "--mode", "validate", "-c", str(config_path), "--disable-hot-restart"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
