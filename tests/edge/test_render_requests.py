"""What the edge does to the requests it forwards, as rendered: retries, the sign-in rate
limit, and the headers it sets over a client's own."""

from __future__ import annotations

import pytest

from devstack import envoy_config
from tests.edge.harness import USER_SERVICE
from tests.edge.rendering import hcm, http_filter, rendered, route_for, routes


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
