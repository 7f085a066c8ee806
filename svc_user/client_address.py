"""Which client a call comes from, for the sign-in throttle.

Behind the edge every call's peer is Envoy, so the client is the hop Envoy appended to
X-Forwarded-For (`use_remote_address: true`): the LAST one, since earlier hops are whatever the
client sent. That header is believed only when the peer is a trusted proxy; any other caller
(a direct gRPC client) is keyed by its own peer address, so nobody picks an address by sending
a header. Envoy's x-envoy-external-address is not used: Envoy leaves it out for clients on
internal networks (loopback included), and keeps a client's own copy for them.

An IPv6 client is keyed by its /64: one host usually holds the whole prefix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

from grpc.aio import ServicerContext

HEADER = "x-forwarded-for"


def _peer_host(peer: str) -> str | None:
    """The IP in a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5", "ipv6:%5B::1%5D:5")."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return unquote(rest).rpartition(":")[0].strip("[]")
    return None


def _key(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ClientAddresses:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        try:
            self._trusted = [ipaddress.ip_network(n.strip()) for n in trusted_proxies if n.strip()]
        except ValueError as exc:
            raise SystemExit(f"user: USER_TRUSTED_PROXIES: {exc}") from None

    def of(self, context: ServicerContext) -> str:
        metadata = context.invocation_metadata() or ()
        forwarded = [v for k, v in metadata if k == HEADER and isinstance(v, str)]
        return self.resolve(context.peer(), forwarded)

    def resolve(self, peer: str, forwarded: Sequence[str]) -> str:
        host = _peer_host(peer)
        try:
            peer_ip = ipaddress.ip_address(host) if host else None
        except ValueError:
            peer_ip = None
        if peer_ip is None:
            return peer
        if forwarded and any(peer_ip in net for net in self._trusted):
            last_hop = forwarded[-1].rpartition(",")[2].strip()
            try:
                return _key(ipaddress.ip_address(last_hop))
            except ValueError:
                pass
        return _key(peer_ip)
