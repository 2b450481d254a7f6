"""What the Sage 100 connector does while Sage is unavailable: a circuit breaker with backoff.

Owns `CircuitBreaker` (closed / open / half-open), shared by the source's polls and the sink's
writes, and the metric and log line of each state change.

How it works: calls go through `breaker.call(fn)`. While closed, a `Retriable` failure (Sage
unavailable: driver error, database locked, timeout; see sage100.odbc) counts; after
`failure_threshold` failures in a row the breaker opens. While open, `call` raises `CircuitOpen`
(itself Retriable) at once, without touching Sage, until the current backoff has passed; then it
is half-open: the next call is a trial. A successful trial closes the breaker; a failed one opens
it again with the backoff doubled (with jitter, capped at `max_backoff`). Non-retriable errors
(Permanent: Sage refused the data) pass through and count as a success: Sage answered. Wrap
only calls to Sage: a Kafka failure inside `fn` would be blamed on Sage.

Each state change logs one line (WARNING when opening, INFO otherwise) and sets the gauge
`sagesf_sage_circuit_state{component}` (0 closed, 1 half-open, 2 open); every opening counts in
`sagesf_sage_circuit_opened_total{component}`. `health`, when given, is told Sage is down
(degraded) while the breaker is not closed.

Nothing is lost: the breaker only decides when to try; the caller keeps its position (the source
its watermark, the sink its uncommitted offsets) and repeats the same work after recovery.

Why not a library: the well-kept Python breakers (pybreaker, circuitbreaker) either count any
exception or have no half-open backoff growth and metrics hook; this is 100 lines we test.
Limits: one breaker is shared state for one thread (the source runs one poll at a time; give a
multi-threaded sink one breaker per connection or guard it).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import Enum
from typing import TypeVar

from prometheus_client import Counter, Gauge

from sagesf.errors import Retriable, SagesfError
from sagesf.metrics import Health

log = logging.getLogger(__name__)

__all__ = ["CIRCUIT_OPENED", "CIRCUIT_STATE", "CircuitBreaker", "CircuitOpen", "CircuitState"]

T = TypeVar("T")

CIRCUIT_STATE = Gauge(
    "sagesf_sage_circuit_state", "Sage 100 circuit breaker: 0 closed, 1 half-open, 2 open", ["component"]
)
CIRCUIT_OPENED = Counter(
    "sagesf_sage_circuit_opened_total", "Times the Sage 100 circuit breaker opened", ["component"]
)


class CircuitState(Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpen(Retriable):
    """Sage was unavailable and the breaker is waiting before the next trial."""

    def __init__(self, component: str, retry_in: float, cause: str) -> None:
        super().__init__(f"Sage 100 unavailable for {component}; next try in {retry_in:.1f} s ({cause})")
        self.retry_after = retry_in


class CircuitBreaker:
    def __init__(
        self,
        component: str,
        *,
        failure_threshold: int = 3,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        health: Health | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.component = component
        self.failure_threshold = failure_threshold
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.health = health
        self.clock = clock
        self.state = CircuitState.CLOSED
        self.failures = 0  # consecutive retriable failures while closed
        self.openings = 0  # consecutive openings since the last success: drives the backoff
        self.retry_at = 0.0
        self.last_error = ""
        self.transitions: list[tuple[CircuitState, CircuitState]] = []
        CIRCUIT_STATE.labels(component).set(CircuitState.CLOSED.value)

    # --- state changes -----------------------------------------------------------------------

    def _move(self, new: CircuitState, why: str) -> None:
        old, self.state = self.state, new
        if old is new:
            return
        was, now = old.name.lower().replace("_", "-"), new.name.lower().replace("_", "-")
        self.transitions.append((old, new))
        CIRCUIT_STATE.labels(self.component).set(new.value)
        if new is CircuitState.OPEN:
            CIRCUIT_OPENED.labels(self.component).inc()
            log.warning(
                "Sage 100 circuit for %s %s -> open, next try in %.1f s: %s",
                self.component,
                was,
                self.retry_at - self.clock(),
                why,
            )
        else:
            log.info(
                "Sage 100 circuit for %s %s -> %s: %s",
                self.component,
                was,
                now,
                why,
            )
        if self.health is not None:
            self.health.dependency(
                "sage100", new is CircuitState.CLOSED, "" if new is CircuitState.CLOSED else why
            )

    def _backoff(self) -> float:
        base: float = min(self.max_backoff, self.initial_backoff * (2 ** min(self.openings - 1, 30)))
        return base * (0.75 + random.random() / 4)  # noqa: S311 - jitter, not security

    def record_failure(self, error: BaseException) -> None:
        self.last_error = str(error)
        if self.state is CircuitState.HALF_OPEN:
            self.openings += 1
            self.retry_at = self.clock() + self._backoff()
            self._move(CircuitState.OPEN, f"trial failed: {error}")
            return
        self.failures += 1
        if self.state is CircuitState.CLOSED and self.failures >= self.failure_threshold:
            self.openings += 1
            self.retry_at = self.clock() + self._backoff()
            self._move(CircuitState.OPEN, f"{self.failures} failures in a row, last: {error}")

    def record_success(self) -> None:
        self.failures = 0
        self.openings = 0
        if self.state is not CircuitState.CLOSED:
            self._move(CircuitState.CLOSED, "Sage 100 answered again")

    def allow(self) -> bool:
        """Whether a call may go to Sage now (moves open -> half-open when the wait is over)."""
        if self.state is CircuitState.OPEN:
            if self.clock() < self.retry_at:
                return False
            self._move(CircuitState.HALF_OPEN, "trying Sage 100 again")
        return True

    def wait_time(self) -> float:
        """Seconds until the next call may go to Sage (0 when it may go now)."""
        if self.state is CircuitState.OPEN:
            return max(0.0, self.retry_at - self.clock())
        return 0.0

    # --- calls -------------------------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` if the breaker allows it; count its Retriable failures; re-raise them."""
        if not self.allow():
            raise CircuitOpen(self.component, self.wait_time(), self.last_error)
        try:
            result = fn()
        except Retriable as exc:
            self.record_failure(exc)
            raise
        except SagesfError:
            self.record_success()  # Sage answered, it refused the data: it is available
            raise
        self.record_success()
        return result
