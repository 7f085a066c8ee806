"""Failed sign-in counting per account in Valkey, shared by every replica.

After `max_failures` failures inside the window, sign-in for that account is refused with
RESOURCE_EXHAUSTED until the window ends. The check comes before the password hash, so a
guessing attack also stops costing CPU. Keys hold a hash of the e-mail, never the address.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as redis

from mesh.errors import ResourceExhausted


class LoginThrottle:
    def __init__(self, client: redis.Redis, *, max_failures: int, window_seconds: int) -> None:
        self._client = client
        self._max = max_failures
        self._window = window_seconds

    @staticmethod
    def _key(email: str) -> str:
        return "login-fail:" + hashlib.sha256(email.encode()).hexdigest()[:32]

    async def check(self, email: str) -> None:
        key = self._key(email)
        failures = await self._client.get(key)
        if failures is not None and int(failures) >= self._max:
            wait = max(1, await self._client.ttl(key))
            raise ResourceExhausted(
                f"too many failed sign-ins for this account; try again in {wait} s"
            )

    async def failed(self, email: str) -> None:
        key = self._key(email)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self._window, nx=True)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self._client.delete(self._key(email))
