"""Outgoing gRPC: one long-lived channel per peer service, with deadlines and identity
propagated from the incoming call.

Every outgoing call gets a deadline: the smaller of the caller's remaining time (less a small
margin for the way back) and a default, so a slow peer can never hold a request past its
client's deadline. The caller's access token and request id travel along, so the peer applies
its own policy to the original caller.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc

from mesh import context, tracing
from mesh.server import KEEPALIVE_OPTIONS

DEFAULT_TIMEOUT_SECONDS = 5.0
# Time kept back for the response to travel back to our own caller.
RETURN_MARGIN_SECONDS = 0.02


def outgoing_timeout(requested: float | None) -> float:
    timeout = requested if requested is not None else DEFAULT_TIMEOUT_SECONDS
    deadline = context.deadline.get()
    if deadline is not None:
        timeout = min(timeout, max(0.0, deadline - time.monotonic() - RETURN_MARGIN_SECONDS))
    return timeout


def outgoing_metadata(existing: Any) -> list[tuple[str, str]]:
    metadata = list(existing or ())
    keys = {k for k, _ in metadata}
    caller = context.current_caller.get()
    if caller is not None and "authorization" not in keys:
        metadata.append(("authorization", f"Bearer {caller.token}"))
    rid = context.request_id.get()
    if rid and "x-request-id" not in keys:
        metadata.append(("x-request-id", rid))
    # A sampled call's traceparent is added by the tracing interceptor; an unsampled one's here.
    traceparent = tracing.unsampled_traceparent()
    if traceparent is not None and "traceparent" not in keys:
        metadata.append(("traceparent", traceparent))
    return metadata


# One class per call shape: grpc.aio files an interceptor under the first shape it matches
# only (an elif chain in aio/_channel.py), so one class implementing all four would propagate
# nothing on streaming calls.
class _PropagateUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_context(details), request)


class _PropagateUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_context(details), request)


class _PropagateStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_context(details), request_iterator)


class _PropagateStreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_context(details), request_iterator)


_PROPAGATE = (
    _PropagateUnaryUnary(),
    _PropagateUnaryStream(),
    _PropagateStreamUnary(),
    _PropagateStreamStream(),
)


def _with_context(details: Any) -> Any:
    return details._replace(
        timeout=outgoing_timeout(details.timeout),
        metadata=outgoing_metadata(details.metadata),
    )


class Channels:
    """One channel per target, opened on first use and closed together at shutdown."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            # Ours first: the tracing interceptors then see the deadline and metadata we set,
            # and add the client span's traceparent beside them.
            interceptors = [*_PROPAGATE, *tracing.client_interceptors()]
            channel = grpc.aio.insecure_channel(
                target, options=KEEPALIVE_OPTIONS, interceptors=interceptors
            )
            self._channels[target] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


@asynccontextmanager
async def open_channels() -> AsyncIterator[Channels]:
    channels = Channels()
    try:
        yield channels
    finally:
        await channels.close()
