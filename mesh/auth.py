"""Access-token verification with the public key alone, and per-method access policy.

svc_user signs access tokens (EdDSA, RFC 9068 `typ: at+jwt`); every service verifies them here.
The algorithm is pinned, and issuer, audience, type and expiry are all checked, so `alg: none`,
an HS256 token keyed with the public key, a token signed by another key, or a token of another
type is refused. Verification costs about as much as an empty RPC (~125 µs), so a verified token
is cached in-process until it expires.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from mesh.context import Caller
from mesh.errors import PermissionDenied, Unauthenticated

ISSUER = "elearn-user"
AUDIENCE = "elearn"
ACCESS_TOKEN_TYPE = "at+jwt"
ALGORITHM = "EdDSA"
ROLES = ("student", "instructor", "admin")


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    key = load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SystemExit(f"{path}: expected an Ed25519 public key")
    return key


class TokenVerifier:
    """Verifies access tokens and caches the outcome until each token's expiry."""

    def __init__(self, public_key: Ed25519PublicKey, *, cache_size: int = 50_000) -> None:
        self._key = public_key
        self._cache: dict[str, Caller] = {}
        self._cache_size = cache_size

    def verify(self, token: str) -> Caller:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > now:
                return cached
            del self._cache[token]
        caller = self._verify_signature(token)
        if len(self._cache) >= self._cache_size:
            self._evict(now)
        self._cache[token] = caller
        return caller

    def _verify_signature(self, token: str) -> Caller:
        try:
            decoded = jwt.decode_complete(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired; refresh it") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid access token: {exc}") from None
        if decoded["header"].get("typ") != ACCESS_TOKEN_TYPE:
            raise Unauthenticated("invalid access token: not an access token")
        claims = decoded["payload"]
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(r in ROLES for r in roles):
            raise Unauthenticated("invalid access token: malformed roles")
        return Caller(
            user_id=str(claims["sub"]),
            roles=frozenset(roles),
            token=token,
            expires_at=float(claims["exp"]),
        )

    def _evict(self, now: float) -> None:
        expired = [t for t, c in self._cache.items() if c.expires_at <= now]
        for t in expired:
            del self._cache[t]
        if len(self._cache) >= self._cache_size:
            self._cache.clear()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an `authorization: Bearer <token>` header, if any."""
    for key, value in metadata:
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization header must be 'Bearer <access token>'")
            return token.strip()
    return None


class Access(enum.Enum):
    PUBLIC = "public"
    SIGNED_IN = "signed-in"
    ROLE = "role"


@dataclass(frozen=True)
class Rule:
    """Who may call one method: anyone, any signed-in caller, or holders of given roles."""

    access: Access
    roles: frozenset[str] = frozenset()

    def admits(self, caller: Caller | None) -> None:
        if self.access is Access.PUBLIC:
            return
        if caller is None:
            raise Unauthenticated("this method needs an access token")
        if self.access is Access.ROLE and not (caller.roles & self.roles):
            needed = " or ".join(sorted(self.roles))
            raise PermissionDenied(f"this method needs the {needed} role")


PUBLIC = Rule(Access.PUBLIC)
SIGNED_IN = Rule(Access.SIGNED_IN)


def role(*roles: str) -> Rule:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")
    return Rule(Access.ROLE, frozenset(roles))


class Policy:
    """Per-method rules for one server. Every served method must have a rule: a method
    without one is refused at start-up, so a new RPC is never open by accident."""

    # Infrastructure services anyone may call (health checks, reflection for grpcurl).
    OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

    def __init__(self, rules: Mapping[str, Rule]) -> None:
        self._rules = dict(rules)

    def rule_for(self, method: str) -> Rule | None:
        rule = self._rules.get(method)
        if rule is None and method.startswith(self.OPEN_PREFIXES):
            return PUBLIC
        return rule

    def check_complete(self, methods: Iterable[str]) -> None:
        missing = sorted(m for m in methods if m not in self._rules)
        if missing:
            raise SystemExit(f"no access rule for: {', '.join(missing)}")
