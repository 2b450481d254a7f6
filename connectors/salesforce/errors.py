"""How Salesforce's failures map onto the sagesf error taxonomy (Retriable, Backpressure, Permanent).

What it owns: the classification, in one place, of
- a whole request's failure (`request_failure(status, body)`, `from_exception(exc)` for what
  requests, simple-salesforce and auth.py raise):
  403 REQUEST_LIMIT_EXCEEDED -> `RateLimited` (Backpressure: pause, lose nothing);
  5xx, 408, 429, timeouts, connection errors, a 401 the session could not cure, other 403s
  (permissions an admin must fix) and refused logins -> `SalesforceUnavailable` (Retriable: the
  records wait, the health endpoint says degraded);
  any other 4xx (unknown object or external ID field, malformed body) -> `SalesforceRecordError`
  for every record of that request (Permanent: dead-letter with Salesforce's errorCode/message);
- one record's failure inside a 200 answer (`record_failure(errors)`, the `errors` list of an
  sObject Collections result or a Bulk API 2.0 `sf__Error`): `SalesforceRecordError` with the
  first error's statusCode, message and fields, except the codes Salesforce documents as
  transient (UNABLE_TO_LOCK_ROW, SERVER_UNAVAILABLE, ...) -> Retriable, and a per-record
  REQUEST_LIMIT_EXCEEDED -> RateLimited.
`BudgetSpent` (Backpressure) is raised by budget.py when the integration's share of the daily
API limit is used up.

Limits: UNKNOWN_EXCEPTION on one record is treated as permanent (dead-lettered, replayable);
Salesforce sometimes means it as transient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import requests

from connectors.salesforce.auth import AuthenticationFailed
from sagesf.errors import Backpressure, Permanent, Retriable, SagesfError

__all__ = [
    "REQUEST_LIMIT_EXCEEDED",
    "TRANSIENT_RECORD_CODES",
    "BudgetSpent",
    "RateLimited",
    "SalesforceRecordError",
    "SalesforceUnavailable",
    "first_error",
    "from_exception",
    "record_failure",
    "request_failure",
]

REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
TRANSIENT_RECORD_CODES = frozenset(
    {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG", "TXN_SECURITY_METERING_ERROR"}
)


class SalesforceRecordError(Permanent):
    """Salesforce refused this record for good: its statusCode, message and the fields it named."""

    def __init__(self, status_code: str | None, message: str, fields: Sequence[str] = ()) -> None:
        reason = f"{status_code}: {message}" if status_code else message
        if fields:
            reason += f" (fields: {', '.join(fields)})"
        super().__init__(reason, field=fields[0] if fields else None)
        self.status_code = status_code
        self.message = message
        self.fields = list(fields)
        self.api: str | None = None  # COLLECTIONS or BULK once the writer knows which API refused it


class SalesforceUnavailable(Retriable):
    """Salesforce could not take the request now (5xx, timeout, network, auth); try again later."""


class RateLimited(Backpressure):
    """403 REQUEST_LIMIT_EXCEEDED: the org's limit (or a concurrency cap) refuses more requests."""

    reason = "rate_limit"


class BudgetSpent(Backpressure):
    """The integration used its configured share of the org's daily API limit."""

    reason = "budget"


def first_error(body: Any) -> tuple[str | None, str, list[str]]:
    """(errorCode, message, fields) of Salesforce's error body: a list of {errorCode|statusCode, message}."""
    items: Iterable[Any] = body if isinstance(body, list) else [body]
    for item in items:
        if isinstance(item, Mapping):
            code = item.get("errorCode") or item.get("statusCode") or item.get("error")
            message = item.get("message") or item.get("error_description") or ""
            fields = item.get("fields") or []
            return (
                str(code) if code else None,
                str(message),
                [str(f) for f in fields] if isinstance(fields, list) else [],
            )
    text = str(body or "").strip()
    return None, text[:500], []


def request_failure(status: int, body: Any, *, rate_limit_pause: float, what: str = "request") -> SagesfError:
    """The taxonomy error for a whole request that answered `status` with error body `body`."""
    code, message, fields = first_error(body)
    shown = f"{what}: HTTP {status} {code or ''} {message}".strip()
    if code == REQUEST_LIMIT_EXCEEDED:
        return RateLimited(shown, rate_limit_pause)
    if status >= 500 or status in (401, 403, 408, 429):
        return SalesforceUnavailable(shown)
    return SalesforceRecordError(code or f"HTTP_{status}", message or shown, fields)


def record_failure(errors: Sequence[Mapping[str, Any]], *, rate_limit_pause: float) -> SagesfError:
    """The taxonomy error for one record Salesforce did not write (its `errors` list)."""
    codes = [str(e.get("statusCode") or e.get("errorCode") or "") for e in errors]
    if REQUEST_LIMIT_EXCEEDED in codes:
        return RateLimited(f"record refused: {REQUEST_LIMIT_EXCEEDED}", rate_limit_pause)
    code, message, fields = first_error(list(errors)) if errors else (None, "no reason given", [])
    if code in TRANSIENT_RECORD_CODES:
        return SalesforceUnavailable(f"{code}: {message}")
    if len(errors) > 1:
        message += "; " + "; ".join(
            f"{e.get('statusCode') or e.get('errorCode')}: {e.get('message')}" for e in errors[1:]
        )
    return SalesforceRecordError(code, message, fields)


def from_exception(exc: BaseException, *, rate_limit_pause: float, what: str = "request") -> BaseException:
    """Classify what a Salesforce call raised; taxonomy errors and unknown exceptions pass through."""
    if isinstance(exc, SagesfError):
        return exc
    status = getattr(exc, "status", None)
    if isinstance(status, int) and hasattr(exc, "content"):  # simple-salesforce's SalesforceError
        return request_failure(status, exc.content, rate_limit_pause=rate_limit_pause, what=what)
    if isinstance(exc, requests.RequestException):
        return SalesforceUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, AuthenticationFailed):
        return SalesforceUnavailable(f"{what}: {exc}")
    return exc
