"""`python -m bench --ghz-prepare`: the accounts and tokens the ghz configs in bench/ghz/ read.

ghz cannot register users or carry a token from one call into the next, so login.json and
whoami.json read files this writes under bench/results/ghz/ (git-ignored, owner-only: they
hold passwords and a bearer token): `login-data.json`, an array of credentials ghz round-robins
over, and `whoami-metadata.json`, one access token (valid for an hour).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import grpc

from bench.report import RESULTS_DIR
from bench.scenarios.accounts import AccountPool
from bench.worker import READY_TIMEOUT_S

GHZ_DIR = RESULTS_DIR / "ghz"


def prepare(address: str, run_id: str, users: int, out: Path = GHZ_DIR) -> list[Path]:
    pool = AccountPool(run_id, max_users=users)
    access_token = asyncio.run(_sign_in(address, pool, users))
    out.mkdir(parents=True, exist_ok=True)
    credentials = [{"email": a.email, "password": a.password} for a in pool.accounts]
    login = _write_private(out / "login-data.json", credentials)
    metadata = _write_private(
        out / "whoami-metadata.json", {"authorization": f"Bearer {access_token}"}
    )
    return [login, metadata]


async def _sign_in(address: str, pool: AccountPool, users: int) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_S)
        sessions = await pool.ensure_sessions(channel, users)
    return sessions[0].access_token


def _write_private(path: Path, body: Any) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(body, indent=1) + "\n")
    return path
