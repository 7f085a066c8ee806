"""Participants' display names, for chat, questions and hands: UserService.GetMe with the
participant's own token, cached in-process. Names are cosmetic, so an unreachable user
service leaves them empty rather than refusing the participant."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import grpc

from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from mesh.context import Caller

log = logging.getLogger("svc_live.names")
_MAX_ENTRIES = 50_000


class DisplayNames:
    def __init__(self, channel: grpc.aio.Channel | None, ttl_seconds: float) -> None:
        self._stub = UserServiceStub(channel) if channel is not None else None
        self._ttl = ttl_seconds
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def of(self, caller: Caller) -> str:
        if self._stub is None:
            return ""
        now = time.monotonic()
        hit = self._cache.get(caller.user_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            reply = await self._stub.GetMe(user_pb.GetMeRequest(), timeout=1.0)
            name = reply.user.display_name
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                log.warning("display name unavailable: %s", exc.code().name)
                return ""
            name = ""
        self._cache[caller.user_id] = (now + self._ttl, name)
        self._cache.move_to_end(caller.user_id)
        if len(self._cache) > _MAX_ENTRIES:
            self._cache.popitem(last=False)
        return name
