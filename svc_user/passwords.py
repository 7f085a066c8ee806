"""argon2id password hashing off the event loop, with bounded admission.

A hash costs ~27 ms of CPU with OWASP's minimum parameters, so sign-in is CPU-bound by design.
Hashes run on a small thread pool (argon2-cffi releases the GIL); at most `threads + queue`
hashes are admitted at once and the rest are refused with RESOURCE_EXHAUSTED at once, so a
login storm sheds load instead of building a queue that times everyone out.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mesh.errors import ResourceExhausted


class PasswordHashing:
    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, threads: int, queue: int
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._limit = threads + queue
        self._admitted = 0
        # Verifying against this for unknown accounts keeps "no such e-mail" and "wrong
        # password" equally slow, so timing does not reveal which accounts exist.
        self._decoy = self._hasher.hash("decoy password for timing")

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        target = stored_hash or self._decoy
        ok = await self._run(self._verify_sync, target, password)
        return ok and stored_hash is not None

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        if self._admitted >= self._limit:
            raise ResourceExhausted("sign-in is busy; retry in a moment")
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
