"""How often one Salesforce user may ask for a credit check: `RequesterRateLimit`, used by the
credit responder (connectors/sage100/credit.py).

Why not a library: aiolimiter is asyncio-only and the sink loop is synchronous; `limits` would
fit but is not a dependency of the package, and what is needed here is one in-memory token
bucket per requester over a monotonic clock, with no storage to share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RequesterRateLimit"]

_PRUNE_AT = 1024  # requesters remembered before the idle ones are forgotten
_ROUNDING = 1e-9  # a token earned in several float steps may sum to 0.999...


@dataclass
class _Bucket:
    tokens: float
    at: float


class RequesterRateLimit:
    """At most `rate` requests per `period` seconds for each requester, as a token bucket.

    Each requester starts with `rate` tokens, spends one per request (`take`) and earns them back
    at `rate / period` a second: a burst of `rate` requests passes, after that one every
    `period / rate` seconds. `give_back` returns the token of a request that was not answered
    (Sage unavailable: the loop retries it, and a retry must not count twice).

    Limits: the buckets live in this process's memory. A restart, or the request partitions
    moving to another responder, gives every requester a full bucket again; requests are keyed by
    correlation ID, so with n responder processes one requester can get up to n times the rate.
    A requester idle long enough for a full bucket is forgotten, which changes nothing.
    """

    def __init__(self, rate: int, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 1 or period <= 0:
            raise ValueError(f"a rate limit needs rate >= 1 and period > 0, got {rate} per {period} s")
        self.rate = rate
        self.period = period
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, requester: str) -> bool:
        """Spend one of `requester`'s tokens; False (nothing spent) when there is none left."""
        bucket = self._refilled(requester)
        if bucket.tokens < 1 - _ROUNDING:
            return False
        bucket.tokens = max(0.0, bucket.tokens - 1)
        return True

    def give_back(self, requester: str) -> None:
        bucket = self._refilled(requester)
        bucket.tokens = min(float(self.rate), bucket.tokens + 1)

    def _refilled(self, requester: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(requester)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._forget_idle(now)
            bucket = self._buckets[requester] = _Bucket(float(self.rate), now)
        earned = (now - bucket.at) * self.rate / self.period
        bucket.tokens, bucket.at = min(float(self.rate), bucket.tokens + earned), now
        return bucket

    def _forget_idle(self, now: float) -> None:
        full_after = self.period  # an empty bucket is full again after one period
        for requester in [r for r, b in self._buckets.items() if now - b.at >= full_after]:
            del self._buckets[requester]
