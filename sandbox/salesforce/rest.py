"""The REST API under /services/data/vNN.N/: describe, sObject rows, upsert, query, Collections, limits.

What it owns (each with Salesforce's status codes and bodies):
- `GET /services/data/` (versions), `GET vNN.N/` (resources), `GET sobjects` (describe global),
  `GET sobjects/<T>` and `sobjects/<T>/describe`;
- `POST sobjects/<T>` create (201 `{"id", "success", "errors"}`); `GET|PATCH|DELETE
  sobjects/<T>/<id>` (PATCH and DELETE answer 204); `?fields=` on GET;
- `GET|PATCH|DELETE sobjects/<T>/<ExtIdField>/<value>`: read, upsert and delete by external ID;
  upsert answers 201 `{"id", "success", "errors", "created": true}` when it creates, 200 with
  `"created": false` when it updates (204 without a body before API 46.0), 300 with the matching
  record URLs when several records match, 404 when the field is not an external ID;
- `POST sobjects/<Name>__e`: publish a platform event (201 with OPERATION_ENQUEUED, as Salesforce's
  publish-after-commit events answer) to `/event/<Name>__e`; `POST composite/sobjects` with
  event records publishes several (one result each; not mixed with records);
- `GET query?q=` and `queryAll?q=`, paged by `nextRecordsUrl` (`query/<locator>-<n>`), page size
  2000 or `Sforce-Query-Options: batchSize=N` (200..2000); cursors live 15 minutes idle and
  do not survive a restart (400 INVALID_QUERY_LOCATOR); the admin API's query refusals (403
  INSUFFICIENT_ACCESS, 400 INVALID_FIELD) and records hidden from the caller apply here;
- sObject Collections: `POST composite/sobjects` (create), `PATCH composite/sobjects` (update),
  `PATCH composite/sobjects/<T>/<ExtIdField>` (upsert), `DELETE composite/sobjects?ids=`,
  `GET composite/sobjects/<T>?ids=&fields=`; at most 200 records; `allOrNone` true rolls back
  everything when one record fails (the others answer ALL_OR_NONE_OPERATION_ROLLED_BACK), false
  commits the good records; 200 with one result per record, in order;
- `GET limits`; Bulk API 2.0 ingest and query jobs are in bulk.py, routed from here.

Every DML call is one transaction (records.py); its committed changes go to the event sink with
the caller's user id and the `client=` of its `Sforce-Call-Options` header.

Limits: no composite/batch/tree/graph resources, no sObject Rows by other relationship paths, no
`updated`/`deleted` resources, no blob fields, no `If-Modified-Since`. In an upsert collection an
external ID that appears twice fails both records with DUPLICATE_EXTERNAL_ID.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from sandbox.salesforce import ids
from sandbox.salesforce.bulk import BulkIngest, BulkQuery
from sandbox.salesforce.metadata import FieldDef, ObjectDef
from sandbox.salesforce.org import (
    API_VERSION,
    NOT_FOUND,
    ORIGIN_CLIENT,
    USER_ID,
    Org,
    RestFailure,
    rest_errors,
)
from sandbox.salesforce.records import Record, Transaction
from sandbox.salesforce.values import ApiError, RecordError, coerce, format_datetime, now_utc

MAX_COLLECTION = 200
CURSOR_IDLE_SECONDS = 15 * 60
_VERSION = re.compile(r"^v(\d{2,3}\.\d)$")
ROLLED_BACK = ApiError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


def render(obj: ObjectDef, rec: Record, version: str, fields: list[FieldDef] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{rec['Id']}"}
    }
    for f in fields if fields is not None else obj.fields.values():
        out[f.name] = rec.get(f.name, False if f.type == "boolean" else None)
    return out


@dataclass
class _Cursor:
    records: list[dict[str, Any]]
    position: int
    total: int
    endpoint: str
    touched: float


class RestApi:
    def __init__(self, org: Org, bulk: BulkIngest, bulk_query: BulkQuery) -> None:
        self.org = org
        self.bulk = bulk
        self.bulk_query = bulk_query
        self.schema = org.schema
        self._cursors: dict[str, _Cursor] = {}

    # ---- dispatch ------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        # unquote_plus: simple-salesforce sends external ID values with quote_plus
        segments = [unquote_plus(s) for s in raw_path.split("/")[3:]]
        while segments and segments[-1] == "":
            segments.pop()
        try:
            if not segments:
                return self.versions()
            found = _VERSION.match(segments[0])
            if found is None:
                raise RestFailure(404, NOT_FOUND)
            version = found.group(1)
            request[API_VERSION] = version
            return await self._route(request, version, segments[1:])
        except RestFailure as failure:
            return failure.response()

    def versions(self) -> web.Response:
        versions = [f"{v}.0" for v in range(31, int(float(self.org.config.api_version)) + 1)]
        return web.json_response(
            [{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in versions]
        )

    async def _route(self, request: web.Request, version: str, path: list[str]) -> web.StreamResponse:
        method = request.method
        if not path:
            return web.json_response(self._resources(version))
        head = path[0]
        if head == "sobjects":
            return await self._sobjects(request, version, path[1:])
        if head in ("query", "queryAll"):
            _allow(method, "GET")
            return self._query(request, version, head, path[1:])
        if head == "composite" and len(path) >= 2 and path[1] == "sobjects":
            return await self._collections(request, version, path[2:])
        if head == "jobs" and len(path) >= 2 and path[1] == "ingest":
            return await self.bulk.handle(request, version, path[2:])
        if head == "jobs" and len(path) >= 2 and path[1] == "query":
            return await self.bulk_query.handle(request, version, path[2:])
        if head == "limits" and len(path) == 1:
            _allow(method, "GET")
            return web.json_response(self._limits())
        raise RestFailure(404, NOT_FOUND)

    def _resources(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        return {
            "sobjects": f"{base}/sobjects",
            "query": f"{base}/query",
            "queryAll": f"{base}/queryAll",
            "composite": f"{base}/composite",
            "jobs": f"{base}/jobs",
            "limits": f"{base}/limits",
        }

    def _object(self, name: str) -> ObjectDef:
        obj = self.schema.get(name)
        if obj is None:
            raise RestFailure(404, NOT_FOUND)
        return obj

    def _tx(self, request: web.Request) -> Transaction:
        origin = request.get(ORIGIN_CLIENT) or None
        return self.org.store.begin(request[USER_ID], origin, "rest", request[API_VERSION])

    # ---- sobjects ------------------------------------------------------------------------------
    async def _sobjects(self, request: web.Request, version: str, path: list[str]) -> web.StreamResponse:
        method = request.method
        if not path:
            _allow(method, "GET")
            return web.json_response(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": MAX_COLLECTION,
                    "sobjects": [obj.describe_global_entry(version) for obj in self.schema.objects.values()],
                }
            )
        obj = self._object(path[0])
        if len(path) == 1:
            if method == "POST":
                body = await _json_body(request)
                if obj.is_event:
                    return self._publish(request, obj, body)
                return self._create(request, obj, body)
            _allow(method, "GET", "POST")
            return web.json_response(
                {"objectDescribe": obj.describe_global_entry(version), "recentItems": []}
            )
        if len(path) == 2 and path[1] == "describe":
            _allow(method, "GET")
            return web.json_response(obj.describe(version))
        if obj.is_event:
            raise RestFailure(404, NOT_FOUND)
        if len(path) == 2:
            return await self._row(request, version, obj, path[1])
        if len(path) == 3:
            return await self._by_external_id(request, version, obj, path[1], path[2])
        raise RestFailure(404, NOT_FOUND)

    def _create(self, request: web.Request, obj: ObjectDef, body: Any) -> web.Response:
        if not isinstance(body, dict):
            raise RestFailure(400, ApiError("JSON_PARSER_ERROR", "The request body must be a JSON object"))
        tx = self._tx(request)
        try:
            record_id = tx.create(obj, body)
        except RecordError as err:
            return rest_errors(err.errors, err.status)
        self.org.commit_and_publish(tx.commit())
        return web.json_response({"id": record_id, "success": True, "errors": []}, status=201)

    def _publish(self, request: web.Request, obj: ObjectDef, body: Any) -> web.Response:
        if not isinstance(body, dict):
            raise RestFailure(400, ApiError("JSON_PARSER_ERROR", "The request body must be a JSON object"))
        try:
            payload = self._event_payload(obj, body)
        except RecordError as err:
            return rest_errors(err.errors)
        return web.json_response(self._publish_event(request, obj, payload), status=201)

    def _event_payload(self, obj: ObjectDef, body: dict[str, Any]) -> dict[str, Any]:
        """The fields of one platform event message, checked as Salesforce does (RecordError)."""
        payload: dict[str, Any] = {}
        errors: list[ApiError] = []
        for key, value in body.items():
            if key == "attributes":
                continue
            f = obj.find_field(key)
            if f is None:
                errors.append(
                    ApiError("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}")
                )
                continue
            if not f.createable:
                errors.append(
                    ApiError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {f.name}.",
                        [f.name],
                    )
                )
                continue
            try:
                payload[f.name] = coerce(f, value)
            except ApiError as err:
                errors.append(err)
        missing = [f.name for f in obj.fields.values() if f.required and payload.get(f.name) is None]
        if missing:
            errors.append(
                ApiError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
                )
            )
        if errors:
            raise RecordError(errors)
        for f in obj.fields.values():
            if f.type == "boolean" and payload.get(f.name) is None:
                payload[f.name] = bool(f.default)
        return payload

    def _publish_event(self, request: web.Request, obj: ObjectDef, payload: dict[str, Any]) -> dict[str, Any]:
        """Publish one checked event message; its save result (publish-after-commit: enqueued)."""
        event_uuid = str(uuid.uuid4())
        payload = {
            **payload,
            "CreatedDate": format_datetime(now_utc()),
            "CreatedById": request[USER_ID],
            "EventUuid": event_uuid,
        }
        self.org.sink.publish(f"/event/{obj.name}", payload)
        event_id = ids.make_id(obj.key_prefix, self.org.store.next_number(obj.key_prefix))
        return {
            "id": event_id,
            "success": True,
            "errors": [{"statusCode": "OPERATION_ENQUEUED", "message": event_uuid, "fields": []}],
        }

    def _publish_collection(
        self, request: web.Request, all_or_none: bool, records: list[Any]
    ) -> web.Response:
        """POST composite/sobjects of platform event messages: each checked, then all published
        (or, with allOrNone and a failure, none)."""
        checked: list[tuple[ObjectDef, dict[str, Any]] | list[ApiError]] = []
        for rec in records:
            obj = self._event_type(rec)
            if obj is None:
                checked.append([ApiError("INVALID_TYPE", "platform events and records cannot be mixed")])
                continue
            try:
                checked.append((obj, self._event_payload(obj, rec)))
            except RecordError as err:
                checked.append(list(err.errors))
        failed = any(isinstance(item, list) for item in checked)
        results: list[dict[str, Any]] = []
        for item in checked:
            if isinstance(item, list):
                results.append({"success": False, "errors": [e.result() for e in item]})
            elif all_or_none and failed:
                results.append({"success": False, "errors": [ROLLED_BACK.result()]})
            else:
                results.append(self._publish_event(request, *item))
        return web.json_response(results)

    async def _row(
        self, request: web.Request, version: str, obj: ObjectDef, record_id: str
    ) -> web.StreamResponse:
        method = request.method
        _allow(method, "GET", "PATCH", "DELETE")
        normal = ids.normalize(record_id)
        if method == "GET":
            if normal is None or ids.key_prefix(normal) != obj.key_prefix:
                # Salesforce reads a non-ID here as an external ID field name
                raise RestFailure(
                    404,
                    ApiError(
                        "NOT_FOUND",
                        f"Provided external ID field does not exist or is not accessible: {record_id}",
                    ),
                )
            rec = self.org.store.get(normal)
            if rec is None:
                raise RestFailure(404, NOT_FOUND)
            if rec.get("IsDeleted"):
                raise RestFailure(404, ApiError("ENTITY_IS_DELETED", "entity is deleted"))
            return web.json_response(render(obj, rec, version, self._fields_param(request, obj)))
        tx = self._tx(request)
        try:
            if method == "DELETE":
                tx.delete(obj, record_id)
            else:
                body = await _json_body(request)
                if not isinstance(body, dict):
                    raise RestFailure(
                        400, ApiError("JSON_PARSER_ERROR", "The request body must be a JSON object")
                    )
                tx.update(obj, record_id, body)
        except RecordError as err:
            return rest_errors(err.errors, err.status)
        self.org.commit_and_publish(tx.commit())
        return web.Response(status=204)

    def _fields_param(self, request: web.Request, obj: ObjectDef) -> list[FieldDef] | None:
        wanted = request.query.get("fields")
        if not wanted:
            return None
        fields = []
        for name in wanted.split(","):
            f = obj.find_field(name.strip())
            if f is None:
                raise RestFailure(
                    400, ApiError("INVALID_FIELD", f"No such column '{name.strip()}' on entity '{obj.name}'.")
                )
            fields.append(f)
        return fields

    def _external_field(self, obj: ObjectDef, name: str) -> FieldDef:
        f = obj.find_field(name)
        if f is None or not (f.indexed or f.name == "Id"):
            raise RestFailure(
                404,
                ApiError(
                    "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}"
                ),
            )
        return f

    async def _by_external_id(
        self, request: web.Request, version: str, obj: ObjectDef, field_name: str, value: str
    ) -> web.StreamResponse:
        method = request.method
        _allow(method, "GET", "PATCH", "DELETE", "POST")
        ext = self._external_field(obj, field_name)
        if method in ("GET", "DELETE"):
            if ext.name == "Id":
                normal = ids.normalize(value)
                found = [normal] if normal and self.org.store.get(normal) else []
            else:
                try:
                    key = coerce(ext, value)
                except ApiError as err:
                    raise RestFailure(400, err) from None
                found = self.org.store.find_unique(obj, ext, key) if key is not None else []
            if not found:
                raise RestFailure(404, NOT_FOUND)
            if len(found) > 1:
                return web.json_response(
                    [f"/services/data/v{version}/sobjects/{obj.name}/{i}" for i in found], status=300
                )
            if method == "GET":
                rec = self.org.store.get(found[0])
                assert rec is not None
                return web.json_response(render(obj, rec, version, self._fields_param(request, obj)))
            tx = self._tx(request)
            try:
                tx.delete(obj, found[0])
            except RecordError as err:
                return rest_errors(err.errors, err.status)
            self.org.commit_and_publish(tx.commit())
            return web.Response(status=204)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise RestFailure(400, ApiError("JSON_PARSER_ERROR", "The request body must be a JSON object"))
        tx = self._tx(request)
        try:
            record_id, created = tx.upsert(obj, ext, value, body)
        except RecordError as err:
            if err.status == 300:
                return web.json_response(
                    [f"/services/data/v{version}/sobjects/{obj.name}/{i}" for i in err.matches], status=300
                )
            return rest_errors(err.errors, err.status)
        self.org.commit_and_publish(tx.commit())
        if not created and float(version) < 46:
            return web.Response(status=204)  # before API 46.0 an update by upsert had no body
        return web.json_response(
            {"id": record_id, "success": True, "errors": [], "created": created},
            status=201 if created else 200,
        )

    # ---- query ---------------------------------------------------------------------------------
    def _query(self, request: web.Request, version: str, endpoint: str, path: list[str]) -> web.Response:
        now = time.monotonic()
        for locator in [k for k, c in self._cursors.items() if now - c.touched > CURSOR_IDLE_SECONDS]:
            del self._cursors[locator]
        batch = self._batch_size(request)
        if path:
            locator, _, _ = path[0].partition("-")
            cursor = self._cursors.get(locator)
            if cursor is None or len(path) != 1:
                raise RestFailure(400, ApiError("INVALID_QUERY_LOCATOR", "invalid query locator"))
            cursor.touched = now
            return self._page(version, locator, cursor, batch)
        text = request.query.get("q")
        if not text:
            raise RestFailure(400, ApiError("MALFORMED_QUERY", "A query string has to be specified"))
        try:
            access = self.org.access.answer(text)
            if access is not None:
                return web.json_response({"totalSize": len(access), "done": True, "records": access})
            self.org.refuse_query(self.org.engine.sobject(text))
            total, records = self.org.engine.run(
                text,
                include_deleted=endpoint == "queryAll",
                version=version,
                hidden=self.org.faults.hidden_from(request[USER_ID]),
            )
        except ApiError as err:
            raise RestFailure(400, err) from None
        if len(records) <= batch:
            return web.json_response({"totalSize": total, "done": True, "records": records})
        locator = ids.make_id("01g", self.org.store.next_number("01g"))[:15]
        cursor = _Cursor(records, 0, total, endpoint, now)
        self._cursors[locator] = cursor
        return self._page(version, locator, cursor, batch)

    def _page(self, version: str, locator: str, cursor: _Cursor, batch: int) -> web.Response:
        page = cursor.records[cursor.position : cursor.position + batch]
        cursor.position += len(page)
        body: dict[str, Any] = {"totalSize": cursor.total, "done": cursor.position >= len(cursor.records)}
        if body["done"]:
            self._cursors.pop(locator, None)
        else:
            body["nextRecordsUrl"] = (
                f"/services/data/v{version}/{cursor.endpoint}/{locator}-{cursor.position}"
            )
        body["records"] = page
        return web.json_response(body)

    def _batch_size(self, request: web.Request) -> int:
        default = self.org.config.query_batch_size
        header = request.headers.get("Sforce-Query-Options", "")
        found = re.search(r"batchSize\s*=\s*(\d+)", header)
        if found is None:
            return default
        return max(200, min(2000, int(found.group(1))))

    # ---- Collections ---------------------------------------------------------------------------
    async def _collections(self, request: web.Request, version: str, path: list[str]) -> web.Response:
        method = request.method
        if method == "GET" and len(path) == 1:
            return self._retrieve(request, version, self._object(path[0]))
        if method == "DELETE" and not path:
            record_ids = [i for i in request.query.get("ids", "").split(",") if i]
            all_or_none = request.query.get("allOrNone", "false").lower() == "true"
            if len(record_ids) > MAX_COLLECTION:
                raise RestFailure(400, _too_many())
            return self._run_collection(
                request, all_or_none, record_ids, lambda tx, record_id: (tx.delete(None, record_id), None)
            )
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise RestFailure(400, ApiError("JSON_PARSER_ERROR", "The request body needs a records list"))
        records: list[Any] = body["records"]
        all_or_none = bool(body.get("allOrNone", False))
        if len(records) > MAX_COLLECTION:
            raise RestFailure(400, _too_many())
        if method == "POST" and not path:
            if any(self._event_type(rec) for rec in records):
                return self._publish_collection(request, all_or_none, records)
            return self._run_collection(request, all_or_none, records, self._collection_create)
        if method == "PATCH" and not path:
            return self._run_collection(request, all_or_none, records, self._collection_update)
        if method == "PATCH" and len(path) == 2:
            obj = self._object(path[0])
            ext = self._external_field(obj, path[1])
            duplicates = self._duplicate_keys(records, ext)

            def upsert(tx: Transaction, rec: Any) -> tuple[str, bool | None]:
                return self._collection_upsert(tx, obj, ext, rec, duplicates)

            return self._run_collection(request, all_or_none, records, upsert, with_created=True)
        _allow(method, "GET", "POST", "PATCH", "DELETE")
        raise RestFailure(404, NOT_FOUND)

    def _retrieve(self, request: web.Request, version: str, obj: ObjectDef) -> web.Response:
        record_ids = [i for i in request.query.get("ids", "").split(",") if i]
        fields = self._fields_param(request, obj)
        if fields is None:
            raise RestFailure(400, ApiError("MALFORMED_QUERY", "fields must be specified"))
        out: list[dict[str, Any] | None] = []
        for record_id in record_ids:
            normal = ids.normalize(record_id)
            rec = self.org.store.get(normal) if normal else None
            if rec is None or rec.get("IsDeleted") or rec.get("attributes_type") != obj.name:
                out.append(None)
            else:
                out.append(render(obj, rec, version, fields))
        return web.json_response(out)

    def _event_type(self, rec: Any) -> ObjectDef | None:
        """The platform event a collection record is, if it is one."""
        attributes = rec.get("attributes") if isinstance(rec, dict) else None
        if not isinstance(attributes, dict):
            return None
        obj = self.schema.get(str(attributes.get("type") or ""))
        return obj if obj is not None and obj.is_event else None

    def _record_type(self, rec: Any) -> ObjectDef:
        if not isinstance(rec, dict):
            raise RecordError([ApiError("JSON_PARSER_ERROR", "each record must be a JSON object")])
        attributes = rec.get("attributes")
        name = attributes.get("type") if isinstance(attributes, dict) else None
        if not name:
            raise RecordError([ApiError("INVALID_TYPE", "Must send a concrete entity type.")])
        obj = self.schema.get(str(name))
        if obj is None or obj.is_event:
            raise RecordError([ApiError("INVALID_TYPE", f"sObject type '{name}' is not supported.")])
        return obj

    def _collection_create(self, tx: Transaction, rec: Any) -> tuple[str, bool | None]:
        obj = self._record_type(rec)
        return tx.create(obj, rec), None

    def _collection_update(self, tx: Transaction, rec: Any) -> tuple[str, bool | None]:
        obj = self._record_type(rec)
        record_id = rec.get("Id")
        if not record_id:
            raise RecordError([ApiError("MISSING_ARGUMENT", "Id not specified in an update call")])
        return tx.update(obj, str(record_id), rec), None

    def _duplicate_keys(self, records: list[Any], ext: FieldDef) -> set[Any]:
        seen: set[Any] = set()
        duplicates: set[Any] = set()
        for rec in records:
            if not isinstance(rec, dict):
                continue
            value = next((v for k, v in rec.items() if k.lower() == ext.name.lower()), None)
            if value is None:
                continue
            key = value.lower() if isinstance(value, str) and not ext.case_sensitive else value
            if key in seen:
                duplicates.add(key)
            seen.add(key)
        return duplicates

    def _collection_upsert(
        self, tx: Transaction, obj: ObjectDef, ext: FieldDef, rec: Any, duplicates: set[Any]
    ) -> tuple[str, bool | None]:
        actual = self._record_type(rec)
        if actual.name != obj.name:
            raise RecordError([ApiError("INVALID_TYPE", f"the record type {actual.name} is not {obj.name}")])
        value = next((v for k, v in rec.items() if k.lower() == ext.name.lower()), None)
        if value in (None, ""):
            if ext.name == "Id":
                return tx.create(obj, rec), True
            raise RecordError([ApiError("MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])])
        key = value.lower() if isinstance(value, str) and not ext.case_sensitive else value
        if key in duplicates:
            raise RecordError(
                [ApiError("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [ext.name])]
            )
        record_id, created = tx.upsert(obj, ext, value, rec)
        return record_id, created

    def _run_collection(
        self,
        request: web.Request,
        all_or_none: bool,
        items: list[Any],
        operation: Any,
        with_created: bool = False,
    ) -> web.Response:
        tx = self._tx(request)
        results: list[dict[str, Any]] = []
        failed = False
        for item in items:
            point = tx.savepoint()
            try:
                record_id, created = operation(tx, item)
            except RecordError as err:
                tx.rollback_to(point)
                failed = True
                result: dict[str, Any] = {"success": False, "errors": [e.result() for e in err.errors]}
                known = _known_id(item)
                if known:
                    result = {"id": known, **result}
                if with_created:
                    result["created"] = False
                results.append(result)
                continue
            result = {"id": record_id, "success": True, "errors": []}
            if with_created:
                result["created"] = bool(created)
            results.append(result)
        if all_or_none and failed:
            for index, (item, result) in enumerate(zip(items, results, strict=True)):
                if result["success"]:
                    rolled: dict[str, Any] = {"success": False, "errors": [ROLLED_BACK.result()]}
                    known = _known_id(item)  # an update or delete keeps its Id; a create has none
                    if known:
                        rolled = {"id": known, **rolled}
                    if with_created:
                        rolled["created"] = False
                    results[index] = rolled
            return web.json_response(results)
        self.org.commit_and_publish(tx.commit())
        return web.json_response(results)

    # ---- limits --------------------------------------------------------------------------------
    def _limits(self) -> dict[str, dict[str, int]]:
        usage = self.org.usage
        used = usage.used()

        def pair(maximum: int, remaining: int) -> dict[str, int]:
            return {"Max": maximum, "Remaining": max(0, remaining)}

        records = self.org.store.count()
        return {
            "DailyApiRequests": pair(usage.limit, usage.limit - used),
            "DailyBulkApiBatches": pair(15000, 15000),
            "DailyBulkV2QueryFileStorageMB": pair(976562, 976562),
            "DailyBulkV2QueryJobs": pair(10000, 10000),
            "DailyDurableStreamingApiEvents": pair(1000000, 1000000),
            "DailyStreamingApiEvents": pair(1000000, 1000000),
            "DataStorageMB": pair(1024, 1024 - records * 2 // 1024),
            "HourlyPublishedPlatformEvents": pair(250000, 250000),
            "HourlyODataCallout": pair(20000, 20000),
        }


def _known_id(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("Id"), str):
        return str(item["Id"])
    return None


def _too_many() -> ApiError:
    return ApiError(
        "EXCEEDED_ID_LIMIT",
        f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
    )


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise RestFailure(
            405,
            ApiError(
                "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}"
            ),
        )


async def _json_body(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        message = (
            f"Unexpected character in the request body: {err.msg} at [line:{err.lineno}, column:{err.colno}]"
        )
        raise RestFailure(400, ApiError("JSON_PARSER_ERROR", message)) from None
