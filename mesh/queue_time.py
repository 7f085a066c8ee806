"""How long a call waited before a handler took it, from the edge's arrival stamp, and when
that wait means the call should be refused.

A process that falls behind does not see its backlog: calls wait in grpc's core until the one
event loop takes them, and a handler meets each one as if it were new. Envoy stamps every
request it forwards with the time it arrived (`x-request-start: t=<epoch seconds>`, the
convention of Heroku and New Relic, overwriting whatever a client sent), and the interceptor
refuses a unary call that waited too long with RESOURCE_EXHAUSTED and RetryInfo, before any
work: under overload the process answers what it can in time and sheds the rest cheaply, with
a code clients retry, instead of making every caller wait seconds. Calls that did not come
through the edge carry no stamp and are never refused for their wait; nor are streams.

Too long is decided as in CoDel ("controlled delay", as Facebook's servers apply it to their
request queues): while some call in the last `interval` waited no more than `target`, the
queue drains and only a wait past `bound` is refused; once none has for a whole interval, the
queue is standing, and every call that waited past `target` is refused until one gets through
within it. A burst is absorbed; a sustained overload keeps the served calls' wait near
`target` instead of near `bound`.

The stamp is the request's first byte, so the wait includes the upload of its body: a call
gets its message's bytes at 100 kB/s (a slow mobile link) on top, and a 1 MiB quiz posted
over such a link is not refused for the time it took to send.
"""

from __future__ import annotations

from typing import Any

HEADER = "x-request-start"
# Envoy's request header value: seconds since the epoch, to the microsecond.
ENVOY_VALUE = "t=%START_TIME(%s.%6f)%"
# The slowest upload a caller is allowed without it counting as waiting.
UPLOAD_BYTES_PER_SECOND = 100_000


def waited_seconds(value: str | bytes, now: float) -> float | None:
    """Seconds from the stamp `value` to `now` (epoch seconds), or None when the stamp is not
    one Envoy writes. A stamp from the future (clocks of two hosts) counts as no wait."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not value.startswith("t="):
        return None
    try:
        start = float(value[2:])
    except ValueError:
        return None
    if start != start:  # NaN
        return None
    return max(0.0, now - start)


class WaitBound:
    """One process's decision on waits (seconds; `now` is a monotonic clock)."""

    def __init__(self, bound: float, target: float, interval: float) -> None:
        self.bound = bound
        self.target = min(target, bound)
        self.interval = interval
        self._calm_at = float("-inf")

    def refuse(self, waited: float, request: Any, now: float) -> bool:
        """Whether a unary call (its message or raw bytes) that waited `waited` is refused."""
        if waited <= self.target:
            self._calm_at = now
            return False
        size = len(request) if isinstance(request, bytes) else request.ByteSize()
        waited -= size / UPLOAD_BYTES_PER_SECOND
        if waited <= self.target:
            self._calm_at = now
            return False
        standing = now - self._calm_at >= self.interval
        return waited > (self.target if standing else self.bound)
