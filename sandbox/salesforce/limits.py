"""The daily API request limit and the injectable faults that make the emulator misbehave on purpose.

What it owns:
- `ApiUsage`: the rolling 24-hour count of REST API requests (every authenticated request under
  `/services/data/vNN.N/`, Bulk API 2.0 included; OAuth, CometD and the admin API are not counted,
  as in Salesforce). Requests are counted in one-minute buckets persisted in the emulator's SQLite
  file, so the count survives a restart. Beyond the limit, requests are refused with 403
  REQUEST_LIMIT_EXCEEDED and not counted.
- `Faults`: what the admin API switches on: a rate-limit storm (every REST request refused with
  403 REQUEST_LIMIT_EXCEEDED for N seconds), the next N REST requests failing with 500
  UNKNOWN_EXCEPTION or 503 SERVER_UNAVAILABLE, added latency per REST request, query refusals
  (every query of one object answering 403 INSUFFICIENT_ACCESS, as when the integration user lost
  its permission, or 400 INVALID_FIELD, as when a field it reads was deleted) and records hidden
  from one user's queries (as sharing hides them; rest.py applies both).

Limits: the window slides by whole minutes; the concurrent long-request limit (25 requests over
20 s) and per-app usage (`per-app-api-usage`) are not emulated.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

WINDOW_MINUTES = 24 * 60

USAGE_SQL = "CREATE TABLE IF NOT EXISTS api_usage (minute INTEGER PRIMARY KEY, count INTEGER NOT NULL);"

QUERY_REFUSALS = ("INSUFFICIENT_ACCESS", "INVALID_FIELD")  # 403, 400
LIMIT_EXCEEDED = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
UNKNOWN_EXCEPTION = [
    {
        "message": "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1234567890-12345 (-1234567890)",
        "errorCode": "UNKNOWN_EXCEPTION",
    }
]
SERVER_UNAVAILABLE = [
    {"message": "Server temporarily unavailable, please try again later.", "errorCode": "SERVER_UNAVAILABLE"}
]


class ApiUsage:
    def __init__(self, db: sqlite3.Connection, limit: int) -> None:
        self.db = db
        self.limit = limit
        self.db.executescript(USAGE_SQL)
        self._buckets: dict[int, int] = dict(
            self.db.execute("SELECT minute, count FROM api_usage").fetchall()
        )
        self._prune(self._minute())

    @staticmethod
    def _minute() -> int:
        return int(time.time() // 60)

    def _prune(self, minute: int) -> None:
        oldest = minute - WINDOW_MINUTES + 1
        stale = [m for m in self._buckets if m < oldest]
        for m in stale:
            del self._buckets[m]
        if stale:
            self.db.execute("DELETE FROM api_usage WHERE minute < ?", (oldest,))

    def used(self) -> int:
        self._prune(self._minute())
        return sum(self._buckets.values())

    def exhausted(self) -> bool:
        return self.used() >= self.limit

    def count(self) -> int:
        """Count one request; returns the usage including it."""
        minute = self._minute()
        self._buckets[minute] = self._buckets.get(minute, 0) + 1
        self.db.execute(
            "INSERT INTO api_usage (minute, count) VALUES (?, 1)"
            " ON CONFLICT(minute) DO UPDATE SET count = count + 1",
            (minute,),
        )
        return self.used()

    def set_used(self, used: int) -> None:
        """Pretend `used` requests were made in the current minute (and none before)."""
        self._buckets = {self._minute(): used} if used > 0 else {}
        self.db.execute("DELETE FROM api_usage")
        if used > 0:
            self.db.execute("INSERT INTO api_usage (minute, count) VALUES (?, ?)", (self._minute(), used))

    def header(self) -> str:
        return f"api-usage={self.used()}/{self.limit}"


@dataclass
class Faults:
    storm_until: float = 0.0
    fail_next: int = 0
    fail_status: int = 500
    latency_seconds: float = 0.0
    query_refusals: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # object -> code, field
    hidden: dict[str, set[str]] = field(default_factory=dict)  # user id -> record ids it cannot see

    def storming(self) -> bool:
        return time.monotonic() < self.storm_until

    def take_failure(self) -> int | None:
        """The status to fail this request with, if failures are queued."""
        if self.fail_next <= 0:
            return None
        self.fail_next -= 1
        return self.fail_status

    def query_refusal(self, sobject: str) -> tuple[str, str | None] | None:
        """(errorCode, field) every query of `sobject` answers now, if refused."""
        return self.query_refusals.get(sobject)

    def hidden_from(self, user_id: str) -> frozenset[str]:
        return frozenset(self.hidden.get(user_id, ()))

    def clear(self) -> None:
        self.storm_until = 0.0
        self.fail_next = 0
        self.fail_status = 500
        self.latency_seconds = 0.0
        self.query_refusals.clear()
        self.hidden.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "storm_seconds_left": max(0.0, round(self.storm_until - time.monotonic(), 3)),
            "fail_next": self.fail_next,
            "fail_status": self.fail_status,
            "latency_ms": round(self.latency_seconds * 1000),
            "query_refusals": {name: code for name, (code, _) in self.query_refusals.items()},
            "hidden_records": {user: len(ids) for user, ids in self.hidden.items()},
        }
