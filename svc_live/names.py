"""Participants' display names, for chat, questions and hands: UserService.GetMe with the
participant's own token, cached in-process. Names are cosmetic, so an unreachable user
service leaves them empty rather than refusing the participant."""

from __future__ import annotations

import logging

import grpc

from elearn.user.v1 import user_service_pb2 as user_pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from mesh.context import Caller
from mesh.local_cache import LocalCache

log = logging.getLogger("svc_live.names")
_MAX_ENTRIES = 50_000


class DisplayNames:
    def __init__(self, channel: grpc.aio.Channel | None, ttl_seconds: float) -> None:
        self._stub = UserServiceStub(channel) if channel is not None else None
        self._cache: LocalCache[str, str] = LocalCache(ttl_seconds, _MAX_ENTRIES)

    async def of(self, caller: Caller) -> str:
        if self._stub is None:
            return ""
        try:
            return await self._cache.get_or_load(caller.user_id, self._ask, self._stub)
        except grpc.aio.AioRpcError as exc:
            log.warning("display name unavailable: %s", exc.code().name)
            return ""

    @staticmethod
    async def _ask(stub: UserServiceStub) -> str:
        try:
            reply = await stub.GetMe(user_pb.GetMeRequest(), timeout=1.0)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return ""
        return reply.user.display_name
