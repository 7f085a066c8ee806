"""The answer to a refresh, kept for a few seconds so a retry gets the same successor.

A client that double-clicks, or retries after losing the answer, presents a token that was
just spent. Within the grace window that is a retry, not a theft, and it gets the successor it
would have received. Only hashes of refresh tokens are stored in Postgres, so the successor's
plaintext is kept here, in the state Valkey, for the window only, and encrypted (AES-GCM) under
a key derived from the presented token: the Valkey key and the ciphertext together reveal
nothing to someone who does not hold the spent token.
"""

from __future__ import annotations

import hashlib
import os

import redis.asyncio as redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from elearn.user.v1 import user_service_pb2 as pb

# Kept a little longer than the window: the entry is written before the commit that starts it.
_SLACK_SECONDS = 5
_NONCE = 12


def _derive(purpose: bytes, token: str) -> bytes:
    return hashlib.sha256(b"elearn refresh retry\0" + purpose + b"\0" + token.encode()).digest()


class RetryAnswers:
    def __init__(self, client: redis.Redis, grace_seconds: int) -> None:
        self._client = client
        self._ttl = grace_seconds + _SLACK_SECONDS

    @staticmethod
    def _key(token: str) -> str:
        return "refresh-retry:" + _derive(b"id", token).hex()

    async def remember(self, spent: str, successor: pb.TokenPair) -> None:
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(_derive(b"key", spent)).encrypt(nonce, successor.SerializeToString(), None)
        await self._client.set(self._key(spent), nonce + sealed, ex=self._ttl)

    async def recall(self, spent: str) -> pb.TokenPair | None:
        blob = await self._client.get(self._key(spent))
        if not isinstance(blob, bytes):
            return None
        try:
            plain = AESGCM(_derive(b"key", spent)).decrypt(blob[:_NONCE], blob[_NONCE:], None)
        except InvalidTag:
            return None
        return pb.TokenPair.FromString(plain)
