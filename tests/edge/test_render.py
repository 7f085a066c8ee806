"""devstack.envoy_config.render as data: routes, clusters, limits, without starting Envoy
(except one `envoy --mode validate` of the config the real protoset produces)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from devstack import envoy_config
from devstack.envoy_config import Upstream, render
from tests.edge.harness import OTHER_SERVICES, PROTOSET, USER_SERVICE

LIVE = "elearn.live.v1.LiveService"
ALL_SERVICES = {"user": USER_SERVICE, **OTHER_SERVICES}


def upstreams(replicas: int = 1, host: str = "127.0.0.1") -> list[Upstream]:
    return [
        Upstream(name, svc, [(host, 50_000 + 10 * i + r) for r in range(replicas)])
        for i, (name, svc) in enumerate(ALL_SERVICES.items())
    ]


def rendered(
    protoset: Path = PROTOSET, ups: list[Upstream] | None = None, **kw: Any
) -> dict[str, Any]:
    text = render(
        edge_host="127.0.0.1",
        edge_port=8080,
        admin_port=9901,
        protoset=protoset,
        upstreams=upstreams() if ups is None else ups,
        **kw,
    )
    config: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return config


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    [listener] = config["static_resources"]["listeners"]
    [chain] = listener["filter_chains"]
    [manager] = chain["filters"]
    typed: dict[str, Any] = manager["typed_config"]
    return typed


def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    [vhost] = hcm(config)["route_config"]["virtual_hosts"]
    found: list[dict[str, Any]] = vhost["routes"]
    return found


def route_for(config: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The first route whose path or prefix matches, as Envoy picks it (method-agnostic)."""
    for route in routes(config):
        match = route["match"]
        if match.get("path") == path or ("prefix" in match and path.startswith(match["prefix"])):
            return route
    return None


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [f for f in hcm(config)["http_filters"] if f["name"] == name]
    return found


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


def test_retries_go_to_another_replica_and_only_for_requests_no_service_saw() -> None:
    [vhost] = hcm(rendered())["route_config"]["virtual_hosts"]
    policy = vhost["retry_policy"]
    # Nothing that may have reached a service (reset, unavailable, 5xx) is retried.
    assert set(policy["retry_on"].split(",")) == {
        "connect-failure",
        "refused-stream",
        "reset-before-request",
    }
    assert [p["name"] for p in policy["retry_host_predicate"]] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]
    # With least request a re-draw lands on the dead replica half the time: one re-draw per
    # retry (or three) let a retry hit it again often enough to fail a call now and then.
    assert policy["host_selection_retry_max_attempts"] >= 5
    assert policy["num_retries"] >= 3


def test_sign_in_methods_carry_a_token_bucket_and_nothing_else_does() -> None:
    config = rendered(auth_rate_limit=envoy_config.AuthRateLimit(per_second=7, burst=9))
    limited = {
        r["match"].get("path"): r["typed_per_filter_config"][envoy_config.LOCAL_RATE_LIMIT]
        for r in routes(config)
        if envoy_config.LOCAL_RATE_LIMIT in r.get("typed_per_filter_config", {})
    }
    assert set(limited) == {f"/{USER_SERVICE}/{m}" for m in ("Login", "Register", "Refresh")}
    for bucket in limited.values():
        assert bucket["token_bucket"] == {
            "max_tokens": 9,
            "tokens_per_fill": 7,
            "fill_interval": "1s",
        }
        assert bucket["rate_limited_as_resource_exhausted"] is True
    # The listener's filter has no bucket of its own (it limits only routes with one), and
    # sits after the transcoder so JSON calls are limited on their gRPC path.
    names = [f["name"] for f in hcm(config)["http_filters"]]
    assert "token_bucket" not in http_filter(config, envoy_config.LOCAL_RATE_LIMIT)["typed_config"]
    transcoder = names.index("envoy.filters.http.grpc_json_transcoder")
    assert (
        transcoder
        < names.index(envoy_config.LOCAL_RATE_LIMIT)
        < names.index("envoy.filters.http.router")
    )
    default = rendered()
    route = route_for(default, f"/{USER_SERVICE}/Login")
    assert route is not None
    bucket = route["typed_per_filter_config"][envoy_config.LOCAL_RATE_LIMIT]["token_bucket"]
    assert bucket["tokens_per_fill"] >= 200, "the login benchmark (~75/s) must never be limited"


def test_a_non_positive_rate_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        envoy_config.AuthRateLimit(per_second=0, burst=5)


def test_client_address_headers_are_overwritten_with_the_peer_envoy_saw() -> None:
    route_config = hcm(rendered())["route_config"]
    added = {h["header"]["key"]: h for h in route_config["request_headers_to_add"]}
    for name in ("x-envoy-external-address", "x-forwarded-for"):
        assert added[name]["header"]["value"] == "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
        assert added[name]["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
    assert hcm(rendered())["use_remote_address"] is True


def test_each_request_is_stamped_with_its_arrival_and_a_clients_stamp_is_overwritten() -> None:
    route_config = hcm(rendered())["route_config"]
    added = {h["header"]["key"]: h for h in route_config["request_headers_to_add"]}
    assert added["x-request-start"]["header"]["value"] == "t=%START_TIME(%s.%6f)%"
    assert added["x-request-start"]["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
