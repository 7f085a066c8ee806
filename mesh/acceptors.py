"""More than one call of a method accepted at a time.

grpc.aio (1.85) accepts calls with one outstanding request per method: its server loop asks the
core for the next call of each method, waits for any of them with `asyncio.wait` over all the
methods' futures, hands the call to a new task and only then asks again. Accepting one call
takes three or four passes of the event loop. On an idle loop that is nothing; on a live pod
writing to thousands of streams a pass lasts milliseconds, and at 4,000 streams the pod
accepted the instructors' Sends (40 a second) more slowly than they came: their round trip
went from 20 ms to 150-350 ms in one run out of two, and the whole session's latency with it
(bench.live_scale). A unary service under load pays the `asyncio.wait` over every method's
future (about 30 on CourseService) once per accepted call.

`Acceptors` keeps `depth - 1` more requests outstanding for each method a service names as
hot (`ServiceSpec.hot_methods`), each in a loop of its own: the core hands incoming calls to
whichever request is first in line, so a burst is accepted in one pass, and each of these
loops accepts with one await. A call so accepted runs exactly as grpc.aio would run it (its
`_handle_rpc` with the server's own interceptors and handlers), so it sees nothing different.

Only methods that do not queue for a Postgres connection are hot: accepting a burst at once
moves its queue from grpc's (no time limit but the caller's deadline) into the pool's, whose
wait is bounded (DB_POOL_TIMEOUT_SECONDS, then UNAVAILABLE). 500 concurrent Enroll calls on
one course, serialized on its row, then ran past that bound.

It reaches into grpc's Cython layer (`AioServer._request_registered_call`, `_handle_rpc`,
`_schedule_rpc_coro`, `_MethodResolver`), which is why grpcio is pinned to one version and
`tests/mesh/test_acceptors.py` runs calls through these loops: an upgrade that moves them
fails there, not in production.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from grpc._cython import cygrpc

log = logging.getLogger("mesh.acceptors")


class Acceptors:
    def __init__(self, server: grpc.aio.Server, interceptors: Sequence[Any], depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self.accepted = 0  # calls these loops took (tests and benches read it)
        self._server = server
        self._interceptors = tuple(interceptors)
        self._generic: list[Any] = []
        self._registered: dict[str, Any] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._calls: set[asyncio.Task[Any]] = set()
        # The handlers are recorded as they are registered: the Cython server keeps its own
        # copies where Python cannot read them.
        add_generic = server.add_generic_rpc_handlers
        add_registered = server.add_registered_method_handlers

        def generic(handlers: Sequence[Any]) -> None:
            self._generic.extend(handlers)
            add_generic(handlers)

        def registered(service: str, handlers: dict[str, Any]) -> None:
            self._registered.update({f"/{service}/{m}": h for m, h in handlers.items()})
            add_registered(service, handlers)

        server.add_generic_rpc_handlers = generic  # type: ignore[method-assign]
        server.add_registered_method_handlers = registered  # type: ignore[method-assign]

    def start(self, methods: Sequence[str]) -> None:
        """After `server.start()`: open the extra requests for `methods` (full names)."""
        unknown = set(methods) - set(self._registered)
        if unknown:
            raise ValueError(f"not registered, so not accepted ahead: {sorted(unknown)}")
        if self.depth == 1:
            return
        core = self._server._server  # the cygrpc.AioServer
        resolver = cygrpc._MethodResolver(self._generic, self._registered)
        loop = asyncio.get_running_loop()
        for method in methods:
            for _ in range(self.depth - 1):
                self._loops.append(
                    loop.create_task(self._accept(core, method, resolver, loop), name="accept")
                )

    async def stop(self) -> None:
        """After `server.stop()`: the requests failed with the shutdown; collect the loops."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()

    async def _accept(
        self, core: Any, method: str, resolver: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        method_bytes = method.encode()
        while core.is_running():
            try:
                state = await core._request_registered_call(method_bytes)
            except Exception:
                # The server is shutting down (the request fails, or cannot be made): grpc's
                # own loop stops the same way.
                if core.is_running():
                    log.exception("accepting %s failed; this loop stops", method)
                return
            self.accepted += 1
            call = cygrpc._handle_rpc(method, resolver, self._interceptors, state, loop, False)
            task = loop.create_task(
                cygrpc._schedule_rpc_coro(call, state, loop, method), name="rpc_task"
            )
            # The loop holds tasks weakly; a running call must not be collected.
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
