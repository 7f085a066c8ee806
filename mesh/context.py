"""Per-call state carried in context variables, so outgoing calls and log lines can see the
caller, the request id and the deadline without threading them through every function."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated principal, as proven by a verified access token."""

    user_id: str
    roles: frozenset[str]
    token: str
    expires_at: float
    # The sign-in session (refresh-token family) the token belongs to; revoking the session
    # revokes its access tokens. Empty for tokens minted before sessions were named.
    session_id: str = ""
    issued_at: float = 0.0

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


current_caller: ContextVar[Caller | None] = ContextVar("current_caller", default=None)
request_id: ContextVar[str] = ContextVar("request_id", default="")
# Absolute time.monotonic() by which the incoming call must finish; None when it has no deadline.
deadline: ContextVar[float | None] = ContextVar("deadline", default=None)
