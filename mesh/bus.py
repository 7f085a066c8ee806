"""NATS and JetStream: one connection per process, and the platform's event stream.

Events go to JetStream subjects `elearn.<service>.<event>` in one stream, `ELEARN`, with a
de-duplication window so a relay that re-publishes after a crash (same Nats-Msg-Id) adds
nothing. Live fan-out uses core NATS subjects on the same connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from mesh.config import MeshSettings

log = logging.getLogger("mesh.bus")

EVENT_STREAM = "ELEARN"
EVENT_SUBJECTS = ["elearn.>"]
# Publishers retry for a while after a crash; two minutes covers a relay restart.
DUPLICATE_WINDOW_SECONDS = 120.0
EVENT_RETENTION_SECONDS = 7 * 24 * 3600.0


@dataclass
class Bus:
    nc: NATS
    js: JetStreamContext


@asynccontextmanager
async def connect_bus(settings: MeshSettings) -> AsyncIterator[Bus]:
    settings.require("nats_url")
    nc = await nats.connect(
        settings.nats_url,
        name=settings.instance_name,
        connect_timeout=3,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
    )
    try:
        js = nc.jetstream(timeout=5)
        await ensure_event_stream(js)
        yield Bus(nc, js)
    finally:
        await nc.drain()


async def ensure_event_stream(js: JetStreamContext) -> None:
    config = StreamConfig(
        name=EVENT_STREAM,
        subjects=EVENT_SUBJECTS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=EVENT_RETENTION_SECONDS,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists already (another replica created it): bring its settings up to date.
        await js.update_stream(config)
