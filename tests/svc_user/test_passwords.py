"""Hash admission: past threads + queue, callers are shed with RESOURCE_EXHAUSTED at once."""

from __future__ import annotations

import asyncio

from mesh.errors import ResourceExhausted
from svc_user.passwords import PasswordHashing


async def test_hashes_past_threads_plus_queue_are_shed() -> None:
    hashing = PasswordHashing(time_cost=1, memory_kib=8192, parallelism=1, threads=1, queue=0)
    try:
        stored = await hashing.hash("correct horse")
        results = await asyncio.gather(
            *(hashing.verify(stored, "correct horse") for _ in range(6)), return_exceptions=True
        )
        assert results.count(True) == 1
        shed = [r for r in results if isinstance(r, ResourceExhausted)]
        assert len(shed) == 5 and "busy" in shed[0].message
        # Admission frees up once the running hash is done.
        assert await hashing.verify(stored, "correct horse")
        assert not await hashing.verify(stored, "wrong horse")
    finally:
        hashing.close()
