"""Helpers for the launcher's own tests: a stand-in service command, a minimal edge config
(so these tests depend neither on the real services nor on the real edge config), and a check
that processes are really gone."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.envoy import UpstreamSpec
from devstack.processes import ManagedProcess, alive, group_members

FAKE_SERVICE = Path(__file__).with_name("fake_service.py")
TYPES = "type.googleapis.com/envoy.extensions"

ServiceCommand = Callable[[str], list[str]]


def _fake_command(
    exit_at_start: Iterable[str] = (), never_ready: Iterable[str] = ()
) -> ServiceCommand:
    failing, stuck = set(exit_at_start), set(never_ready)

    def command(name: str) -> list[str]:
        argv = [sys.executable, str(FAKE_SERVICE), name]
        if name in failing:
            argv.append("--exit-at-start")
        if name in stuck:
            argv.append("--never-ready")
        return argv

    return command


def _stub_edge_config(
    *,
    edge_host: str,
    edge_port: int,
    admin_port: int,
    protoset: Path,
    upstreams: Sequence[UpstreamSpec],
) -> str:
    """Plain gRPC proxying: every path goes to the first upstream, over HTTP/2."""

    def address(host: str, port: int) -> dict[str, Any]:
        return {"socket_address": {"address": host, "port_value": port}}

    clusters = [
        {
            "name": u.name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": u.name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": address(h, p)}} for h, p in u.endpoints
                        ]
                    }
                ],
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": f"{TYPES}.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
        }
        for u in upstreams
    ]
    manager = {
        "@type": f"{TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "edge",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": upstreams[0].name}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{TYPES}.filters.http.router.v3.Router"},
            }
        ],
    }
    config = {
        "admin": {"address": address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "edge",
                    "address": address(edge_host, edge_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }
    return yaml.safe_dump(config)


def _still_running(procs: Iterable[ManagedProcess]) -> list[str]:
    """Processes (or members of their groups) that are still alive, as readable strings."""
    found = []
    for proc in procs:
        if proc.pid is None:
            continue
        if alive(proc.pid, proc.create_time):
            found.append(f"{proc.key} (pid {proc.pid})")
        found += [f"{proc.key} group member {p.pid}" for p in group_members(proc.pid)]
    return found


@pytest.fixture(scope="session")
def fake_command() -> Callable[..., ServiceCommand]:
    """fake_command(exit_at_start=("quiz",), never_ready=()) -> a StackConfig.service_command."""
    return _fake_command


@pytest.fixture(scope="session")
def stub_edge_config() -> Callable[..., str]:
    return _stub_edge_config


@pytest.fixture(scope="session")
def still_running() -> Callable[[Iterable[ManagedProcess]], list[str]]:
    return _still_running


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[ManagedProcess]:
    """Every ManagedProcess started during the test, including ones a failed start stopped."""
    started: list[ManagedProcess] = []
    original = ManagedProcess.start

    def spy(self: ManagedProcess) -> None:
        original(self)
        started.append(self)

    monkeypatch.setattr(ManagedProcess, "start", spy)
    return started
