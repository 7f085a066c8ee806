"""The shared bootstrap refuses to run in states that would look healthy but are not."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mesh.auth import PUBLIC, SIGNED_IN, Policy, Rule
from mesh.config import MeshSettings
from mesh.server import ServiceSpec, run


def settings() -> MeshSettings:
    return MeshSettings(
        grpc_port=0,
        metrics_port=0,
        jwt_public_key_file="",
        nats_url="",
        shutdown_grace_seconds=0.1,
        access_log="off",
    )


def spec(rule: Rule, *background: object) -> ServiceSpec:
    return ServiceSpec(
        name="probe",
        services=[],
        register=lambda server: None,
        policy=Policy({"/test.v1.Probe/Call": rule}),
        background=list(background),  # type: ignore[arg-type]
    )


async def test_no_public_key_while_a_rule_needs_tokens_refuses_to_start() -> None:
    with pytest.raises(SystemExit) as stopped:
        async with asyncio.timeout(10):
            await run(settings(), spec(SIGNED_IN))
    message = str(stopped.value.code)
    assert "ELEARN_JWT_PUBLIC_KEY_FILE" in message and "/test.v1.Probe/Call" in message


async def test_a_dying_background_task_is_logged_with_its_exception_and_exits_non_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def flusher() -> None:
        raise ValueError("disk on fire")

    with caplog.at_level(logging.ERROR, logger="mesh.server"), pytest.raises(SystemExit) as died:
        async with asyncio.timeout(10):
            await run(settings(), spec(PUBLIC, flusher))
    # A string code makes the interpreter exit with status 1.
    assert isinstance(died.value.code, str) and "flusher" in died.value.code
    logged = [r for r in caplog.records if "flusher" in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "disk on fire" in str(logged[0].exc_info[1])
