"""Access-token verification with the public key alone, and per-method access policy.

svc_user signs access tokens (EdDSA, RFC 9068 `typ: at+jwt`); every service verifies them here.
The algorithm is pinned, and issuer, audience, type and expiry are all checked, so `alg: none`,
an HS256 token keyed with the public key, a token signed by another key, or a token of another
type is refused. Verification costs about as much as an empty RPC (~125 µs), so a verified token
is cached in-process (a bounded LRU map) until it expires.

Time claims (`exp`, `nbf`, `iat`) are checked against the verifier's own clock with a small
leeway for clock skew between hosts, with PyJWT's semantics; one clock serves both the cache and
the checks, so a cached token expires exactly when a fresh one would be refused.

Revocation: a signed token cannot be recalled, so verifiers keep a short list of revoked
sign-in sessions (the `sid` claim) and of users whose every earlier token is revoked
(mesh.revocation feeds it from NATS). An entry is needed only while a token it covers could
still be live, so it is forgotten after the longest access-token lifetime this verifier accepts
(tokens that claim to live longer are refused), which bounds the memory.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
DEFAULT_LEEWAY_SECONDS = 30.0
DEFAULT_MAX_TTL_SECONDS = 3600
_REVOKED = "access token revoked (signed out); sign in again"


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    key = load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SystemExit(f"{path}: expected an Ed25519 public key")
    return key


class TokenVerifier:
    """Verifies access tokens, caches the outcome until each token's expiry, and refuses
    tokens of revoked sessions."""

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        *,
        cache_size: int = 50_000,
        leeway_seconds: float = DEFAULT_LEEWAY_SECONDS,
        max_ttl_seconds: float = DEFAULT_MAX_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = public_key
        self._cache: OrderedDict[str, Caller] = OrderedDict()
        self._cache_size = cache_size
        self._leeway = leeway_seconds
        self._max_ttl = max_ttl_seconds
        self._clock = clock
        # session id -> when the entry may be forgotten
        self._revoked_sessions: OrderedDict[str, float] = OrderedDict()
        # user id -> (revocation time, when the entry may be forgotten)
        self._revoked_users: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def revocation_memory_seconds(self) -> float:
        """How long a revocation matters: the longest a covered token can stay acceptable."""
        return self._max_ttl + self._leeway

    def verify(self, token: str) -> Caller:
        now = self._clock()
        cache = self._cache
        caller = cache.get(token)
        if caller is not None and caller.expires_at > now - self._leeway:
            cache.move_to_end(token)
        else:
            if caller is not None:
                del cache[token]
            caller = self._verify_signature(token, now)
            cache[token] = caller
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        if self._revoked_sessions or self._revoked_users:
            self._refuse_if_revoked(caller)
        return caller

    # -- revocation -----------------------------------------------------------------------

    def revoke_session(self, session_id: str, revoked_at: float) -> None:
        """Refuse every token of one sign-in session from now on."""
        forget_at = revoked_at + self.revocation_memory_seconds
        now = self._clock()
        _prune(self._revoked_sessions, now, lambda v: v)
        if forget_at > now:
            self._revoked_sessions[session_id] = forget_at
            self._revoked_sessions.move_to_end(session_id)

    def revoke_user(self, user_id: str, revoked_at: float) -> None:
        """Refuse every token of one user issued at or before `revoked_at` (seconds since the
        epoch, on svc_user's clock, like `iat`). `iat` has whole seconds, so a token minted in
        the same second just after the revocation is refused too; a retry a second later works."""
        forget_at = revoked_at + self.revocation_memory_seconds
        now = self._clock()
        _prune(self._revoked_users, now, lambda v: v[1])
        previous = self._revoked_users.get(user_id)
        if previous is not None and previous[0] >= revoked_at:
            return
        if forget_at > now:
            self._revoked_users[user_id] = (revoked_at, forget_at)
            self._revoked_users.move_to_end(user_id)

    def _refuse_if_revoked(self, caller: Caller) -> None:
        if caller.session_id and caller.session_id in self._revoked_sessions:
            raise Unauthenticated(_REVOKED)
        user = self._revoked_users.get(caller.user_id)
        if user is not None and caller.issued_at <= user[0]:
            raise Unauthenticated(_REVOKED)

    # -- signature and claims -------------------------------------------------------------

    def _verify_signature(self, token: str, now: float) -> Caller:
        try:
            decoded = jwt.decode_complete(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                # Time claims are checked below against this verifier's clock.
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid access token: {exc}") from None
        if decoded["header"].get("typ") != ACCESS_TOKEN_TYPE:
            raise Unauthenticated("invalid access token: not an access token")
        claims = decoded["payload"]
        exp, iat = self._check_times(claims, now)
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(r in ROLES for r in roles):
            raise Unauthenticated("invalid access token: malformed roles")
        sid = claims.get("sid", "")
        if not isinstance(sid, str):
            raise Unauthenticated("invalid access token: malformed sid")
        return Caller(
            user_id=str(claims["sub"]),
            roles=frozenset(roles),
            token=token,
            expires_at=float(exp),
            session_id=sid,
            issued_at=float(iat),
        )

    def _check_times(self, claims: dict[str, Any], now: float) -> tuple[int, int]:
        try:
            exp = int(claims["exp"])
            iat = int(claims["iat"])
            nbf = int(claims["nbf"]) if "nbf" in claims else None
        except (ValueError, TypeError, OverflowError):
            raise Unauthenticated("invalid access token: exp, iat, nbf must be integers") from None
        if exp <= now - self._leeway:
            raise Unauthenticated("access token expired; refresh it")
        if iat > now + self._leeway or (nbf is not None and nbf > now + self._leeway):
            raise Unauthenticated("invalid access token: not yet valid (check the clocks)")
        if exp - iat > self._max_ttl:
            # Revocation entries are kept only for max_ttl, so a longer-lived token could
            # outlive its revocation.
            raise Unauthenticated(
                f"invalid access token: lives longer than the {self._max_ttl:.0f} s accepted"
            )
        return exp, iat


def _prune(entries: OrderedDict[str, Any], now: float, forget_at: Callable[[Any], float]) -> None:
    """Drop entries from the oldest while they are past their time (amortised O(1))."""
    while entries:
        key, value = next(iter(entries.items()))
        if forget_at(value) > now:
            return
        del entries[key]


def parse_bearer(value: str | bytes) -> str:
    """The token of an `authorization` header value that must read `Bearer <token>`."""
    text = value.decode() if isinstance(value, bytes) else value
    scheme, _, token = text.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization header must be 'Bearer <access token>'")
    return token


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an `authorization: Bearer <token>` header, if any."""
    for key, value in metadata:
        if key == "authorization":
            return parse_bearer(value)
    return None


class Access(enum.Enum):
    PUBLIC = "public"
    OPTIONAL = "optional"
    SIGNED_IN = "signed-in"
    ROLE = "role"


@dataclass(frozen=True)
class Rule:
    """Who may call one method.

    - PUBLIC: anyone. The `authorization` header is not even read, so a stale or garbage
      bearer (a browser that attaches its token to every call) never breaks Login, Refresh,
      Logout or Register.
    - OPTIONAL: anyone; a caller that sends a token must send a valid one. A missing header
      means anonymous; a bad, expired or revoked token is refused with UNAUTHENTICATED rather
      than silently treated as anonymous, so the client learns to refresh instead of getting
      an answer meant for strangers.
    - SIGNED_IN: a valid access token is needed.
    - ROLE: a valid access token holding one of `roles`.
    """

    access: Access
    roles: frozenset[str] = frozenset()

    @property
    def reads_token(self) -> bool:
        return self.access is not Access.PUBLIC

    def admits(self, caller: Caller | None) -> None:
        if self.access is Access.PUBLIC or self.access is Access.OPTIONAL:
            return
        if caller is None:
            raise Unauthenticated("this method needs an access token")
        if self.access is Access.ROLE and not (caller.roles & self.roles):
            needed = " or ".join(sorted(self.roles))
            raise PermissionDenied(f"this method needs the {needed} role")


PUBLIC = Rule(Access.PUBLIC)
OPTIONAL = Rule(Access.OPTIONAL)
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

    def methods_reading_tokens(self) -> list[str]:
        """Methods whose rule verifies a token: they need the public key."""
        return sorted(m for m, r in self._rules.items() if r.reads_token)

    def check_complete(self, methods: Iterable[str]) -> None:
        missing = sorted(m for m in methods if m not in self._rules)
        if missing:
            raise SystemExit(f"no access rule for: {', '.join(missing)}")
