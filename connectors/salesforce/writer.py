"""Writing records to Salesforce: sObject Collections up to the bulk threshold, Bulk API 2.0 above.

What it owns: `SalesforceWriter.write(writes)` -> one outcome per `commands.Write`: `Written`
(record ID, created flag, which API) or the taxonomy error for that record (errors.py). Writes
are grouped by (operation, object, key field), in first-seen order; per group:
- up to `bulk_threshold` records (Salesforce advises Bulk 2.0 above about 2,000): sObject
  Collections, 200 records a request, `allOrNone: false`, through simple-salesforce's
  `restful`: UPDATE as `PATCH composite/sobjects` (records carry `attributes.type` and `Id`),
  UPSERT as `PATCH composite/sobjects/<Object>/<ExtIdField>`, INSERT as `POST composite/sobjects`
  (how platform event messages are published; never through Bulk). Salesforce answers one
  result per record, in order.
- above it: one Bulk API 2.0 ingest job (operation update or upsert with externalIdFieldName):
  create, upload the CSV, UploadComplete, poll (first after `poll_interval`, doubling up to 10 s),
  then read successfulResults (sf__Id, sf__Created) and failedResults (sf__Error `CODE:message:
  fields --`) only when the job's counts say there are any, matched back to records by the key
  column. In the CSV an empty cell leaves a field unchanged and `#N/A` clears it, which is exactly
  a partial update: a record that does not set a field leaves it as it is. A job that Salesforce
  fails as a whole (bad column) or that is aborted is written again through Collections, which
  reports per-record errors. Records a finished job did not process are Retriable.
Every request first asks the API budget (budget.py) and may raise BudgetSpent.

Failure handling: a request refused as a whole for a permanent reason (unknown object or external
ID field) fails just that request's records; Backpressure (REQUEST_LIMIT_EXCEEDED, budget) or a
Retriable failure (5xx, timeout) stops the write: records already written keep their outcome,
every record not yet written gets that error, so the consumer loop pauses or backs off and
handles only those again. A Bulk job interrupted that way is remembered by the fingerprint of its
CSV and resumed (not re-created) when the same records come back, so a storm in the middle of a
job writes nothing twice.

Why the Bulk endpoints are driven here and not through simple-salesforce's `sf.bulk2` (which
works against the emulator): each step must be a separately budgeted and classified call, an
interrupted job must be resumed by its ID (`sf.bulk2` loses it when a step raises, and aborts the
job), and results are needed only when counts say so.

Limits: jobs are remembered in memory only (a restart mid-job redelivers and re-creates the job:
the same values are written again, idempotently); one job per group, so at most 150 MB of CSV
(about 100,000 short records) per batch window; a string value that is exactly `#N/A` cannot
be written through Bulk (it means null).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from connectors.salesforce.budget import ApiBudget
from connectors.salesforce.client import SalesforceConnection
from connectors.salesforce.commands import FieldValue, Operation, Write, WriteApi
from connectors.salesforce.errors import (
    SalesforceRecordError,
    SalesforceUnavailable,
    from_exception,
    record_failure,
    request_failure,
)
from connectors.salesforce.metrics import RECORDS_PER_CALL, RECORDS_WRITTEN
from sagesf.errors import Backpressure, Permanent, Retriable

log = logging.getLogger(__name__)

__all__ = ["COLLECTION_SIZE", "SalesforceWriter", "WriteOutcome", "Written"]

COLLECTION_SIZE = 200
MAX_POLL_INTERVAL = 10.0
_REMEMBERED_JOBS = 100
BULK_NULL = "#N/A"


@dataclass(frozen=True)
class Written:
    record_id: str | None
    created: bool
    api: WriteApi


WriteOutcome = Written | BaseException


@dataclass
class _BulkJob:
    id: str
    stage: str  # created -> uploaded -> closed
    closed_at: float = 0.0


def _norm(operation: Operation, value: str) -> str:
    return value[:15] if operation is Operation.UPDATE else value.lower()


def _csv_value(value: FieldValue) -> str:
    if value is None or value == "":
        return BULK_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


def _by(error: BaseException, api: WriteApi) -> BaseException:
    """Note which API refused a record (its result says so)."""
    if isinstance(error, SalesforceRecordError):
        error.api = api.value
    return error


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _bulk_errors(text: str) -> list[dict[str, Any]]:
    """sf__Error `CODE:message:field1,field2 --` (several joined by spaces) as Collections errors."""
    errors: list[dict[str, Any]] = []
    for part in text.split(" --"):
        part = part.strip()
        if not part:
            continue
        code, _, rest = part.partition(":")
        message, sep, fields = rest.rpartition(":")
        if not sep:
            message, fields = rest, ""
        errors.append(
            {"statusCode": code, "message": message.strip(), "fields": [f for f in fields.split(",") if f]}
        )
    return errors or [{"statusCode": None, "message": text or "failed without a reason", "fields": []}]


class SalesforceWriter:
    def __init__(
        self,
        connection: SalesforceConnection,
        budget: ApiBudget,
        *,
        bulk_threshold: int = 2000,
        rate_limit_pause: float = 60.0,
        poll_interval: float = 1.0,
        bulk_timeout: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = connection
        self.budget = budget
        self.bulk_threshold = bulk_threshold
        self.rate_limit_pause = rate_limit_pause
        self.poll_interval = poll_interval
        self.bulk_timeout = bulk_timeout
        self.sleep = sleep
        self.clock = clock
        self._jobs: dict[str, _BulkJob] = {}

    # --- the batch ---------------------------------------------------------------------------

    def write(self, writes: Sequence[Write]) -> list[WriteOutcome]:
        """One outcome per write (see the module doc); never raises a taxonomy error."""
        outcomes: list[WriteOutcome | None] = [None] * len(writes)
        try:
            for group in self._groups(writes):
                if len(group) > self.bulk_threshold and writes[group[0]].operation is not Operation.INSERT:
                    self._bulk(writes, group, outcomes)
                else:
                    for start in range(0, len(group), COLLECTION_SIZE):
                        self._collection(writes, group[start : start + COLLECTION_SIZE], outcomes)
        except (Retriable, Backpressure) as stop:
            outcomes = [stop if o is None else o for o in outcomes]
        return [SalesforceUnavailable("not written") if o is None else o for o in outcomes]

    @staticmethod
    def _groups(writes: Sequence[Write]) -> list[list[int]]:
        groups: dict[tuple[str, str, str], list[int]] = {}
        for i, w in enumerate(writes):
            groups.setdefault((w.operation.value, w.sobject.lower(), w.key_field.lower()), []).append(i)
        return list(groups.values())

    @staticmethod
    def _fail_all(
        indexes: Sequence[int], outcomes: list[WriteOutcome | None], error: Permanent, api: WriteApi
    ) -> None:
        for i in indexes:
            outcomes[i] = _by(error, api)

    # --- sObject Collections -------------------------------------------------------------------

    def _collection(
        self, writes: Sequence[Write], indexes: Sequence[int], outcomes: list[WriteOutcome | None]
    ) -> None:
        first = writes[indexes[0]]
        inserting = first.operation is Operation.INSERT
        records = [
            {
                "attributes": {"type": writes[i].sobject},
                **({} if inserting else {writes[i].key_field: writes[i].key_value}),
                **writes[i].fields,
            }
            for i in indexes
        ]
        if first.operation is Operation.UPSERT:
            path = f"composite/sobjects/{first.sobject}/{first.key_field}"
        else:
            path = "composite/sobjects"
        method = "POST" if inserting else "PATCH"
        self.budget.check()
        try:
            answer = self.conn.sf.restful(path, method=method, json={"allOrNone": False, "records": records})
        except Exception as exc:
            error = from_exception(exc, rate_limit_pause=self.rate_limit_pause, what=f"{method} {path}")
            if isinstance(error, Permanent):
                self._fail_all(indexes, outcomes, error, WriteApi.COLLECTIONS)
                return
            if error is exc:
                raise
            raise error from exc
        RECORDS_PER_CALL.labels("collections").observe(len(indexes))
        if not isinstance(answer, list) or len(answer) != len(indexes):
            raise SalesforceUnavailable(
                f"{method} {path}: expected {len(indexes)} results, got {answer!r:.200}"
            )
        written = 0
        for i, result in zip(indexes, answer, strict=True):
            if isinstance(result, Mapping) and result.get("success"):
                record_id = result.get("id")
                outcomes[i] = Written(
                    str(record_id) if record_id else None, bool(result.get("created")), WriteApi.COLLECTIONS
                )
                written += 1
            else:
                errors = result.get("errors") if isinstance(result, Mapping) else None
                failure = record_failure(errors or [], rate_limit_pause=self.rate_limit_pause)
                outcomes[i] = _by(failure, WriteApi.COLLECTIONS)
        RECORDS_WRITTEN.labels("collections", first.sobject).inc(written)

    # --- Bulk API 2.0 ------------------------------------------------------------------------------

    def _bulk(
        self, writes: Sequence[Write], indexes: Sequence[int], outcomes: list[WriteOutcome | None]
    ) -> None:
        first = writes[indexes[0]]
        text = self._csv(writes, indexes)
        fingerprint = hashlib.sha256(
            f"{first.operation.value}|{first.sobject}|{first.key_field}|{text}".encode()
        ).hexdigest()
        try:
            info = self._run_job(first, text, fingerprint)
        except Permanent as error:  # the job itself was refused (unknown object, bad external ID field)
            self._jobs.pop(fingerprint, None)
            self._fail_all(indexes, outcomes, error, WriteApi.BULK)
            return
        job_id = str(info.get("id"))
        self._jobs.pop(fingerprint, None)
        if info.get("state") != "JobComplete":
            log.warning(
                "Bulk job %s ended %s (%s); writing its %d records through sObject Collections",
                job_id,
                info.get("state"),
                info.get("errorMessage") or "no message",
                len(indexes),
            )
            for start in range(0, len(indexes), COLLECTION_SIZE):
                self._collection(writes, indexes[start : start + COLLECTION_SIZE], outcomes)
            return
        RECORDS_PER_CALL.labels("bulk").observe(len(indexes))
        processed = int(info.get("numberRecordsProcessed") or 0)
        failed = int(info.get("numberRecordsFailed") or 0)
        by_key = {_norm(first.operation, writes[i].key_value): i for i in indexes}
        key_column = first.key_field
        written = 0
        if processed - failed > 0:
            for row in self._results(job_id, "successfulResults"):
                found = by_key.get(_norm(first.operation, row.get(key_column) or ""))
                if found is not None:
                    created = (row.get("sf__Created") or "").lower() == "true"
                    outcomes[found] = Written(row.get("sf__Id") or None, created, WriteApi.BULK)
                    written += 1
        if failed > 0:
            for row in self._results(job_id, "failedResults"):
                found = by_key.get(_norm(first.operation, row.get(key_column) or ""))
                if found is not None:
                    failure = record_failure(
                        _bulk_errors(row.get("sf__Error") or ""), rate_limit_pause=self.rate_limit_pause
                    )
                    outcomes[found] = _by(failure, WriteApi.BULK)
        RECORDS_WRITTEN.labels("bulk", first.sobject).inc(written)
        for i in indexes:
            if outcomes[i] is None:
                outcomes[i] = SalesforceUnavailable(f"Bulk job {job_id} did not process the record")

    def _csv(self, writes: Sequence[Write], indexes: Sequence[int]) -> str:
        first = writes[indexes[0]]
        columns: dict[str, str] = {}  # lower-case name -> header spelling
        for i in indexes:
            for name in writes[i].fields:
                columns.setdefault(name.lower(), name)
        names = sorted(columns)
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator="\n")
        out.writerow([first.key_field, *(columns[n] for n in names)])
        for i in indexes:
            w = writes[i]
            values = {name.lower(): value for name, value in w.fields.items()}
            out.writerow([w.key_value, *(_csv_value(values[n]) if n in values else "" for n in names)])
        return buffer.getvalue()

    def _run_job(self, first: Write, text: str, fingerprint: str) -> Mapping[str, Any]:
        """Create (or resume), upload, close and wait for the job; its final JobInfo."""
        job = self._jobs.get(fingerprint)
        if job is None:
            body: dict[str, Any] = {
                "object": first.sobject,
                "operation": "update" if first.operation is Operation.UPDATE else "upsert",
                "contentType": "CSV",
                "lineEnding": "LF",
                "columnDelimiter": "COMMA",
            }
            if first.operation is Operation.UPSERT:
                body["externalIdFieldName"] = first.key_field
            info = self._call("POST", "jobs/ingest", json_body=body).json()
            job = _BulkJob(str(info["id"]), "created")
            while len(self._jobs) >= _REMEMBERED_JOBS:
                self._jobs.pop(next(iter(self._jobs)))
            self._jobs[fingerprint] = job
        else:
            log.info("resuming Bulk job %s (%s)", job.id, job.stage)
        if job.stage == "created":
            self._call(
                "PUT",
                f"jobs/ingest/{job.id}/batches",
                data=text.encode(),
                content_type="text/csv",
                conflict_ok=True,  # a resumed job whose upload went through before the failure
            )
            job.stage = "uploaded"
        if job.stage == "uploaded":
            self._call(
                "PATCH", f"jobs/ingest/{job.id}", json_body={"state": "UploadComplete"}, conflict_ok=True
            )
            job.stage, job.closed_at = "closed", self.clock()
        interval = self.poll_interval
        while True:
            self.sleep(interval)
            info = self._call("GET", f"jobs/ingest/{job.id}").json()
            if info.get("state") in ("JobComplete", "Failed", "Aborted"):
                return dict(info)
            if self.clock() - job.closed_at > self.bulk_timeout:
                raise SalesforceUnavailable(
                    f"Bulk job {job.id} still {info.get('state')} after {self.bulk_timeout:.0f} s"
                )
            interval = min(interval * 2, MAX_POLL_INTERVAL)

    def _results(self, job_id: str, kind: str) -> list[dict[str, str]]:
        response = self._call("GET", f"jobs/ingest/{job_id}/{kind}", accept="text/csv")
        return list(csv.DictReader(io.StringIO(response.text, newline="")))

    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        conflict_ok: bool = False,
    ) -> requests.Response:
        """One Bulk API request through the connection's session (stamped, refreshed, watched)."""
        self.budget.check()
        headers = {
            "Authorization": f"Bearer {self.conn.access_token}",
            "Content-Type": content_type,
            "Accept": accept,
        }
        what = f"Bulk {method} {path}"
        try:
            response = self.conn.session.request(
                method, self.conn.base_url + path, headers=headers, json=json_body, data=data
            )
        except Exception as exc:
            error = from_exception(exc, rate_limit_pause=self.rate_limit_pause, what=what)
            if error is exc:
                raise
            raise error from exc
        if response.status_code == 409 and conflict_ok:
            return response
        if response.status_code >= 300:
            raise request_failure(
                response.status_code,
                _json_or_text(response),
                rate_limit_pause=self.rate_limit_pause,
                what=what,
            )
        return response
