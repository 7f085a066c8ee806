"""SessionRevoked events as the verifier applies them."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from elearn.events.v1.user_events_pb2 import SessionRevoked
from mesh.auth import TokenVerifier
from mesh.errors import Unauthenticated
from mesh.revocation import apply_revocation

KEY = Ed25519PrivateKey.generate()


def token(sub: str, sid: str, iat: int) -> str:
    claims = {
        "iss": "elearn-user", "aud": "elearn", "sub": sub, "sid": sid, "roles": ["student"],
        "iat": iat, "exp": iat + 900,
    }  # fmt: skip
    return jwt.encode(claims, KEY, algorithm="EdDSA", headers={"typ": "at+jwt"})


def event(user_id: str, session_id: str, at: float) -> SessionRevoked:
    occur = Timestamp()
    occur.FromNanoseconds(int(at * 1e9))
    return SessionRevoked(
        event_id="e", occur_time=occur, user_id=user_id, session_id=session_id, reason="test"
    )


def test_a_session_event_revokes_that_session_only() -> None:
    verifier = TokenVerifier(KEY.public_key())
    now = int(time.time())
    apply_revocation(verifier, event("u1", "fam-1", now))
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(token("u1", "fam-1", now - 10))
    assert verifier.verify(token("u1", "fam-2", now - 10)).session_id == "fam-2"


def test_an_event_without_a_session_revokes_every_earlier_token_of_the_user() -> None:
    verifier = TokenVerifier(KEY.public_key())
    now = int(time.time())
    apply_revocation(verifier, event("u1", "", now - 3.5))
    for sid in ("fam-1", "fam-2"):
        with pytest.raises(Unauthenticated, match="revoked"):
            verifier.verify(token("u1", sid, now - 4))
    assert verifier.verify(token("u1", "fam-3", now - 2)).user_id == "u1"
    assert verifier.verify(token("u2", "fam-1", now - 4)).user_id == "u2"
