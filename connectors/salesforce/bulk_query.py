"""Reading Salesforce through Bulk API 2.0 query jobs, with rows shaped as REST queries return them.

What it owns: `BulkQuery`, the client of `jobs/query`: `start(soql)` creates a job, `wait(job)`
polls it until it finished, `page(job, locator)` reads one set of its CSV results and names the
next, `delete(job)` removes it. And `RecordShape`, which turns a CSV row (`{"Account.Name":
"Acme", "Amount": "12.5"}`) into the record a REST query would have returned for the same SELECT
(`{"Account": {"Name": "Acme"}, "Amount": 12.5}`): parents nested, an empty cell null, and each
value typed by the org's describe of its field (boolean, int, double, currency, percent; the
rest stays text), so that what is mapped from Bulk rows is exactly what is mapped from REST.

Every call asks the API budget first (budget.py) and goes through the shared connection
(client.py: our Sforce-Call-Options client, the token renewed on a 401, counted); failures are
classified by errors.py: REQUEST_LIMIT_EXCEEDED and the budget are Backpressure, 5xx, timeouts
and refused permissions Retriable, any other 4xx (a field the org does not have) a
`SalesforceRecordError` (Permanent). A job Salesforce fails or aborts raises `QueryJobFailed`
(Permanent) with its errorMessage.

How it resumes: a job's result sets stay readable by their locator as long as the job exists
(Salesforce keeps jobs for 7 days), so a caller stores (job ID, locator) with its checkpoint and
reads on from there; `JobGone` (Retriable) says the job is not there any more: start it again.

Why the endpoints are driven here rather than through simple-salesforce's `sf.bulk2`: as in
writer.py, each step must be a budgeted, classified call, and a job must be resumed by its ID
and locator, which `sf.bulk2.<Object>.query` neither keeps nor takes.

Limits: Bulk API 2.0 refuses parent-to-child subqueries, so children are queried apart
(connectors/salesforce/initial_load.py). Polymorphic references are typed by their first target.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from connectors.salesforce.budget import ApiBudget
from connectors.salesforce.client import SalesforceConnection
from connectors.salesforce.errors import SalesforceUnavailable, from_exception, request_failure
from sagesf.errors import Permanent, Retriable

log = logging.getLogger(__name__)

__all__ = ["BulkQuery", "JobGone", "QueryJobFailed", "RecordShape", "ResultSet"]

MAX_POLL_INTERVAL = 10.0
_NUMBERS: dict[str, Callable[[str], Any]] = {"int": int, "double": float, "currency": float, "percent": float}


class QueryJobFailed(Permanent):
    """Salesforce failed or aborted the query job: its errorMessage says why."""


class JobGone(Retriable):
    """The job is not there any more (deleted, or past Salesforce's 7 days): start it again."""


@dataclass(frozen=True)
class ResultSet:
    rows: list[dict[str, str]]  # column -> the CSV text (empty for null)
    next_locator: str | None  # None after the last set


class BulkQuery:
    """The `jobs/query` client (see the module doc)."""

    def __init__(
        self,
        connection: SalesforceConnection,
        budget: ApiBudget,
        *,
        rate_limit_pause: float = 60.0,
        poll_interval: float = 1.0,
        timeout: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = connection
        self.budget = budget
        self.rate_limit_pause = rate_limit_pause
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock

    def start(self, soql: str, *, include_deleted: bool = False) -> str:
        """Create a query job for `soql` (queryAll with `include_deleted`); its ID."""
        body = {"operation": "queryAll" if include_deleted else "query", "query": soql}
        info = self.call("POST", "jobs/query", json_body=body).json()
        return str(info["id"])

    def wait(self, job_id: str) -> Mapping[str, Any]:
        """The job's JobInfo once it completed (polled from `poll_interval`, doubling up to 10 s);
        `QueryJobFailed` when Salesforce failed or aborted it, Retriable when it takes too long."""
        started, interval = self.clock(), self.poll_interval
        while True:
            info: dict[str, Any] = self.call("GET", f"jobs/query/{job_id}").json()
            state = info.get("state")
            if state == "JobComplete":
                return info
            if state in ("Failed", "Aborted"):
                raise QueryJobFailed(
                    f"Bulk query job {job_id} {state}: {info.get('errorMessage') or 'no reason'}"
                )
            if self.clock() - started > self.timeout:
                raise SalesforceUnavailable(
                    f"Bulk query job {job_id} still {state} after {self.timeout:.0f} s"
                )
            self.sleep(interval)
            interval = min(interval * 2, MAX_POLL_INTERVAL)

    def page(self, job_id: str, locator: str = "", max_records: int = 10_000) -> ResultSet:
        """One set of a finished job's rows, from `locator` ("" for the first)."""
        params: dict[str, Any] = {"maxRecords": max_records}
        if locator:
            params["locator"] = locator
        response = self.call("GET", f"jobs/query/{job_id}/results", params=params, accept="text/csv")
        rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))
        following = response.headers.get("Sforce-Locator") or "null"
        return ResultSet(rows, None if following == "null" else following)

    def pages(
        self, job_id: str, locator: str = "", max_records: int = 10_000
    ) -> Iterator[tuple[ResultSet, str]]:
        """Every set from `locator` on, each with the locator it was read from."""
        current: str | None = locator
        while current is not None:
            found = self.page(job_id, current, max_records)
            yield found, current
            current = found.next_locator

    def delete(self, job_id: str) -> None:
        """Remove a finished job (its results go with it); one already gone is fine."""
        try:
            self.call("DELETE", f"jobs/query/{job_id}")
        except JobGone:
            return

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        accept: str = "application/json",
    ) -> requests.Response:
        """One API request through the connection's session, budgeted and classified."""
        self.budget.check()
        headers = {"Authorization": f"Bearer {self.conn.access_token}", "Accept": accept}
        what = f"Bulk query {method} {path}"
        try:
            response = self.conn.session.request(
                method, self.conn.base_url + path, headers=headers, json=json_body, params=params
            )
        except Exception as exc:
            error = from_exception(exc, rate_limit_pause=self.rate_limit_pause, what=what)
            if error is exc:
                raise
            raise error from exc
        if response.status_code == 404 and path.startswith("jobs/query/"):
            raise JobGone(f"{what}: the job is gone")
        if response.status_code >= 300:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text[:500]
            raise request_failure(
                response.status_code, body, rate_limit_pause=self.rate_limit_pause, what=what
            )
        return response


class RecordShape:
    """CSV rows of a query as the records REST returns for it (see the module doc).

    `describe(object)` answers the org's describe of an object (`sobjects/<Object>/describe`);
    each object is described once.
    """

    def __init__(self, describe: Callable[[str], Mapping[str, Any]]) -> None:
        self.describe = describe
        self._fields: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._converters: dict[tuple[str, str], Callable[[str], Any]] = {}

    def record(self, entity: str, row: Mapping[str, str]) -> dict[str, Any]:
        """One CSV row of a query on `entity` as a REST record (a parent with no value is null)."""
        record: dict[str, Any] = {"attributes": {"type": entity}}
        for column, text in row.items():
            value = None if text == "" else self._converter(entity, column)(text)
            *parents, name = column.split(".")
            container = record
            for parent in parents:
                nested = container.get(parent)
                if nested is None:
                    nested = container[parent] = {}
                container = nested
            container[name] = value
        return _nulled(record)

    def _converter(self, entity: str, column: str) -> Callable[[str], Any]:
        found = self._converters.get((entity, column))
        if found is None:
            kind = self._type(entity, column.split("."))
            found = self._converters[(entity, column)] = _converter(kind)
        return found

    def _type(self, entity: str, path: list[str]) -> str:
        fields = self._described(entity)
        if len(path) == 1:
            field = fields.get(path[0].lower())
            return str(field.get("type")) if field is not None else "string"
        hop = next(
            (f for f in fields.values() if str(f.get("relationshipName") or "").lower() == path[0].lower()),
            None,
        )
        targets = hop.get("referenceTo") if hop is not None else None
        if not targets:
            return "string"
        return self._type(str(targets[0]), path[1:])

    def _described(self, entity: str) -> dict[str, Mapping[str, Any]]:
        found = self._fields.get(entity)
        if found is None:
            fields = self.describe(entity).get("fields") or []
            found = self._fields[entity] = {str(f["name"]).lower(): f for f in fields}
        return found


def _converter(kind: str) -> Callable[[str], Any]:
    if kind == "boolean":
        return lambda text: text.lower() == "true"
    return _NUMBERS.get(kind, str)


def _nulled(record: dict[str, Any]) -> dict[str, Any]:
    """Parents whose every value is null become null, as REST answers an empty lookup."""
    for key, value in record.items():
        if isinstance(value, dict) and key != "attributes":
            inner = _nulled(value)
            record[key] = inner if any(v is not None for v in inner.values()) else None
    return record
