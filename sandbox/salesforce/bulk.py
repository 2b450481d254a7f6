"""Bulk API 2.0 jobs: ingest (create, upload CSV, UploadComplete, poll, read results) and query.

What it owns, under /services/data/vNN.N/jobs/ingest (`BulkIngest`):
- `POST` creates a job (`object`, `operation` insert|update|upsert|delete|hardDelete,
  `externalIdFieldName` for upsert, `contentType` CSV, `columnDelimiter`, `lineEnding`) and answers
  its JobInfo with state Open and a `contentUrl`; `GET` lists jobs;
- `PUT <id>/batches` uploads the CSV (201; one upload per job, while Open);
- `PATCH <id>` with `{"state": "UploadComplete"}` queues the job, `{"state": "Aborted"}` aborts it;
- `GET <id>` polls: UploadComplete -> InProgress -> JobComplete (or Failed with `errorMessage`
  when the CSV header names an unknown field), with numberRecordsProcessed/Failed;
- `GET <id>/successfulResults` (`sf__Id`, `sf__Created`, the uploaded columns),
  `<id>/failedResults` (`sf__Id`, `sf__Error` as `CODE:message:fields --`, the columns),
  `<id>/unprocessedrecords`; `DELETE <id>` removes a finished job.

CSV follows Bulk API rules: an empty value leaves a field unchanged, `#N/A` sets it to null,
`Account.ExternalID__c` columns set a parent by external ID. Records are processed in chunks of
200, each chunk one transaction (one SQLite commit, one CDC transaction key) with allOrNone false,
yielding to other requests between chunks. Jobs and their results are kept in the emulator's
SQLite file, so they survive a restart (a job interrupted mid-way is marked Failed).

And under /services/data/vNN.N/jobs/query (`BulkQuery`), Salesforce's query jobs:
- `POST` with `{"operation": "query" | "queryAll", "query": SOQL, "columnDelimiter",
  "lineEnding"}` checks the query as a job would run it (400 with the SOQL error code: unknown
  field, malformed query; a parent-to-child subquery, an aggregate, FIELDS() or OFFSET, which
  Bulk API 2.0 refuses) and answers the JobInfo (`jobType` V2Query) in state UploadComplete; the
  job then runs as the caller (records hidden from that user stay hidden): InProgress, then
  JobComplete with `numberRecordsProcessed`;
- `GET <id>` polls; `GET` lists the query jobs; `PATCH <id>` `{"state": "Aborted"}` aborts one
  not finished; `DELETE <id>` deletes one (204);
- `GET <id>/results[?locator=&maxRecords=]` reads a finished job's rows as CSV (412
  JOB_NOT_COMPLETE before; 409 when asked with another API version than the job's): the columns
  in the order selected, parent fields as `Account.Name`, a header row on every set, every value
  quoted and null as an empty unquoted cell, datetimes as `2024-01-31T12:00:00.000Z`. A set holds
  at most `maxRecords` rows (default 100,000); `Sforce-NumberOfRecords` counts them and
  `Sforce-Locator` names the next set (the offset, base64, as Salesforce's pseudo-random
  locators look) or is `null` after the last one. A locator stays valid as long as its job.
Every call counts against the daily API limit like any REST call (the gate in app.py).

Limits: no Bulk API 1.0, no parallel processing, no retries, no `assignmentRuleId`; hardDelete
soft-deletes like delete. An external ID that appears on several rows of one upsert job fails
every such row with DUPLICATE_EXTERNAL_ID. A query job runs at once and in one piece (no PK
chunking), holds its whole result in the SQLite file until deleted (no 7-day expiry), and ORDER
BY and LIMIT work (Salesforce discourages them there).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
import json
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from aiohttp import web

from sandbox.salesforce import ids
from sandbox.salesforce.metadata import FieldDef, ObjectDef
from sandbox.salesforce.org import NOT_FOUND, USER_ID, Org, RestFailure, call_options_client
from sandbox.salesforce.records import Transaction
from sandbox.salesforce.values import ApiError, RecordError, format_datetime, now_utc, parse_datetime

CHUNK = 200
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
JOBS_SQL = """
CREATE TABLE IF NOT EXISTS bulk_jobs (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    upload TEXT,
    successful TEXT,
    failed TEXT,
    unprocessed TEXT
);
"""


@dataclass(kw_only=True)
class _Job:
    """What an ingest and a query job share: their fields and most of their job info."""

    job_type: ClassVar[str]
    id: str
    operation: str
    object: str
    createdById: str
    createdDate: str
    systemModstamp: str
    apiVersion: float
    lineEnding: str = "LF"
    columnDelimiter: str = "COMMA"
    state: str = "Open"
    numberRecordsProcessed: int = 0
    totalProcessingTime: int = 0
    errorMessage: str | None = None

    def info(self, full: bool = True) -> dict[str, Any]:
        """The job info Salesforce answers (brief in a listing, `full` for one job)."""
        return self._info(full)

    def _info(self, full: bool, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.createdById,
            "createdDate": self.createdDate,
            "systemModstamp": self.systemModstamp,
            "state": self.state,
            **extra,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.apiVersion,
            "jobType": self.job_type,
            "lineEnding": self.lineEnding,
            "columnDelimiter": self.columnDelimiter,
        }
        if full:
            body.update(
                numberRecordsProcessed=self.numberRecordsProcessed,
                retries=0,
                totalProcessingTime=self.totalProcessingTime,
            )
            if self.errorMessage:
                body["errorMessage"] = self.errorMessage
        return body


@dataclass(kw_only=True)
class IngestJob(_Job):
    job_type: ClassVar[str] = "V2Ingest"
    externalIdFieldName: str | None
    numberRecordsFailed: int = 0
    originClient: str | None = None
    uploaded: bool = False
    results: dict[str, str] = field(default_factory=dict)

    def info(self, full: bool = True) -> dict[str, Any]:
        body = self._info(full, externalIdFieldName=self.externalIdFieldName)
        if full:
            body.update(
                numberRecordsFailed=self.numberRecordsFailed,
                apiActiveProcessingTime=self.totalProcessingTime,
                apexProcessingTime=0,
            )
        return body


def _invalid_job(message: str) -> RestFailure:
    return RestFailure(400, ApiError("INVALIDJOB", message))


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise _invalid_job("The request body must be JSON") from None


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise _invalid_job("The request body must be a JSON object")
    return body


def _csv_format(body: dict[str, Any]) -> tuple[str, str]:
    """(columnDelimiter, lineEnding) of a job request; CSV is the only content type."""
    delimiter = str(body.get("columnDelimiter", "COMMA"))
    line_ending = str(body.get("lineEnding", "LF"))
    if delimiter not in DELIMITERS or line_ending not in ("LF", "CRLF"):
        raise _invalid_job("Invalid columnDelimiter or lineEnding")
    if str(body.get("contentType", "CSV")) != "CSV":
        raise _invalid_job("Only CSV content is supported")
    return delimiter, line_ending


J = TypeVar("J", bound=_Job)


class _Jobs(Generic[J]):
    """What ingest and query jobs share: the jobs by ID, the tasks that run them, the listing."""

    def __init__(self) -> None:
        self.jobs: dict[str, J] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _listing(self, method: str) -> web.Response:
        """`GET jobs/<kind>`: every job in brief (POST creates one; other methods are refused)."""
        if method != "GET":
            raise RestFailure(
                405,
                ApiError("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,POST"),
            )
        jobs = [j.info(full=False) for j in self.jobs.values()]
        return web.json_response({"done": True, "records": jobs, "nextRecordsUrl": None})

    def _job(self, job_id: str) -> J:
        job = self.jobs.get(job_id)
        if job is None:
            raise RestFailure(404, ApiError("NOT_FOUND", "The requested resource does not exist"))
        return job


class BulkIngest(_Jobs[IngestJob]):
    def __init__(self, org: Org) -> None:
        super().__init__()
        self.org = org
        self.db = org.store.db
        self.db.executescript(JOBS_SQL)
        self._uploads: dict[str, str] = {}
        for job_id, info, upload, successful, failed, unprocessed in self.db.execute(
            "SELECT id, info, upload, successful, failed, unprocessed FROM bulk_jobs"
        ):
            job = IngestJob(**json.loads(info))
            job.results = {
                "successfulResults": successful or "",
                "failedResults": failed or "",
                "unprocessedrecords": unprocessed or "",
            }
            if job.state in ("UploadComplete", "InProgress"):
                job.state, job.errorMessage = (
                    "Failed",
                    "InternalServerError : the emulator restarted during the job",
                )
                self._save(job)
            self.jobs[job_id] = job
            if upload:
                self._uploads[job_id] = upload

    def _save(self, job: IngestJob) -> None:
        info = {k: v for k, v in asdict(job).items() if k != "results"}
        self.db.execute(
            "INSERT OR REPLACE INTO bulk_jobs (id, info, upload, successful, failed, unprocessed)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                job.id,
                json.dumps(info),
                self._uploads.get(job.id),
                job.results.get("successfulResults"),
                job.results.get("failedResults"),
                job.results.get("unprocessedrecords"),
            ),
        )

    # ---- HTTP -------------------------------------------------------------------------------------
    async def handle(self, request: web.Request, version: str, path: list[str]) -> web.StreamResponse:
        method = request.method
        if not path:
            if method == "POST":
                return await self._create(request, version)
            return self._listing(method)
        job = self._job(path[0])
        if len(path) == 1:
            if method == "GET":
                return web.json_response(job.info())
            if method == "PATCH":
                return await self._set_state(request, job)
            if method == "DELETE":
                if job.state in ("Open", "UploadComplete", "InProgress"):
                    raise RestFailure(
                        400, ApiError("INVALIDJOBSTATE", f"Job {job.id} is {job.state}: abort it first")
                    )
                del self.jobs[job.id]
                self._uploads.pop(job.id, None)
                self.db.execute("DELETE FROM bulk_jobs WHERE id = ?", (job.id,))
                return web.Response(status=204)
        if len(path) == 2 and path[1] == "batches" and method == "PUT":
            return await self._upload(request, job)
        if (
            len(path) == 2
            and path[1] in ("successfulResults", "failedResults", "unprocessedrecords")
            and method == "GET"
        ):
            if path[1] != "unprocessedrecords" and job.state not in ("JobComplete", "Failed", "Aborted"):
                raise RestFailure(400, ApiError("INVALIDJOBSTATE", f"Job {job.id} is not complete"))
            return web.Response(text=job.results.get(path[1], ""), content_type="text/csv", charset="utf-8")
        raise RestFailure(404, NOT_FOUND)

    async def _create(self, request: web.Request, version: str) -> web.Response:
        body = await _json_object(request)
        obj = self.org.schema.get(str(body.get("object", "")))
        if obj is None or obj.is_event or obj.read_only:
            raise _invalid_job(f"Unable to find object: {body.get('object')}")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise _invalid_job(f"Invalid operation: {operation}")
        delimiter, line_ending = _csv_format(body)
        ext_name = body.get("externalIdFieldName")
        if operation == "upsert":
            if not ext_name:
                raise _invalid_job(
                    f"External ID was blank for {obj.name}. An External ID must be specified for upsert."
                )
            ext = obj.find_field(str(ext_name))
            if ext is None or not (ext.indexed or ext.name == "Id"):
                raise _invalid_job(f"The field {ext_name} is not an external ID field of {obj.name}")
            ext_name = ext.name
        stamp = format_datetime(now_utc())
        job = IngestJob(
            id=ids.make_id("750", self.org.store.next_number("750")),
            object=obj.name,
            operation=str(operation),
            externalIdFieldName=str(ext_name) if operation == "upsert" else None,
            createdById=request[USER_ID],
            createdDate=stamp,
            systemModstamp=stamp,
            apiVersion=float(version),
            lineEnding=line_ending,
            columnDelimiter=delimiter,
            originClient=call_options_client(request),
        )
        self.jobs[job.id] = job
        self._save(job)
        info = job.info(full=False)
        info["contentUrl"] = f"services/data/v{version}/jobs/ingest/{job.id}/batches"
        return web.json_response(info)

    async def _upload(self, request: web.Request, job: IngestJob) -> web.Response:
        if job.state != "Open" or job.uploaded:
            raise RestFailure(
                409, ApiError("INVALIDJOBSTATE", f"Job {job.id} does not accept data (state {job.state})")
            )
        self._uploads[job.id] = await request.text()
        job.uploaded = True
        self._save(job)
        return web.Response(status=201)

    async def _set_state(self, request: web.Request, job: IngestJob) -> web.Response:
        body = await _json_body(request)
        state = body.get("state") if isinstance(body, dict) else None
        if state == "UploadComplete":
            if job.state != "Open":
                raise RestFailure(409, ApiError("INVALIDJOBSTATE", f"Job {job.id} is {job.state}, not Open"))
            if not job.uploaded:
                job.state, job.errorMessage = "Failed", "InvalidBatch : No data was uploaded"
            else:
                job.state = "UploadComplete"
                self._start(self._process(job))
        elif state == "Aborted":
            if job.state in ("JobComplete", "Failed"):
                raise RestFailure(409, ApiError("INVALIDJOBSTATE", f"Job {job.id} is already {job.state}"))
            job.state = "Aborted"
        else:
            raise _invalid_job(f"Invalid state: {state}")
        job.systemModstamp = format_datetime(now_utc())
        self._save(job)
        return web.json_response(job.info(full=False))

    # ---- processing -------------------------------------------------------------------------------
    def _columns(
        self, obj: ObjectDef, header: list[str]
    ) -> list[tuple[str, FieldDef | None, FieldDef | None]]:
        """(column, field, parent external-ID field) per header column; ApiError for an unknown one."""
        columns: list[tuple[str, FieldDef | None, FieldDef | None]] = []
        for column in header:
            name = column.strip()
            if "." in name:
                relationship, _, ext_name = name.partition(".")
                ref = obj.parent_field(relationship)
                parent = self.org.schema.objects.get(ref.reference_to) if ref and ref.reference_to else None
                ext = parent.find_field(ext_name) if parent else None
                if ref is None or ext is None or not ext.indexed:
                    raise ApiError("InvalidBatch", f"Field name not found : {name}")
                columns.append((name, ref, ext))
                continue
            f = obj.find_field(name)
            if f is None:
                raise ApiError("InvalidBatch", f"Field name not found : {name}")
            columns.append((name, f, None))
        return columns

    async def _process(self, job: IngestJob) -> None:
        started = time.monotonic()
        await asyncio.sleep(0)
        job.state = "InProgress"
        self._save(job)
        obj = self.org.schema.objects[job.object]
        text = self._uploads.get(job.id, "")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[job.columnDelimiter])
        rows = [row for row in reader if row]
        if not rows:
            self._fail(job, "InvalidBatch : No data was uploaded")
            return
        header, data = rows[0], rows[1:]
        try:
            columns = self._columns(obj, header)
            key_column = self._key_column(job, obj, columns)
        except ApiError as err:
            self._fail(job, f"{err.error_code} : {err.message}")
            return
        successes: list[list[str]] = []
        failures: list[list[str]] = []
        duplicates = self._duplicates(data, key_column) if job.operation == "upsert" else set()
        for start in range(0, len(data), CHUNK):
            if job.state == "Aborted":
                job.results["unprocessedrecords"] = _csv([header, *data[start:]])
                break
            tx = self.org.store.begin(job.createdById, job.originClient, "bulkapi", f"{job.apiVersion:.1f}")
            for row in data[start : start + CHUNK]:
                point = tx.savepoint()
                try:
                    record_id, created = self._apply_row(tx, job, obj, columns, key_column, row, duplicates)
                except RecordError as err:
                    tx.rollback_to(point)
                    known = row[key_column] if key_column is not None and job.operation != "upsert" else ""
                    error = " ".join(
                        f"{e.error_code}:{e.message}:{','.join(e.fields)} --" for e in err.errors
                    )
                    failures.append([known, error, *row])
                    continue
                successes.append([record_id, "true" if created else "false", *row])
            self.org.commit_and_publish(tx.commit())
            job.numberRecordsProcessed = len(successes) + len(failures)
            job.numberRecordsFailed = len(failures)
            await asyncio.sleep(0)
        job.results["successfulResults"] = _csv([["sf__Id", "sf__Created", *header], *successes])
        job.results["failedResults"] = _csv([["sf__Id", "sf__Error", *header], *failures])
        job.results.setdefault("unprocessedrecords", _csv([header]))
        if job.state != "Aborted":
            job.state = "JobComplete"
        job.totalProcessingTime = int((time.monotonic() - started) * 1000)
        job.systemModstamp = format_datetime(now_utc())
        self._save(job)

    def _fail(self, job: IngestJob, message: str) -> None:
        job.state, job.errorMessage = "Failed", message
        job.systemModstamp = format_datetime(now_utc())
        self._save(job)

    @staticmethod
    def _key_column(
        job: IngestJob, obj: ObjectDef, columns: list[tuple[str, FieldDef | None, FieldDef | None]]
    ) -> int | None:
        wanted = {"upsert": job.externalIdFieldName, "update": "Id", "delete": "Id", "hardDelete": "Id"}.get(
            job.operation
        )
        if wanted is None:
            return None
        for index, (_, f, parent_ext) in enumerate(columns):
            if parent_ext is None and f is not None and f.name == wanted:
                return index
        raise ApiError("InvalidBatch", f"Field name not found : {wanted} (required for {job.operation})")

    @staticmethod
    def _duplicates(data: list[list[str]], key_column: int | None) -> set[str]:
        if key_column is None:
            return set()
        seen: set[str] = set()
        duplicates: set[str] = set()
        for row in data:
            if key_column < len(row) and row[key_column]:
                key = row[key_column].lower()
                if key in seen:
                    duplicates.add(key)
                seen.add(key)
        return duplicates

    def _apply_row(
        self,
        tx: Transaction,
        job: IngestJob,
        obj: ObjectDef,
        columns: list[tuple[str, FieldDef | None, FieldDef | None]],
        key_column: int | None,
        row: list[str],
        duplicates: set[str],
    ) -> tuple[str, bool]:
        if len(row) != len(columns):
            raise RecordError(
                [ApiError("INVALID_FIELD", f"The row has {len(row)} values for {len(columns)} columns", [])]
            )
        values: dict[str, Any] = {}
        for (name, f, parent_ext), value in zip(columns, row, strict=True):
            if parent_ext is not None and f is not None:
                if value != "":
                    values[f.relationship_name or f.name] = {parent_ext.name: value}
                continue
            values[name] = value
        if job.operation == "insert":
            return tx.create(obj, values, csv=True), True
        assert key_column is not None
        key = row[key_column]
        if job.operation in ("delete", "hardDelete"):
            return tx.delete(obj, key), False
        if job.operation == "update":
            return tx.update(obj, key, values, csv=True), False
        ext = obj.find_field(job.externalIdFieldName or "")
        assert ext is not None
        if key.lower() in duplicates:
            raise RecordError(
                [ApiError("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {key}", [ext.name])]
            )
        record_id, created = tx.upsert(obj, ext, key, values, csv=True)
        return record_id, created


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


# ---- query jobs ----------------------------------------------------------------------------------

QUERY_OPERATIONS = ("query", "queryAll")
DEFAULT_MAX_RECORDS = 100_000
QUERY_JOBS_SQL = """
CREATE TABLE IF NOT EXISTS bulk_query_jobs (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    results TEXT
);
"""


@dataclass(kw_only=True)
class QueryJob(_Job):
    job_type: ClassVar[str] = "V2Query"
    query: str
    state: str = "UploadComplete"


def _csv_cell(field: FieldDef, value: Any) -> str | None:
    """A value as Bulk API 2.0 query results write it (None: the empty, unquoted null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if field.type == "datetime":
        moment = parse_datetime(str(value))
        if moment is not None:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return str(value)


def _csv_row(values: list[str | None], delimiter: str) -> str:
    """One CSV row: every value quoted (quotes doubled), null as an empty unquoted cell."""
    return delimiter.join("" if v is None else '"' + v.replace('"', '""') + '"' for v in values)


def _flat_value(record: dict[str, Any], path: str) -> Any:
    current: Any = record
    for step in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(step)
    return current


def _locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(locator: str) -> int:
    try:
        return int(base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise RestFailure(400, ApiError("INVALIDLOCATOR", f"Invalid locator: {locator}")) from None


class BulkQuery(_Jobs[QueryJob]):
    """Bulk API 2.0 query jobs (see the module doc)."""

    def __init__(self, org: Org) -> None:
        super().__init__()
        self.org = org
        self.db = org.store.db
        self.db.executescript(QUERY_JOBS_SQL)
        self._rows: dict[str, tuple[str, list[str]]] = {}  # id -> (header line, data lines)
        for job_id, info, results in self.db.execute("SELECT id, info, results FROM bulk_query_jobs"):
            job = QueryJob(**json.loads(info))
            if job.state in ("UploadComplete", "InProgress"):
                job.state, job.errorMessage = "Failed", "InternalServerError : the emulator restarted"
                self._save(job)
            self.jobs[job_id] = job
            if results is not None:
                header, *rows = json.loads(results)
                self._rows[job_id] = (header, rows)

    def _save(self, job: QueryJob, results: str | None = None) -> None:
        if results is None:
            self.db.execute(
                "INSERT INTO bulk_query_jobs (id, info) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET info = ?",
                (job.id, json.dumps(asdict(job)), json.dumps(asdict(job))),
            )
            return
        self.db.execute(
            "INSERT OR REPLACE INTO bulk_query_jobs (id, info, results) VALUES (?, ?, ?)",
            (job.id, json.dumps(asdict(job)), results),
        )

    # ---- HTTP -------------------------------------------------------------------------------------
    async def handle(self, request: web.Request, version: str, path: list[str]) -> web.StreamResponse:
        method = request.method
        if not path:
            if method == "POST":
                return await self._create(request, version)
            return self._listing(method)
        job = self._job(path[0])
        if len(path) == 1 and method == "GET":
            return web.json_response(job.info())
        if len(path) == 1 and method == "PATCH":
            return await self._abort(request, job)
        if len(path) == 1 and method == "DELETE":
            return self._delete(job)
        if len(path) == 2 and path[1] == "results" and method == "GET":
            return self._results(request, version, job)
        raise RestFailure(404, NOT_FOUND)

    async def _create(self, request: web.Request, version: str) -> web.Response:
        body = await _json_object(request)
        operation = body.get("operation")
        if operation not in QUERY_OPERATIONS:
            raise _invalid_job(f"Invalid operation: {operation}")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise _invalid_job("A query is required for a query job")
        delimiter, line_ending = _csv_format(body)
        try:
            obj = self.org.engine.sobject(text)
            self.org.engine.flat_columns(text)
        except ApiError as err:
            raise RestFailure(400, err) from None
        self.org.refuse_query(obj)
        stamp = format_datetime(now_utc())
        job = QueryJob(
            id=ids.make_id("750", self.org.store.next_number("750")),
            operation=str(operation),
            object=obj.name,
            query=text,
            createdById=request[USER_ID],
            createdDate=stamp,
            systemModstamp=stamp,
            apiVersion=float(version),
            lineEnding=line_ending,
            columnDelimiter=delimiter,
        )
        self.jobs[job.id] = job
        self._save(job)
        self._start(self._run(job))
        return web.json_response(job.info(full=False))

    async def _abort(self, request: web.Request, job: QueryJob) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise _invalid_job(f"Invalid state: {body.get('state') if isinstance(body, dict) else body}")
        if job.state in ("JobComplete", "Failed", "Aborted"):
            raise RestFailure(409, ApiError("INVALIDJOBSTATE", f"Job {job.id} is already {job.state}"))
        job.state = "Aborted"
        job.systemModstamp = format_datetime(now_utc())
        self._save(job)
        return web.json_response(job.info(full=False))

    def _delete(self, job: QueryJob) -> web.Response:
        if job.state in ("UploadComplete", "InProgress"):
            raise RestFailure(
                400, ApiError("INVALIDJOBSTATE", f"Job {job.id} is {job.state}: abort it first")
            )
        del self.jobs[job.id]
        self._rows.pop(job.id, None)
        self.db.execute("DELETE FROM bulk_query_jobs WHERE id = ?", (job.id,))
        return web.Response(status=204)

    def _results(self, request: web.Request, version: str, job: QueryJob) -> web.Response:
        if float(version) != job.apiVersion:
            raise RestFailure(
                409,
                ApiError(
                    "INVALIDJOBSTATE", f"Job {job.id} was created with API {job.apiVersion}, not {version}"
                ),
            )
        if job.state != "JobComplete":
            raise RestFailure(
                412,
                ApiError(
                    "JOB_NOT_COMPLETE",
                    "can only download query results of successfully completed bulk job with status: "
                    f"JOB_COMPLETE. Current status: {job.state}",
                ),
            )
        raw_max = request.query.get("maxRecords", str(DEFAULT_MAX_RECORDS))
        if not raw_max.isdigit() or int(raw_max) < 1:
            raise RestFailure(400, ApiError("INVALIDPARAMETER", f"Invalid maxRecords: {raw_max}"))
        locator = request.query.get("locator", "")
        start = _offset(locator) if locator and locator != "null" else 0
        header, lines = self._rows.get(job.id, ("", []))
        if start > len(lines):
            raise RestFailure(400, ApiError("INVALIDLOCATOR", f"Invalid locator: {locator}"))
        page = lines[start : start + int(raw_max)]
        end = start + len(page)
        newline = "\r\n" if job.lineEnding == "CRLF" else "\n"
        text = newline.join([header, *page]) + newline
        return web.Response(
            text=text,
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Sforce-NumberOfRecords": str(len(page)),
                "Sforce-Locator": _locator(end) if end < len(lines) else "null",
            },
        )

    # ---- running a job ----------------------------------------------------------------------------
    async def _run(self, job: QueryJob) -> None:
        started = time.monotonic()
        await asyncio.sleep(0)
        if job.state == "Aborted":
            return
        job.state = "InProgress"
        self._save(job)
        await asyncio.sleep(0)
        try:
            columns = self.org.engine.flat_columns(job.query)
            _, records = self.org.engine.run(
                job.query,
                include_deleted=job.operation == "queryAll",
                version=f"{job.apiVersion:.1f}",
                hidden=self.org.faults.hidden_from(job.createdById),
            )
        except ApiError as err:
            job.state, job.errorMessage = "Failed", f"{err.error_code} : {err.message}"
            job.systemModstamp = format_datetime(now_utc())
            self._save(job)
            return
        if job.state == "Aborted":
            return
        delimiter = DELIMITERS[job.columnDelimiter]
        header = _csv_row([name for name, _ in columns], delimiter)
        rows: list[str] = []
        for start in range(0, len(records), 5000):
            for record in records[start : start + 5000]:
                rows.append(_csv_row([_csv_cell(f, _flat_value(record, n)) for n, f in columns], delimiter))
            await asyncio.sleep(0)
        if job.state == "Aborted":
            return
        job.state = "JobComplete"
        job.numberRecordsProcessed = len(records)
        job.totalProcessingTime = int((time.monotonic() - started) * 1000)
        job.systemModstamp = format_datetime(now_utc())
        self._rows[job.id] = (header, rows)
        self._save(job, json.dumps([header, *rows]))
