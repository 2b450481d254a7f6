"""How long to wait before trying failed work again: exponential backoff with jitter.

Written here rather than taken from tenacity because the loops that use it do not retry a call:
they pause partitions, keep polling and report health while they wait, and only need the delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetriesExhausted", "RetryPolicy"]


class RetriesExhausted(RuntimeError):
    """A retriable failure outlasted `max_retry_seconds`; the work stays uncommitted."""


@dataclass
class RetryPolicy:
    """Delays `initial * 2**attempt`, capped at `maximum`, each scaled by a random 0.5-1.0."""

    initial: float = 0.2
    maximum: float = 30.0
    max_retry_seconds: float | None = None  # None: keep retrying (the health endpoint says degraded)

    def delay(self, attempt: int) -> float:
        base: float = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
