"""Access-token verification and per-method policy, without servers."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mesh.auth import (
    PUBLIC,
    SIGNED_IN,
    Policy,
    TokenVerifier,
    bearer_token,
    role,
)
from mesh.context import Caller
from mesh.errors import PermissionDenied, Unauthenticated
from svc_user.tokens import AccessTokens, hash_refresh_token, new_refresh_token

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


def claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "elearn-user", "aud": "elearn", "sub": "u1", "roles": ["student"],
        "iat": now, "exp": now + 60,
    }  # fmt: skip
    base.update(over)
    return base


def sign(payload: dict[str, object], key: Ed25519PrivateKey = KEY, typ: str = "at+jwt") -> str:
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"typ": typ})


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(KEY.public_key())


def test_minted_token_verifies_with_public_key_alone(verifier: TokenVerifier) -> None:
    token = AccessTokens(KEY, 900).mint("user-1", ["student", "instructor"], session_id="fam-1")
    caller = verifier.verify(token)
    assert caller.user_id == "user-1"
    assert caller.roles == {"student", "instructor"}
    assert caller.session_id == "fam-1"
    assert caller.expires_at == pytest.approx(time.time() + 900, abs=5)


def test_expired_token_is_refused(verifier: TokenVerifier) -> None:
    token = sign(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600))
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def test_token_signed_by_another_key_is_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthenticated, match="invalid access token"):
        verifier.verify(sign(claims(), key=OTHER_KEY))


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), None, algorithm="none", headers={"typ": "at+jwt"})
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_hs256_keyed_with_the_public_key_is_refused(verifier: TokenVerifier) -> None:
    # The classic algorithm-confusion attack: HMAC with the public key as the secret.
    public_raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    token = jwt.encode(claims(), public_raw, algorithm="HS256", headers={"typ": "at+jwt"})
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_token_of_another_type_is_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthenticated, match="not an access token"):
        verifier.verify(sign(claims(), typ="refresh+jwt"))


@pytest.mark.parametrize(
    "override",
    [{"iss": "someone-else"}, {"aud": "another-api"}, {"roles": ["root"]}, {"roles": "admin"}],
)
def test_wrong_issuer_audience_or_roles_is_refused(
    verifier: TokenVerifier, override: dict[str, object]
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(sign(claims(**override)))


def test_missing_expiry_is_refused(verifier: TokenVerifier) -> None:
    payload = claims()
    del payload["exp"]
    with pytest.raises(Unauthenticated):
        verifier.verify(sign(payload))


def test_garbage_is_refused(verifier: TokenVerifier) -> None:
    for token in ["", "abc", "a.b.c", "x" * 5000]:
        with pytest.raises(Unauthenticated):
            verifier.verify(token)


def test_verified_tokens_are_cached_until_expiry(verifier: TokenVerifier) -> None:
    token = sign(claims(exp=int(time.time()) + 60))
    first = verifier.verify(token)
    assert verifier.verify(token) is first


def test_cache_is_a_bounded_lru_that_never_clears_itself() -> None:
    small = TokenVerifier(KEY.public_key(), cache_size=3)
    tokens = [sign(claims(sub=f"u{i}")) for i in range(10)]
    for t in tokens:
        small.verify(t)
        small.verify(tokens[0])  # kept warm, so never the least recently used
    assert list(small._cache) == [tokens[8], tokens[9], tokens[0]]


def test_bearer_header_parsing() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("x-other", "1")]) is None
    with pytest.raises(Unauthenticated):
        bearer_token([("authorization", "Basic dXNlcjpwdw==")])
    with pytest.raises(Unauthenticated):
        bearer_token([("authorization", "Bearer ")])


def caller(*roles: str) -> Caller:
    return Caller(user_id="u", roles=frozenset(roles), token="t", expires_at=time.time() + 60)


def test_policy_rules() -> None:
    PUBLIC.admits(None)
    SIGNED_IN.admits(caller("student"))
    with pytest.raises(Unauthenticated):
        SIGNED_IN.admits(None)
    admin_only = role("admin")
    admin_only.admits(caller("student", "admin"))
    with pytest.raises(PermissionDenied, match="admin"):
        admin_only.admits(caller("student", "instructor"))
    with pytest.raises(ValueError):
        role("superuser")


def test_policy_must_cover_every_method() -> None:
    policy = Policy({"/svc/A": PUBLIC})
    policy.check_complete(["/svc/A"])
    with pytest.raises(SystemExit, match="/svc/B"):
        policy.check_complete(["/svc/A", "/svc/B"])
    assert policy.rule_for("/grpc.health.v1.Health/Check") is PUBLIC
    assert policy.rule_for("/svc/B") is None


def test_refresh_tokens_are_random_and_stored_hashed() -> None:
    a, a_hash = new_refresh_token()
    b, _ = new_refresh_token()
    assert a != b and a.startswith("rt_") and len(a) > 40
    assert a_hash == hash_refresh_token(a) and a.encode() not in a_hash


class Clock:
    """The verifier's clock, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_cached_token_is_refused_once_the_clock_passes_its_expiry() -> None:
    # Deleting the cache's expiry check keeps a verified token valid forever: this fails then.
    clock = Clock()
    verifier = TokenVerifier(KEY.public_key(), clock=clock, leeway_seconds=30)
    token = sign(claims(exp=int(clock.now) + 60))
    verifier.verify(token)
    clock.now += 60 + 29
    verifier.verify(token)  # inside the leeway
    clock.now += 2
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def test_clock_skew_inside_the_leeway_is_accepted_beyond_it_refused() -> None:
    clock = Clock()
    verifier = TokenVerifier(KEY.public_key(), clock=clock, leeway_seconds=30)
    now = int(clock.now)
    verifier.verify(sign(claims(iat=now - 70, exp=now - 10)))
    verifier.verify(sign(claims(iat=now + 20, nbf=now + 20, exp=now + 80)))
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(sign(claims(iat=now - 100, exp=now - 31)))
    with pytest.raises(Unauthenticated, match="not yet valid"):
        verifier.verify(sign(claims(nbf=now + 60, exp=now + 120)))
    with pytest.raises(Unauthenticated, match="not yet valid"):
        verifier.verify(sign(claims(iat=now + 60, exp=now + 120)))


def test_a_token_living_longer_than_the_accepted_maximum_is_refused() -> None:
    verifier = TokenVerifier(KEY.public_key(), max_ttl_seconds=900)
    now = int(time.time())
    verifier.verify(sign(claims(iat=now, exp=now + 900)))
    with pytest.raises(Unauthenticated, match="longer"):
        verifier.verify(sign(claims(iat=now, exp=now + 901)))


def test_a_revoked_session_is_refused_even_from_the_cache() -> None:
    clock = Clock()
    verifier = TokenVerifier(KEY.public_key(), clock=clock)
    revoked = sign(claims(sid="fam-1"))
    other_session = sign(claims(sid="fam-2"))
    verifier.verify(revoked)
    verifier.revoke_session("fam-1", clock.now)
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(revoked)
    assert verifier.verify(other_session).session_id == "fam-2"


def test_revoking_a_user_refuses_tokens_issued_up_to_then_only() -> None:
    clock = Clock()
    verifier = TokenVerifier(KEY.public_key(), clock=clock)
    now = int(clock.now)
    before = sign(claims(iat=now - 5, sid="a"))
    after = sign(claims(iat=now + 2, sid="b"))
    verifier.verify(before)
    verifier.revoke_user("u1", now - 1)
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(before)
    assert verifier.verify(after).user_id == "u1"
    assert verifier.verify(sign(claims(sub="u2", iat=now - 5))).user_id == "u2"


def test_revocations_are_forgotten_once_every_token_they_cover_has_expired() -> None:
    clock = Clock()
    verifier = TokenVerifier(KEY.public_key(), clock=clock, max_ttl_seconds=900, leeway_seconds=30)
    for i in range(100):
        verifier.revoke_session(f"fam-{i}", clock.now)
        verifier.revoke_user(f"u{i}", clock.now)
    clock.now += 900 + 31
    verifier.revoke_session("fam-new", clock.now)
    verifier.revoke_user("u-new", clock.now)
    assert list(verifier._revoked_sessions) == ["fam-new"]
    assert list(verifier._revoked_users) == ["u-new"]
    # A revocation whose tokens have all expired already is not stored at all.
    verifier.revoke_session("ancient", clock.now - 2000)
    assert "ancient" not in verifier._revoked_sessions
