"""SeaweedFS in the launcher: started with the stack, S3 signed with the stack's own key pair,
unsigned or wrongly signed requests refused, and nothing left running after stop."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import botocore.exceptions
import httpx
import pytest

from devstack import seaweedfs
from devstack.processes import alive
from devstack.stack import Stack, StackConfig
from mesh.platform import NAMES


def test_seaweedfs_starts_refuses_unsigned_and_stops_clean(tmp_path: Path) -> None:
    config = StackConfig.for_tests(
        tmp_path,
        replicas=dict.fromkeys(NAMES, 0),
        migrate_command=None,
        with_envoy=False,
    )
    stack = Stack(config)
    endpoints = stack.start(timeout=90)
    try:
        proc = stack.process("seaweedfs")
        assert proc.pid is not None and proc.create_time is not None
        started = (proc.pid, proc.create_time)
        assert endpoints.s3_url.endswith(f":{config.ports.media.s3}")
        env = seaweedfs.S3Env(
            endpoints.s3_url, endpoints.s3_access_key, endpoints.s3_secret_key, endpoints.s3_bucket
        )
        s3 = seaweedfs.client(env)
        s3.put_object(Bucket=env.bucket, Key="probe/hello.txt", Body=b"hello")
        assert s3.get_object(Bucket=env.bucket, Key="probe/hello.txt")["Body"].read() == b"hello"

        unsigned = httpx.get(f"{endpoints.s3_url}/{env.bucket}/probe/hello.txt")
        assert unsigned.status_code == 403
        wrong = seaweedfs.client(dataclasses.replace(env, secret_key="not-the-secret"))
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            wrong.get_object(Bucket=env.bucket, Key="probe/hello.txt")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # The key pair is the stack's own, kept owner-only.
        identities = config.data_dir / "config" / "s3-identities.json"
        assert identities.stat().st_mode & 0o077 == 0
    finally:
        began = time.monotonic()
        stack.stop()
        stopped_in = time.monotonic() - began
    assert not alive(*started)
    # weed would linger 10 s after SIGTERM without -volume.preStopSeconds=0.
    assert stopped_in < 8.0
