"""The mesh interceptor on a real in-process grpc.aio server: policy before tokens, the
concurrency limit, status codes counted for deadlines, and the error mapping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
import pytest

from svc_user.tokens import AccessTokens
from tests.grpc_assert import fails_with
from tests.mesh.inprocess import KEY, handled, path, probe_server, unary
from tests.mesh.polling import eventually


def _counted(name: str, code: str, before: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return handled(name, code) > before

    return check


GARBAGE = (("authorization", "Bearer not.a.token"),)


def bearer(user: str = "u1", roles: tuple[str, ...] = ("student",)) -> tuple[tuple[str, str]]:
    token = AccessTokens(KEY, 900).mint(user, list(roles), session_id="s1")
    return (("authorization", f"Bearer {token}"),)


async def test_public_method_ignores_a_garbage_or_malformed_authorization_header() -> None:
    async with probe_server() as (channel, _):
        public = unary(channel, "Public")
        assert await public(b"", metadata=GARBAGE) == b"anonymous"
        assert await public(b"", metadata=(("authorization", "Basic dXNlcjpwdw=="),)) == (
            b"anonymous"
        )


async def test_signed_in_method_refuses_garbage_and_missing_tokens() -> None:
    async with probe_server() as (channel, _):
        signed = unary(channel, "Signed")
        await fails_with(grpc.StatusCode.UNAUTHENTICATED, signed(b"", metadata=GARBAGE))
        await fails_with(grpc.StatusCode.UNAUTHENTICATED, signed(b""), match="needs an access")
        assert await signed(b"", metadata=bearer("u7")) == b"u7"


async def test_optional_method_is_anonymous_without_a_token_and_refuses_a_bad_one() -> None:
    async with probe_server() as (channel, _):
        optional = unary(channel, "Optional")
        assert await optional(b"") == b"anonymous"
        assert await optional(b"", metadata=bearer("u8")) == b"u8"
        await fails_with(grpc.StatusCode.UNAUTHENTICATED, optional(b"", metadata=GARBAGE))


async def test_policy_refuses_missing_roles_and_methods_without_a_rule() -> None:
    async with probe_server() as (channel, _):
        admin_only = unary(channel, "AdminOnly")
        await fails_with(
            grpc.StatusCode.PERMISSION_DENIED, admin_only(b"", metadata=bearer()), match="admin"
        )
        assert await admin_only(b"", metadata=bearer("boss", ("admin",))) == b"boss"
        await fails_with(
            grpc.StatusCode.UNAUTHENTICATED,
            unary(channel, "Unruled")(b"", metadata=bearer()),
            match="not open",
        )


async def test_a_limit_of_one_admits_one_call_and_refuses_the_second() -> None:
    async with probe_server(max_concurrent=1) as (channel, probe):
        assert await unary(channel, "Public")(b"") == b"anonymous"
        held = asyncio.ensure_future(unary(channel, "Hold")(b""))
        await asyncio.wait_for(probe.entered.wait(), 5)
        await fails_with(
            grpc.StatusCode.RESOURCE_EXHAUSTED, unary(channel, "Public")(b""), match="limit"
        )
        probe.release.set()
        assert await held == b"released"
        assert await unary(channel, "Public")(b"") == b"anonymous"


async def test_open_streams_do_not_use_up_the_limit_on_concurrent_calls() -> None:
    async with probe_server(max_concurrent=1) as (channel, _):
        feeds = [channel.unary_stream(path("Feed"))(b"") for _ in range(3)]
        try:
            for feed in feeds:  # three streams held open at once, each has said hello
                assert await feed.read() == b"open"
            assert await unary(channel, "Public")(b"") == b"anonymous"
        finally:
            for feed in feeds:
                feed.cancel()


async def test_deadline_expiry_is_counted_as_deadline_exceeded_not_cancelled() -> None:
    before = handled("Hold", "DEADLINE_EXCEEDED"), handled("Hold", "CANCELLED")
    async with probe_server() as (channel, _):
        hold = unary(channel, "Hold")
        await fails_with(grpc.StatusCode.DEADLINE_EXCEEDED, hold(b"", timeout=0.2))
        await eventually(_counted("Hold", "DEADLINE_EXCEEDED", before[0]), 5)
    assert handled("Hold", "DEADLINE_EXCEEDED") == before[0] + 1
    assert handled("Hold", "CANCELLED") == before[1]


async def test_a_client_that_goes_away_is_counted_as_cancelled() -> None:
    before = handled("Hold", "CANCELLED")
    async with probe_server() as (channel, probe):
        call = unary(channel, "Hold")(b"")
        await asyncio.wait_for(probe.entered.wait(), 5)
        call.cancel()
        await eventually(_counted("Hold", "CANCELLED", before), 5)
    assert handled("Hold", "CANCELLED") == before + 1


async def test_service_errors_keep_their_code_and_message() -> None:
    before = handled("NotFound", "NOT_FOUND")
    async with probe_server() as (channel, _):
        await fails_with(
            grpc.StatusCode.NOT_FOUND, unary(channel, "NotFound")(b""), match="no such thing"
        )
    assert handled("NotFound", "NOT_FOUND") == before + 1


async def test_unexpected_errors_are_internal_with_the_request_id_and_no_internals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with probe_server() as (channel, _):
        with caplog.at_level(logging.ERROR, logger="mesh.rpc"):
            error = await fails_with(
                grpc.StatusCode.INTERNAL,
                unary(channel, "Crash")(b"", metadata=(("x-request-id", "rid-42"),)),
            )
    assert "rid-42" in (error.details() or "")
    assert "secret" not in (error.details() or "")
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


async def test_a_handler_abort_is_counted_with_its_own_code() -> None:
    before = handled("Aborts", "FAILED_PRECONDITION")
    async with probe_server() as (channel, _):
        await fails_with(grpc.StatusCode.FAILED_PRECONDITION, unary(channel, "Aborts")(b""))
    assert handled("Aborts", "FAILED_PRECONDITION") == before + 1
