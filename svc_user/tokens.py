"""Minting tokens: EdDSA-signed access JWTs (RFC 9068 shape) and opaque refresh tokens.

Only svc_user holds the private key; every service verifies with the public key through
mesh.auth, which pins the same issuer, audience, type and algorithm used here.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from mesh.auth import ACCESS_TOKEN_TYPE, ALGORITHM, AUDIENCE, ISSUER

REFRESH_PREFIX = "rt_"


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{path}: expected an Ed25519 private key")
    return key


class AccessTokens:
    def __init__(self, private_key: Ed25519PrivateKey, ttl_seconds: int) -> None:
        self._key = private_key
        self.ttl_seconds = ttl_seconds
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # Key id: lets verifiers pick the right key once keys rotate.
        self._kid = hashlib.sha256(raw).hexdigest()[:16]

    def mint(self, user_id: str, roles: list[str], *, session_id: str) -> str:
        """An access token for one sign-in session (`session_id`: the refresh-token family),
        so that revoking the session can revoke its access tokens too."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "sid": session_id,
            "roles": roles,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        headers = {"typ": ACCESS_TOKEN_TYPE, "kid": self._kid}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers=headers)


def new_refresh_token() -> tuple[str, bytes]:
    """A fresh refresh token and the hash that is stored in its place."""
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
