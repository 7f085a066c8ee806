"""The one server interceptor: auth, request ids, deadlines, metrics, access logs, error
mapping and the server span (mesh.tracing) of every RPC.

It is a single wrapper rather than a chain of four because each grpc.aio interceptor layer
costs a measurable share of a ~150 µs call; the concerns still live in their own modules
(auth, metrics, errors, logs). Wrapped handlers are built once per method and cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc.aio import ServerInterceptor

from mesh import context, metrics, queue_time, tracing
from mesh.auth import Access, Policy, Rule, TokenVerifier, parse_bearer
from mesh.errors import ResourceExhausted, ServiceError, Unauthenticated, infrastructure_error

log = logging.getLogger("mesh.rpc")

_OK = grpc.StatusCode.OK


class _Call:
    """Per-call bookkeeping shared by the four handler shapes."""

    __slots__ = ("code", "deadline", "method", "peer", "start")

    def __init__(
        self, method: str, peer: str | None = None, remaining: float | None = None
    ) -> None:
        self.method = method
        self.start = time.perf_counter()
        self.code = _OK
        self.deadline = None if remaining is None else time.monotonic() + remaining
        # Streams record their peer up front: their clean-up can run after grpc has freed the
        # call, and ctx.peer() on a freed call dereferences NULL in the C core (a segfault).
        self.peer = peer


def _cancelled_code(ctx: grpc.aio.ServicerContext, call: _Call) -> grpc.StatusCode:
    """grpc.aio cancels the handler both when the client goes away and when the deadline
    passes; the two mean different things on a dashboard."""
    if call.peer is not None:  # a stream: its call may be gone, use what was noted at start
        if call.deadline is not None and call.deadline <= time.monotonic():
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    remaining = ctx.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class MeshInterceptor(ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        policy: Policy,
        verifier: TokenVerifier | None,
        *,
        access_log: str = "errors",
        slow_call_ms: float = 500.0,
        max_concurrent: int = 2000,
        max_queue_ms: float = 0.0,
        queue_target_ms: float = 100.0,
        queue_interval_ms: float = 500.0,
    ) -> None:
        self._policy = policy
        self._verifier = verifier
        self._log_all = access_log == "all"
        self._log_off = access_log == "off"
        self._slow = slow_call_ms / 1000
        self._max_concurrent = max_concurrent
        self._waits = (
            queue_time.WaitBound(
                max_queue_ms / 1000, queue_target_ms / 1000, queue_interval_ms / 1000
            )
            if max_queue_ms > 0
            else None
        )
        self._in_flight = 0
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._series: dict[str, tuple[Any, Any, str, str]] = {}
        # Read once: tracing is set up before the server is built, and a process without a
        # collector should not pay even a function call per RPC for it.
        self._trace = tracing.enabled()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None
            wrapped = self._wrap(method, handler)
            self._handlers[method] = wrapped
        return wrapped

    # -- per-call steps -------------------------------------------------------------------

    def _enter(
        self, rule: Rule | None, method: str, ctx: grpc.aio.ServicerContext, request: Any = None
    ) -> None:
        """Request id, deadline, load shedding and access policy for a call; `request` is a
        unary call's message (a stream is never refused for its wait)."""
        rid: str | bytes = ""
        auth: str | bytes | None = None
        stamp: str | bytes | None = None
        for key, value in ctx.invocation_metadata() or ():
            if key == "x-request-id":
                rid = value
            elif key == "authorization":
                auth = value
            elif key == queue_time.HEADER:
                stamp = value
        if isinstance(rid, bytes):
            rid = rid.decode()
        context.request_id.set(rid or uuid.uuid4().hex)
        remaining = ctx.time_remaining()
        context.deadline.set(None if remaining is None else time.monotonic() + remaining)
        # _in_flight counts the unary calls in flight, this one included. Open streams are
        # not in it: a live pod holds thousands of mostly idle ones (bounded by the service's
        # own stream limit), and counting them refused every Send and join beyond the cap.
        # Only a stamped call pays for the check; a client-streaming call's request is its
        # stream, never refused for its wait.
        if (
            stamp is not None
            and self._waits is not None
            and request is not None
            and not hasattr(request, "__aiter__")
        ):
            waited = queue_time.waited_seconds(stamp, time.time())
            if waited is not None and self._waits.refuse(waited, request, time.monotonic()):
                raise ResourceExhausted(
                    f"the server is overloaded: this call waited {waited * 1000:.0f} ms before"
                    " it was taken; retry shortly",
                    retry_after_seconds=self._waits.bound,
                )
        if self._in_flight > self._max_concurrent:
            raise ResourceExhausted("server is at its concurrent call limit; retry shortly")
        if rule is None:
            raise Unauthenticated(f"{method} is not open to callers")
        caller = None
        # The rule decides first: a public method never reads the header, so a stale or
        # garbage token cannot break sign-in or refresh.
        if rule.access is not Access.PUBLIC:
            if auth is not None:
                if self._verifier is None:
                    raise Unauthenticated("this service cannot verify access tokens")
                caller = self._verifier.verify(parse_bearer(auth))
            rule.admits(caller)
        context.current_caller.set(caller)

    async def _fail(self, call: _Call, exc: BaseException, ctx: grpc.aio.ServicerContext) -> None:
        if isinstance(exc, ServiceError):
            call.code = exc.code
            await ctx.abort_with_status(exc.to_status())
        mapped = infrastructure_error(exc)
        if mapped is not None:
            call.code = mapped.code
            await ctx.abort_with_status(mapped.to_status())
        call.code = grpc.StatusCode.INTERNAL
        log.exception("unhandled error in %s", call.method)
        await ctx.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error; request id {context.request_id.get()}",
        )

    def _exit(self, call: _Call, ctx: grpc.aio.ServicerContext) -> grpc.StatusCode:
        elapsed = time.perf_counter() - call.start
        code = call.code
        if code is _OK:
            # A handler may set a code on the context, or abort, without raising ours.
            set_code = ctx.code()
            if set_code is not None and set_code is not _OK:
                code = _status_code(set_code)
        _, latency, service, name = self._series_for(call.method)
        latency.observe(elapsed)
        metrics.RPC_HANDLED.labels(service, name, code.name).inc()
        if self._log_off:
            return code
        if self._log_all or code is not _OK or elapsed >= self._slow:
            log.info(
                "rpc",
                extra={
                    "method": call.method,
                    "code": code.name,
                    "ms": round(elapsed * 1000, 3),
                    "peer": call.peer if call.peer is not None else ctx.peer(),
                },
            )
        return code

    def _traced(self, method: str) -> bool:
        # Health checks (Envoy's, every second) and reflection would only fill the trace store.
        return self._trace and not method.startswith("/grpc.")

    def _series_for(self, method: str) -> tuple[Any, Any, str, str]:
        series = self._series.get(method)
        if series is None:
            service, name = metrics.split_method(method)
            series = (
                metrics.RPC_STARTED.labels(service, name),
                metrics.RPC_LATENCY.labels(service, name),
                service,
                name,
            )
            self._series[method] = series
        return series

    # -- the four handler shapes ----------------------------------------------------------

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Rules are fixed for the server's life, so each method's is looked up once here.
        rule = self._policy.rule_for(method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, rule, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, rule, handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, rule, handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, rule, handler.stream_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _unary(
        self, method: str, rule: Rule | None, behavior: Callable[..., Any]
    ) -> Callable[..., Any]:
        started = self._series_for(method)[0]
        traced = self._traced(method)

        async def run(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
            self._in_flight += 1
            started.inc()
            call = _Call(method)
            # The call's span is current while the handler and the access log line run.
            span = tracing.server_span(method, ctx.invocation_metadata()) if traced else None
            try:
                self._enter(rule, method, ctx, request)
                return await behavior(request, ctx)
            except asyncio.CancelledError:
                call.code = _cancelled_code(ctx, call)
                raise
            except grpc.aio.AbortError:
                # Aborted through the context: _exit reads the code from it.
                raise
            except Exception as exc:
                await self._fail(call, exc, ctx)
            finally:
                self._in_flight -= 1
                code = self._exit(call, ctx)
                if span is not None:
                    tracing.end_server_span(span, code)

        return run

    def _streaming(
        self, method: str, rule: Rule | None, behavior: Callable[..., Any]
    ) -> Callable[..., Any]:
        started = self._series_for(method)[0]
        traced = self._traced(method)

        if inspect.iscoroutinefunction(behavior):
            # A handler that writes with ctx.write (svc_live's streams): no generator layer
            # between its writes and grpc, at tens of thousands of writes a second per pod.
            async def written(request: Any, ctx: grpc.aio.ServicerContext) -> None:
                async with _StreamGuard(self, method, started, traced, ctx):
                    self._enter(rule, method, ctx)
                    await behavior(request, ctx)

            return written

        async def run(request: Any, ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            result: Any = None
            try:
                async with _StreamGuard(self, method, started, traced, ctx):
                    self._enter(rule, method, ctx)
                    result = behavior(request, ctx)
                    if hasattr(result, "__aiter__"):
                        async for item in result:
                            yield item
                    else:
                        await result
            finally:
                # Close the handler's generator now, while the call is alive: left to the
                # garbage collector, its clean-up (tasks still reading the request stream) ran
                # after grpc had freed the call, and the C core crashed on it.
                if hasattr(result, "aclose"):
                    with contextlib.suppress(Exception):
                        await result.aclose()

        return run


class _StreamGuard:
    """One streaming call's bookkeeping and error mapping, whichever style its handler has
    (an async generator, or a coroutine writing with ctx.write)."""

    __slots__ = ("call", "ctx", "interceptor", "span")

    def __init__(
        self,
        interceptor: MeshInterceptor,
        method: str,
        started: Any,
        traced: bool,
        ctx: grpc.aio.ServicerContext,
    ) -> None:
        started.inc()
        metrics.STREAMS_OPEN.inc()
        self.interceptor = interceptor
        self.ctx = ctx
        self.call = _Call(method, ctx.peer(), ctx.time_remaining())
        self.span = tracing.server_span(method, ctx.invocation_metadata()) if traced else None

    async def __aenter__(self) -> None:
        # The call's own checks (_enter) run inside the block, so a refusal is mapped too.
        return None

    async def __aexit__(self, _kind: Any, exc: BaseException | None, _tb: Any) -> bool:
        try:
            if isinstance(exc, asyncio.CancelledError):
                self.call.code = _cancelled_code(self.ctx, self.call)
            elif isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
                await self.interceptor._fail(self.call, exc, self.ctx)
                return True
            return False
        finally:
            metrics.STREAMS_OPEN.dec()
            code = self.interceptor._exit(self.call, self.ctx)
            if self.span is not None:
                tracing.end_server_span(self.span, code)


def _status_code(value: Any) -> grpc.StatusCode:
    """ctx.code() may hold a StatusCode or its integer value, depending on how it was set."""
    if isinstance(value, grpc.StatusCode):
        return value
    return _CODES_BY_NUMBER.get(value, grpc.StatusCode.UNKNOWN)


_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}
