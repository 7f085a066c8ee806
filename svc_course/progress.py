"""Video progress (write-behind through the state Valkey). Lands with the progress work of
issue #11; until then every progress RPC answers UNIMPLEMENTED, never a fake success."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as redis

from elearn.course.v1 import course_service_pb2 as pb
from mesh.db import Database
from mesh.errors import Unimplemented
from mesh.outbox import Outbox
from svc_course.settings import CourseSettings

_NOT_YET = "video progress is not implemented yet (issue #11, progress)"


class Progress:
    def __init__(
        self, *, db: Database, state: redis.Redis, outbox: Outbox, settings: CourseSettings
    ) -> None:
        self._db = db
        self._state = state
        self._outbox = outbox
        self._settings = settings

    def background_tasks(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """Coroutine functions the server runs for its lifetime (the flusher)."""
        return []

    async def close(self) -> None:
        """Flush what is pending before the pools close (graceful shutdown)."""

    async def update(
        self, request: pb.UpdateVideoProgressRequest
    ) -> pb.UpdateVideoProgressResponse:
        raise Unimplemented(_NOT_YET)

    async def get(self, request: pb.GetVideoProgressRequest) -> pb.GetVideoProgressResponse:
        raise Unimplemented(_NOT_YET)

    async def list(self, request: pb.ListVideoProgressRequest) -> pb.ListVideoProgressResponse:
        raise Unimplemented(_NOT_YET)
