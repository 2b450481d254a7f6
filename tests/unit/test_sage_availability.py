"""The Sage 100 circuit breaker: closed -> open -> half-open -> closed, with growing backoff."""

from __future__ import annotations

import pytest

from connectors.sage100.availability import CircuitBreaker, CircuitOpen, CircuitState
from sagesf.errors import Permanent, Retriable
from sagesf.metrics import Health


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def failing() -> None:
    raise Retriable("database is locked")


def test_opens_after_threshold_waits_and_closes_on_a_good_trial():
    clock, health = FakeClock(), Health()
    breaker = CircuitBreaker(
        "t1", failure_threshold=3, initial_backoff=10, max_backoff=40, clock=clock, health=health
    )
    for _ in range(3):
        with pytest.raises(Retriable):
            breaker.call(failing)
    assert breaker.state is CircuitState.OPEN
    assert health.report()[0] == "degraded"
    calls = []
    with pytest.raises(CircuitOpen):  # no call reaches Sage while open
        breaker.call(lambda: calls.append(1))
    assert calls == []
    clock.t += 10.1
    with pytest.raises(Retriable):  # half-open trial fails: open again, longer wait
        breaker.call(failing)
    assert breaker.state is CircuitState.OPEN
    assert 15 <= breaker.wait_time() <= 20.1
    clock.t += 20.1
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state.name == "CLOSED"  # (by name: mypy narrowed the attribute above)
    assert health.report()[0] == "ok"
    assert breaker.transitions == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_a_refusal_is_an_answer_not_an_outage():
    breaker = CircuitBreaker("t2", failure_threshold=2, clock=FakeClock())
    with pytest.raises(Retriable):
        breaker.call(failing)

    def refuse() -> None:
        raise Permanent("ItemCode unknown")

    for _ in range(5):
        with pytest.raises(Permanent):
            breaker.call(refuse)
    with pytest.raises(Retriable):
        breaker.call(failing)
    assert breaker.state is CircuitState.CLOSED  # the refusals reset the count


def test_backoff_is_capped():
    clock = FakeClock()
    breaker = CircuitBreaker("t3", failure_threshold=1, initial_backoff=1, max_backoff=4, clock=clock)
    for _ in range(10):
        with pytest.raises(Retriable):
            breaker.call(failing)
        clock.t += breaker.wait_time() + 0.01
    assert breaker.wait_time() == 0.0
    with pytest.raises(Retriable):
        breaker.call(failing)
    assert breaker.wait_time() <= 4.0
