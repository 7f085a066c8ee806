"""Sign-in throttling in the state Valkey, shared by every replica (issue 10, item 2).

An attempt is counted before the password is checked, atomically (one Lua script), so a burst
of concurrent guesses cannot all slip past a check-then-act gap: at most `limit` attempts per
window ever reach the hash, and the rest are refused with RESOURCE_EXHAUSTED at once, costing
no CPU. Three fixed-window counters, each with its own limit:

- (account, client address): the hard limit, stops guessing from one place;
- the account from anywhere: higher, so a guesser cannot lock the owner out from home by
  failing five times elsewhere, yet a guesser spread over many addresses still stops;
- the client address over every account: the highest, stops password spraying.

A refused attempt increments nothing, so hammering a closed pair does not use up the account's
budget. A success refunds its attempt and forgets the pair's failures. Keys hold hashes of the
e-mail and address, never the values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as redis

from mesh.errors import ResourceExhausted

# KEYS: the counters; ARGV[1]: the window in seconds, ARGV[i + 1]: the limit of KEYS[i].
# Returns {0, 0} when admitted (every counter incremented), else {i, ttl} of the full counter.
_ADMIT = """
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= tonumber(ARGV[i + 1]) then
    return {i, redis.call('TTL', key)}
  end
end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1], 'NX')
end
return {0, 0}
"""

# KEYS: the counters of one admitted attempt; ARGV[1] == '1' forgets KEYS[1] (the pair).
# Decrements only live, positive counters, so a window that ended meanwhile stays ended.
_REFUND = """
for i, key in ipairs(KEYS) do
  if i == 1 and ARGV[1] == '1' then
    redis.call('DEL', key)
  elseif tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 0
"""

_REFUSALS = (
    "too many failed sign-ins from this address for this account",
    "too many failed sign-ins for this account",
    "too many failed sign-ins from this address",
)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Attempt:
    """The counters one admitted sign-in attempt incremented."""

    keys: tuple[str, str, str]


class LoginThrottle:
    def __init__(
        self,
        client: redis.Redis,
        *,
        pair_limit: int,
        account_limit: int,
        address_limit: int,
        window_seconds: int,
    ) -> None:
        self._admit = client.register_script(_ADMIT)
        self._refund = client.register_script(_REFUND)
        self._args = (window_seconds, pair_limit, account_limit, address_limit)

    async def admit(self, email: str, address: str) -> Attempt:
        """Count the attempt, or refuse it with RESOURCE_EXHAUSTED when a counter is full."""
        keys = (
            "login:pair:" + _digest(email, address),
            "login:account:" + _digest(email),
            "login:address:" + _digest(address),
        )
        full, ttl = await self._admit(keys=keys, args=self._args)
        if full:
            wait = max(1, int(ttl))
            raise ResourceExhausted(f"{_REFUSALS[int(full) - 1]}; try again in {wait} s")
        return Attempt(keys)

    async def succeeded(self, attempt: Attempt) -> None:
        """The owner proved the password: this was no guess, and the pair starts afresh."""
        await self._refund(keys=attempt.keys, args=("1",))

    async def not_checked(self, attempt: Attempt) -> None:
        """The password was never checked (hash pool full, database down): no guess spent."""
        await self._refund(keys=attempt.keys, args=("0",))
