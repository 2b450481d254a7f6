"""The API budget governor: the integration never uses more than its share of the daily API limit.

What it owns: the last reading of the org's API usage and the decision, before each call,
whether the call may be made. Salesforce answers every REST and Bulk call with
`Sforce-Limit-Info: api-usage=<used>/<max>` (used: requests in the rolling 24 hours, org-wide;
max: the daily limit). `ApiBudget.listener` reads it from every response the connection sees
(client.py `add_listener`); `check()` runs before each call and raises `BudgetSpent`
(Backpressure) once `used >= floor(share x max)`. Since the reading after call N is checked
before call N+1, the integration's own calls stop exactly at the budget.

When the budget is spent the consumer loop pauses and redelivers; only the rolling window can
free room, and Salesforce offers no free way to see that: the sole reading comes with a call.
So once the last reading is `recheck_seconds` old, `check()` lets one call through as a probe
(the sink's next real write, never an extra request); its answer is the new reading. While the
budget stays spent that is at most one call per `recheck_seconds` beyond the share (300 s: 288
calls a day, 0.3% of a 100,000 limit).

Limits: usage is org-wide, so other integrations' and users' calls count against our share too:
the governor keeps `1 - share` of the limit free for everyone else, not an exact per-integration
quota (Salesforce's per-app usage needs a connected-app setting and is not read here). Before the
first response of a process there is no reading and the first call goes through. Readings are
per process: a second sink replica reads the same header and stops at the same point.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from connectors.salesforce.errors import BudgetSpent
from connectors.salesforce.metrics import API_BUDGET, API_USAGE_LIMIT, API_USAGE_USED

__all__ = ["ApiBudget", "UsageReading", "parse_limit_info"]

LIMIT_INFO_HEADER = "Sforce-Limit-Info"
_API_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    """(used, max) from `api-usage=18/5000; per-app-api-usage=...`; None when absent."""
    if not header:
        return None
    found = _API_USAGE.search(header)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2))


@dataclass(frozen=True)
class UsageReading:
    used: int
    limit: int
    at: float  # monotonic time of the reading


class ApiBudget:
    def __init__(
        self, share: float, recheck_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.share = share
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self._reading: UsageReading | None = None
        self._probe_at: float | None = None
        self._lock = threading.Lock()

    @property
    def reading(self) -> UsageReading | None:
        return self._reading

    def allowed(self, limit: int) -> int:
        """The usage at which the integration stops: floor(share x limit)."""
        return math.floor(self.share * limit)

    def observe(self, used: int, limit: int) -> None:
        with self._lock:
            self._reading = UsageReading(used, limit, self.clock())
            self._probe_at = None
        API_USAGE_USED.set(used)
        API_USAGE_LIMIT.set(limit)
        API_BUDGET.set(self.allowed(limit))

    def listener(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        """For `SalesforceConnection.add_listener`: read Sforce-Limit-Info from every response."""
        usage = parse_limit_info(response.headers.get(LIMIT_INFO_HEADER))
        if usage is not None:
            self.observe(*usage)

    def check(self) -> None:
        """Return if one more call may be made now; raise BudgetSpent(retry_after) otherwise."""
        with self._lock:
            reading = self._reading
            if reading is None:
                return
            allowed = self.allowed(reading.limit)
            if reading.used < allowed:
                return
            now = self.clock()
            since = now - (self._probe_at if self._probe_at is not None else reading.at)
            if since >= self.recheck_seconds:
                self._probe_at = now  # this call is the probe; its answer is the next reading
                return
            wait = self.recheck_seconds - since
        raise BudgetSpent(
            f"API budget spent: the org used {reading.used} of {reading.limit} requests in 24 h and "
            f"the integration may use up to {allowed} ({self.share:.0%}); next check in {wait:.0f} s",
            wait,
        )
