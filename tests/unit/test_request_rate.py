"""connectors/sage100/request_rate.py: each Salesforce user's credit checks are counted on their own,
on a clock the test turns by hand."""

from __future__ import annotations

import pytest

from connectors.sage100.request_rate import RequesterRateLimit
from tests.unit.test_sage_availability import FakeClock as Clock


def test_a_requester_gets_the_burst_then_one_more_per_share_of_the_period() -> None:
    clock = Clock()
    limit = RequesterRateLimit(20, 60.0, clock)
    assert [limit.take("rep") for _ in range(21)] == [True] * 20 + [False]
    clock.t += 2.9  # one token takes 3 s at 20 a minute
    assert limit.take("rep") is False
    clock.t += 0.1
    assert limit.take("rep") is True
    assert limit.take("rep") is False


def test_one_requester_over_the_limit_does_not_hold_up_another() -> None:
    limit = RequesterRateLimit(3, 60.0, Clock())
    assert [limit.take("busy") for _ in range(4)] == [True, True, True, False]
    assert limit.take("other") is True


def test_a_token_given_back_can_be_spent_again_but_never_beyond_the_burst() -> None:
    limit = RequesterRateLimit(2, 60.0, Clock())
    assert [limit.take("rep") for _ in range(2)] == [True, True]
    limit.give_back("rep")
    assert limit.take("rep") is True
    assert limit.take("rep") is False
    limit.give_back("fresh")
    assert [limit.take("fresh") for _ in range(3)] == [True, True, False]


def test_idle_requesters_are_forgotten_and_come_back_with_a_full_bucket() -> None:
    clock = Clock()
    limit = RequesterRateLimit(1, 60.0, clock)
    for n in range(1024):
        limit.take(f"rep-{n}")
    clock.t += 60.0
    assert limit.take("newcomer") is True
    assert len(limit._buckets) == 1
    assert limit.take("rep-0") is True


@pytest.mark.parametrize(("rate", "period"), [(0, 60.0), (5, 0.0)])
def test_a_limit_that_lets_nothing_through_is_refused(rate: int, period: float) -> None:
    with pytest.raises(ValueError, match="rate >= 1 and period > 0"):
        RequesterRateLimit(rate, period)
