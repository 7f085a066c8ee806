"""Background task: abort uploads left open past COURSE_UPLOAD_ABANDON_SECONDS, freeing their
storage and their queue slot. Every replica runs it; rows are taken with SKIP LOCKED."""

from __future__ import annotations

import asyncio
import logging

from mesh.errors import infrastructure_error
from svc_course.settings import CourseSettings
from svc_course.uploads import Uploads

log = logging.getLogger("svc_course.upload_sweeper")


async def sweep_uploads(uploads: Uploads, settings: CourseSettings) -> None:
    while True:
        try:
            swept = await uploads.sweep(settings.upload_abandon_seconds)
            if swept:
                log.info("aborted abandoned uploads", extra={"count": swept})
        except Exception as exc:
            # An outage only delays the sweep to the next round.
            if infrastructure_error(exc) is None:
                log.exception("upload sweep failed")
        await asyncio.sleep(settings.upload_sweep_interval_seconds)
