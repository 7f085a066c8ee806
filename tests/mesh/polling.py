"""Waiting on a condition with a deadline: the tests' only way to wait for something that
happens on another task or in another process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float, every: float = 0.01
) -> float:
    """Seconds until `check()` held; AssertionError if it did not within `within` seconds."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)
