"""Batched SOQL reads of the records behind change events, for the CDC source.

What it owns: every query the source sends (through simple-salesforce, on the shared client of
connectors/salesforce/client.py, so each call carries our Sforce-Call-Options client and a 401
re-runs the login): full records by ID, deleted records by ID (`queryAll`), the parent IDs of
changed child records, records modified since a time (catch-up reads), which records a user may
read (UserRecordAccess, for credit requests), and the start-up check
that every mapped field exists in the org.

How it works: one query per object and up to 200 IDs (`read_batch_size`), each ID quoted by the
shared SOQL helper (connectors/salesforce/soql.py), with the mapping's whole select list, so the
related Account and the lines come in the same query, e.g.
`SELECT Id, StageName, ..., Account.Name, (SELECT Id, Quantity, ... FROM OpportunityLineItems)
FROM Opportunity WHERE Id IN ('006...', ...)`. Pages (`nextRecordsUrl`) are followed by
simple-salesforce's `query_all_iter`. Catch-up reads select `SystemModstamp >= <time>` with
`queryAll`, so deletions since then are seen too, ordered by SystemModstamp.

Errors, for sagesf.errors: 403 REQUEST_LIMIT_EXCEEDED is `Backpressure` (the source pauses and
reads again later); 5xx, timeouts and connection failures are `Retriable`; a read refused for
permission (any other 403, e.g. INSUFFICIENT_ACCESS) or because a mapped field or object is gone
or unreadable (400 INVALID_FIELD, INVALID_TYPE: a field deleted in the org, field-level security)
is `ReadRefused`, a `Retriable`: no record is at fault, so nothing is dead-lettered and no replay
position moves; the source backs off until an admin fixes it, counts it in
`sagesf_salesforce_read_refusals_total{entity, error_code}` (alert SagesfSalesforceReadRefused)
and logs Salesforce's full answer, while /healthz shows only the short reason. At start-up
`check_fields` turns INVALID_FIELD/INVALID_TYPE into a `MappingError` naming the entry. Any other
400 is a bug and is raised as it is.

Limits: record IDs must look like Salesforce IDs (15 or 18 letters and digits); the source
dead-letters events carrying anything else before reading. Child subqueries return what
Salesforce returns in one response (it may page very large child sets separately; those extra
pages are not followed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceError, SalesforceMalformedRequest

from connectors.salesforce.soql import id_list, literal
from connectors.salesforce.source_mapping import MappingError, ObjectMapping, SourceMapping
from connectors.salesforce.source_metrics import READ_REFUSALS, SOQL_QUERIES
from sagesf.errors import Backpressure, Retriable

__all__ = ["ReadRefused", "RecordReader", "is_record_id"]

log = logging.getLogger(__name__)

MAX_IDS_PER_QUERY = 200
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")

Record = dict[str, Any]
# 400 codes that mean "the mapping reads something this user cannot read (any more)", not a bug
_REFUSED_FIELD_CODES = frozenset({"INVALID_FIELD", "INVALID_TYPE"})
_REFUSAL_LABELS = frozenset({"INSUFFICIENT_ACCESS", *_REFUSED_FIELD_CODES})


class ReadRefused(Retriable):
    """Salesforce refused a read for permission or a missing field: wait for an admin, lose nothing.

    The message is the short reason /healthz shows; `detail` is Salesforce's whole answer (logged).
    """

    def __init__(self, entity: str, code: str, detail: str) -> None:
        super().__init__(f"Salesforce refuses reading {entity}: {code} (a permission or a mapped field)")
        self.entity = entity
        self.code = code
        self.detail = detail


def is_record_id(value: str) -> bool:
    return bool(_RECORD_ID.match(value))


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class RecordReader:
    def __init__(self, sf: Any, mapping: SourceMapping, batch_size: int = MAX_IDS_PER_QUERY) -> None:
        if not 1 <= batch_size <= MAX_IDS_PER_QUERY:
            raise ValueError(f"batch_size must be 1..{MAX_IDS_PER_QUERY}")
        self.sf = sf
        self.mapping = mapping
        self.batch_size = batch_size

    def _object(self, entity: str) -> ObjectMapping:
        obj = self.mapping.producing(entity)
        if obj is None:
            raise ValueError(f"{entity} has no mapping that produces records")
        return obj

    def _query(self, soql: str, *, include_deleted: bool, entity: str, purpose: str) -> Iterator[Record]:
        SOQL_QUERIES.labels(entity, purpose).inc()
        try:
            for record in self.sf.query_all_iter(soql, include_deleted=include_deleted):
                yield dict(record)
        except SalesforceError as exc:
            classified = _classify(exc, entity, purpose)
            if classified is exc:
                raise
            raise classified from exc
        except requests.RequestException as exc:
            raise Retriable(f"Salesforce {purpose} query on {entity} failed: {type(exc).__name__}") from exc

    def read(self, entity: str, ids: Sequence[str], *, include_deleted: bool = False) -> dict[str, Record]:
        """The records with these IDs (deleted ones too with include_deleted), by ID (18 characters)."""
        obj = self._object(entity)
        found: dict[str, Record] = {}
        unique = list(dict.fromkeys(ids))
        for chunk in _chunks(unique, self.batch_size):
            soql = f"SELECT {obj.select_list()} FROM {entity} WHERE Id IN {id_list(chunk)}"  # noqa: S608 - names from the validated mapping, values quoted
            purpose = "deleted" if include_deleted else "read"
            for record in self._query(soql, include_deleted=include_deleted, entity=entity, purpose=purpose):
                found[str(record["Id"])] = record
        return _by_requested_id(found, unique)

    def parents(self, entity: str, parent_field: str, ids: Sequence[str]) -> dict[str, str | None]:
        """child ID -> parent ID (deleted children included, so a deletion finds its parent)."""
        out: dict[str, str | None] = {}
        unique = list(dict.fromkeys(ids))
        for chunk in _chunks(unique, self.batch_size):
            soql = f"SELECT Id, {parent_field} FROM {entity} WHERE Id IN {id_list(chunk)}"  # noqa: S608 - see read()
            for record in self._query(soql, include_deleted=True, entity=entity, purpose="parents"):
                parent = record.get(parent_field)
                out[str(record["Id"])] = str(parent) if parent else None
        return _by_requested_id(out, unique)

    def modified_since(self, entity: str, since_ms: int) -> Iterator[Record]:
        """Records of `entity` (deleted ones too) whose SystemModstamp is at or after the time.

        For an object that produces records, the whole record; for a child object, its ID and
        the parent reference. The time is rounded down to the second (SOQL's precision).
        """
        since = literal(datetime.fromtimestamp(since_ms // 1000, UTC))
        obj = self.mapping.objects[entity]
        if obj.parent is not None:
            select = f"Id, SystemModstamp, IsDeleted, {obj.parent.field}"
        else:
            select = obj.select_list()
        soql = (
            f"SELECT {select} FROM {entity} WHERE SystemModstamp >= {since} "  # noqa: S608 - see read()
            "ORDER BY SystemModstamp"
        )
        yield from self._query(soql, include_deleted=True, entity=entity, purpose="catchup")

    def readable(self, user_id: str, ids: Sequence[str]) -> set[str]:
        """Those of `ids` (as given) the user may read, by UserRecordAccess, 200 IDs a query."""
        found: dict[str, bool] = {}
        unique = list(dict.fromkeys(ids))
        for chunk in _chunks(unique, self.batch_size):
            soql = (
                "SELECT RecordId, HasReadAccess FROM UserRecordAccess "  # noqa: S608 - values quoted
                f"WHERE UserId = {literal(user_id)} AND RecordId IN {id_list(chunk)}"
            )
            for row in self._query(soql, include_deleted=False, entity="UserRecordAccess", purpose="access"):
                found[str(row["RecordId"])] = row.get("HasReadAccess") is True
        return {record_id for record_id, read in _by_requested_id(found, unique).items() if read}

    def check_fields(self) -> None:
        """One `LIMIT 1` query per mapped object: an unknown field fails here, naming the mapping entry."""
        for entity, obj in self.mapping.objects.items():
            select = f"Id, {obj.parent.field}" if obj.parent is not None else obj.select_list()
            soql = f"SELECT {select} FROM {entity} LIMIT 1"  # noqa: S608 - see read()
            try:
                list(self._query(soql, include_deleted=False, entity=entity, purpose="check"))
            except SalesforceMalformedRequest as exc:
                raise MappingError(
                    f"objects.{entity}: Salesforce refused the mapped fields: {_salesforce_message(exc)}"
                ) from None
            except ReadRefused as exc:
                if exc.code not in _REFUSED_FIELD_CODES:
                    raise
                raise MappingError(
                    f"objects.{entity}: Salesforce refused the mapped fields: {exc.code}: {exc.detail}"
                ) from None


def _by_requested_id(found: dict[str, Any], requested: Sequence[str]) -> dict[str, Any]:
    """Answers are keyed by 18-character IDs; callers may have asked with 15-character ones."""
    out = {}
    for record_id in requested:
        if record_id in found:
            out[record_id] = found[record_id]
        elif len(record_id) == 15:
            match = next((v for k, v in found.items() if k[:15] == record_id), None)
            if match is not None:
                out[record_id] = match
    return out


def _first_error(exc: SalesforceError) -> tuple[str, str]:
    """(errorCode, message) of Salesforce's answer."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return str(first.get("errorCode") or "?"), str(first.get("message") or "")
    return "?", str(content)[:500]


def _salesforce_message(exc: SalesforceError) -> str:
    code, message = _first_error(exc)
    return f"{code}: {message}"


def _classify(exc: SalesforceError, entity: str, purpose: str) -> Exception:
    status = getattr(exc, "status", 0) or 0
    code, message = _first_error(exc)
    where = f"Salesforce {purpose} query on {entity}"
    if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        return Backpressure(f"{where}: {code}: {message}", retry_after=30.0)
    if status >= 500 or status in (401, 408, 429):
        return Retriable(f"{where}: HTTP {status}: {code}: {message}")
    if status == 403 or (status == 400 and code in _REFUSED_FIELD_CODES):
        READ_REFUSALS.labels(entity, code if code in _REFUSAL_LABELS else "OTHER").inc()
        log.warning(
            "%s refused (HTTP %d): %s: %s; retrying until an admin fixes it", where, status, code, message
        )
        return ReadRefused(entity, code, message)
    return exc
