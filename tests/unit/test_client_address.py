"""Which client address the login throttle keys on: the edge's X-Forwarded-For hop only from a
trusted proxy, the gRPC peer otherwise, IPv6 by /64."""

from __future__ import annotations

import pytest

from svc_user.client_address import ClientAddresses

LOOPBACK = ClientAddresses(["127.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Through the edge: the last hop is the one Envoy appended; earlier ones are the
        # client's own words.
        ("ipv4:127.0.0.1:51000", ["203.0.113.9, 198.51.100.7"], "198.51.100.7"),
        ("ipv6:[::1]:51000", ["198.51.100.7"], "198.51.100.7"),
        ("ipv6:%5B::1%5D:51000", ["198.51.100.7"], "198.51.100.7"),
        # A trusted proxy that sent no header, or garbage: the proxy itself.
        ("ipv4:127.0.0.1:51000", [], "127.0.0.1"),
        ("ipv4:127.0.0.1:51000", ["not an address"], "127.0.0.1"),
        # Direct callers cannot pick their address with a header.
        ("ipv4:192.0.2.10:40000", ["198.51.100.7"], "192.0.2.10"),
        ("ipv6:[2001:db8::5]:40000", ["198.51.100.7"], "2001:db8::/64"),
        # One IPv6 host holds a whole /64, so it is one address for the throttle.
        ("ipv4:127.0.0.1:1", ["2001:db8:1:2:aaaa::1"], "2001:db8:1:2::/64"),
        ("unix:/tmp/user.sock", ["198.51.100.7"], "unix:/tmp/user.sock"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert LOOPBACK.resolve(peer, forwarded) == expected


def test_nothing_is_trusted_when_no_proxy_is_configured() -> None:
    assert ClientAddresses([]).resolve("ipv4:127.0.0.1:1", ["198.51.100.7"]) == "127.0.0.1"


def test_a_bad_trusted_proxy_setting_fails_at_start_up() -> None:
    with pytest.raises(SystemExit, match="not-a-network"):
        ClientAddresses(["not-a-network"])
