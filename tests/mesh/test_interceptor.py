"""The mesh interceptor on a real in-process grpc.aio server: policy before tokens, the
concurrency limit, status codes counted for deadlines, and the error mapping."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mesh import queue_time
from mesh.interceptor import MeshInterceptor
from svc_user.tokens import AccessTokens
from tests.grpc_assert import fails_with
from tests.mesh.inprocess import KEY, POLICY, Probe, handled, path, probe_server, unary
from tests.mesh.polling import eventually


def _counted(name: str, code: str, before: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return handled(name, code) > before

    return check


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


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


def stamped(seconds_ago: float) -> tuple[tuple[str, str]]:
    return ((queue_time.HEADER, f"t={time.time() - seconds_ago:.6f}"),)


async def test_a_call_that_waited_past_the_bound_is_refused_before_any_work() -> None:
    async with probe_server(max_queue_ms=500) as (channel, probe):
        held = unary(channel, "Hold")
        error = await fails_with(
            grpc.StatusCode.RESOURCE_EXHAUSTED, held(b"", metadata=stamped(2.0)), match="waited"
        )
        assert not probe.entered.is_set(), "the handler ran for a refused call"
        status = rpc_status.from_call(error)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert (
            status.details[0].Unpack(retry) and retry.retry_delay.ToTimedelta().total_seconds() > 0
        )


async def test_fresh_unstamped_and_garbage_stamps_are_served() -> None:
    async with probe_server(max_queue_ms=500) as (channel, _):
        public = unary(channel, "Public")
        assert await public(b"", metadata=stamped(0.0)) == b"anonymous"
        assert await public(b"") == b"anonymous"
        for garbage in ("t=soon", "1796515210.5", "t=nan", ""):
            metadata = ((queue_time.HEADER, garbage),)
            assert await public(b"", metadata=metadata) == b"anonymous", garbage


async def test_a_bound_of_zero_never_refuses_a_stale_call() -> None:
    async with probe_server() as (channel, _):
        assert await unary(channel, "Public")(b"", metadata=stamped(3600)) == b"anonymous"


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


async def test_a_writer_style_stream_goes_to_grpc_as_a_coroutine_and_keeps_its_error() -> None:
    """svc_live writes its streams with ctx.write: the interceptor hands grpc a coroutine
    handler (no generator layer per message), and a ServiceError raised after some writes
    still ends the stream with its code and message, counted once."""
    interceptor = MeshInterceptor(POLICY, None, access_log="off")
    probe = Probe()
    details = _Details(path("Written"))

    async def continuation(_: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return grpc.unary_stream_rpc_method_handler(probe.written)

    wrapped = await interceptor.intercept_service(continuation, details)
    assert inspect.iscoroutinefunction(wrapped.unary_stream)

    before = handled("Written", "NOT_FOUND")
    async with probe_server() as (channel, _):
        call = channel.unary_stream(path("Written"))(b"")
        assert [await call.read(), await call.read()] == [b"one", b"two"]
        await fails_with(grpc.StatusCode.NOT_FOUND, call.read(), match="nothing after two")
    assert handled("Written", "NOT_FOUND") == before + 1
