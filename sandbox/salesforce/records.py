"""The emulated org's records and the DML rules applied to them.

What it owns: `RecordStore` (every record of every object, kept in memory and written through to a
SQLite file) and `Transaction`, the unit every API call works in: create, update, upsert by
external ID, delete (with cascade) and undelete, validated like Salesforce:

- unknown field: INVALID_FIELD; read-only field written: INVALID_FIELD_FOR_INSERT_UPDATE;
- required field missing or set to null: REQUIRED_FIELD_MISSING;
- per-type checks from values.py (STRING_TOO_LONG, INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST,
  MALFORMED_ID, NUMBER_OUTSIDE_VALID_RANGE, ...);
- unique and external-ID fields: DUPLICATE_VALUE (case-insensitive unless caseSensitive);
- references must name an existing record of the right object: INVALID_CROSS_REFERENCE_KEY, or
  ENTITY_IS_DELETED for a deleted one; a parent may also be named by external ID
  (`"Account": {"ExternalID__c": "01-ABF"}`), as the REST API allows;
- derived fields (Contact.Name, Opportunity.IsClosed/IsWon, line item Product2Id, ProductCode,
  ListPrice and TotalPrice, PricebookEntry Name/ProductCode, auto-numbers) and the system fields
  (CreatedDate, CreatedById, LastModifiedDate, LastModifiedById, SystemModstamp, IsDeleted,
  OwnerId).

How it works: a Transaction stages full new record states over the committed ones, with an undo
log so a caller can roll back one record (`savepoint`/`rollback_to`, used for allOrNone=false)
or everything (never calling `commit`). `commit()` writes every staged record in ONE SQLite
transaction, then applies them to memory and the unique indexes, and returns one `ChangeRecord`
per created/updated/deleted/undeleted record (the facts a CDC event is made from: entity, type,
changed fields, user, origin client, transaction key, sequence number, commit time). Reads are
served from memory; unique and external-ID lookups go through in-memory indexes, so an upsert
costs a dict lookup, not a table scan. API calls run one at a time on the event loop, so a
transaction never interleaves with another.

Limits (where the emulator differs from Salesforce):
- No triggers, workflow, validation rules, sharing or field-level security; no roll-up of line
  item totals into Opportunity.Amount; derived names (PricebookEntry.Name, line item Name) are
  computed when the record is written and do not follow later renames of the product.
- Undelete restores the named records only, not the children a cascade deleted with them.
- Deleted records stay (IsDeleted = true) forever; nothing empties the Recycle Bin.
- Deleted records do not hold their unique values; undelete re-checks them (DUPLICATE_VALUE).
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.salesforce import ids
from sandbox.salesforce.metadata import FieldDef, ObjectDef, OrgSchema
from sandbox.salesforce.values import ApiError, RecordError, coerce, format_datetime, now_utc

Record = dict[str, Any]

#: never part of a CDC body: Id travels in recordIds, the others are not tracked by CDC
CDC_EXCLUDED = frozenset({"Id", "IsDeleted", "SystemModstamp"})
_MISSING = object()

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    sobject TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_sobject ON records (sobject);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class ChangeRecord:
    """What one committed DML did to one record: the input of a CDC event (see cdc.Change)."""

    entity: str
    change_type: str
    record_ids: list[str]
    fields: dict[str, Any]
    changed_fields: list[str]
    commit_user: str
    origin_client: str | None
    transaction_key: str
    sequence_number: int
    commit_timestamp_ms: int
    api_name: str = "rest"  # the API of the call, as changeOrigin names it: rest, bulkapi
    api_version: str = "62.0"


@dataclass
class _Op:
    change_type: str
    record_id: str
    changed: list[str] = field(default_factory=list)


def _norm(f: FieldDef, value: Any) -> Any:
    if isinstance(value, str) and not f.case_sensitive and f.type not in ("id", "reference"):
        return value.lower()
    return value


class RecordStore:
    """All records in memory, written through to `<path>` (SQLite)."""

    def __init__(self, schema: OrgSchema, path: Path) -> None:
        self.schema = schema
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA_SQL)
        self.records: dict[str, Record] = {}
        self.by_type: dict[str, dict[str, Record]] = {name: {} for name in schema.objects}
        self.unique: dict[tuple[str, str], dict[Any, set[str]]] = {}
        for obj in schema.objects.values():
            for f in obj.fields.values():
                if f.indexed:
                    self.unique[(obj.name, f.name)] = {}
        self.meta: dict[str, str] = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        self._dirty_meta: set[str] = set()
        for record_id, sobject, data in self.db.execute("SELECT id, sobject, data FROM records"):
            if sobject in self.by_type:
                self._apply(record_id, sobject, json.loads(data))
        if "org_id" not in self.meta:
            self.meta["org_id"] = ids.make_id("00D", 1)
            self._dirty_meta.add("org_id")
        self.flush_meta()

    # ---- reads ----------------------------------------------------------------------------
    @property
    def org_id(self) -> str:
        return self.meta["org_id"]

    def get(self, record_id: str) -> Record | None:
        return self.records.get(record_id)

    def of_type(self, sobject: str) -> Iterable[Record]:
        return self.by_type.get(sobject, {}).values()

    def find_unique(self, obj: ObjectDef, f: FieldDef, value: Any) -> list[str]:
        """Live records of `obj` whose indexed field `f` equals `value`."""
        found = self.unique.get((obj.name, f.name), {}).get(_norm(f, value), set())
        return sorted(found)

    def count(self) -> int:
        return len(self.records)

    # ---- ids and numbers --------------------------------------------------------------------
    def next_number(self, counter: str) -> int:
        key = f"seq:{counter}"
        number = int(self.meta.get(key, "0")) + 1
        self.meta[key] = str(number)
        self._dirty_meta.add(key)
        return number

    def new_id(self, obj: ObjectDef) -> str:
        return ids.make_id(obj.key_prefix, self.next_number(obj.key_prefix))

    def flush_meta(self) -> None:
        if self._dirty_meta:
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, self.meta[key]) for key in self._dirty_meta],
            )
            self._dirty_meta.clear()

    # ---- writes ---------------------------------------------------------------------------
    def begin(
        self,
        user_id: str,
        origin_client: str | None = None,
        api_name: str = "rest",
        api_version: str = "62.0",
    ) -> Transaction:
        return Transaction(self, user_id, origin_client, api_name, api_version)

    def write(self, staged: Mapping[str, Record]) -> None:
        """Persist staged records and counters in one SQLite transaction, then apply in memory."""
        rows = [
            (record_id, rec["attributes_type"], 1 if rec.get("IsDeleted") else 0, _dumps(rec))
            for record_id, rec in staged.items()
        ]
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO records (id, sobject, is_deleted, data) VALUES (?, ?, ?, ?)", rows
            )
            self.flush_meta()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        for record_id, rec in staged.items():
            self._apply(record_id, rec["attributes_type"], rec)

    def _apply(self, record_id: str, sobject: str, rec: Record) -> None:
        obj = self.schema.objects[sobject]
        old = self.records.get(record_id)
        for f in obj.fields.values():
            if not f.indexed:
                continue
            index = self.unique[(obj.name, f.name)]
            if old is not None and not old.get("IsDeleted") and old.get(f.name) is not None:
                holders = index.get(_norm(f, old[f.name]))
                if holders is not None:
                    holders.discard(record_id)
                    if not holders:
                        del index[_norm(f, old[f.name])]
            if not rec.get("IsDeleted") and rec.get(f.name) is not None:
                index.setdefault(_norm(f, rec[f.name]), set()).add(record_id)
        rec["attributes_type"] = sobject
        self.records[record_id] = rec
        self.by_type[sobject][record_id] = rec

    def insert_silently(self, obj: ObjectDef, values: Record, user_id: str) -> str:
        """Create a record that an org has from the start (users, the standard price book): no event."""
        record_id = self.new_id(obj)
        stamp = format_datetime(now_utc())
        rec: Record = {f.name: None for f in obj.fields.values()}
        rec.update(values)
        rec.update(
            Id=record_id,
            IsDeleted=False,
            CreatedDate=stamp,
            CreatedById=user_id or record_id,
            LastModifiedDate=stamp,
            LastModifiedById=user_id or record_id,
            SystemModstamp=stamp,
            attributes_type=obj.name,
        )
        self.write({record_id: _compact(rec)})
        return record_id

    def close(self) -> None:
        self.flush_meta()
        self.db.close()


def _compact(rec: Record) -> Record:
    return {k: v for k, v in rec.items() if v is not None}


def _dumps(rec: Record) -> str:
    return json.dumps(_compact(rec), separators=(",", ":"), ensure_ascii=False)


class Transaction:
    """Staged changes of one API call; nothing is visible to others before `commit()`."""

    def __init__(
        self, store: RecordStore, user_id: str, origin_client: str | None, api_name: str, api_version: str
    ) -> None:
        self.store = store
        self.api_name = api_name
        self.api_version = api_version
        self.schema = store.schema
        self.user_id = user_id
        self.origin_client = origin_client
        self.key = str(uuid.uuid4())
        self.moment = now_utc()
        self.stamp = format_datetime(self.moment)
        self.staged: dict[str, Record] = {}
        self.ops: list[_Op] = []
        self._undo: list[tuple[str, Any]] = []
        self._staged_unique: dict[tuple[str, str, Any], set[str]] = {}

    # ---- overlay reads ----------------------------------------------------------------------
    def get(self, record_id: str) -> Record | None:
        staged = self.staged.get(record_id)
        return staged if staged is not None else self.store.get(record_id)

    def find_unique(self, obj: ObjectDef, f: FieldDef, value: Any) -> list[str]:
        key = _norm(f, value)
        candidates = set(self.store.unique.get((obj.name, f.name), {}).get(key, set()))
        candidates |= self._staged_unique.get((obj.name, f.name, key), set())
        found = []
        for record_id in sorted(candidates):
            rec = self.get(record_id)
            live = rec is not None and not rec.get("IsDeleted") and rec.get(f.name) is not None
            if live and rec is not None and _norm(f, rec[f.name]) == key:
                found.append(record_id)
        return found

    # ---- savepoints --------------------------------------------------------------------------
    def savepoint(self) -> tuple[int, int]:
        return len(self._undo), len(self.ops)

    def rollback_to(self, point: tuple[int, int]) -> None:
        undo_len, ops_len = point
        while len(self._undo) > undo_len:
            record_id, previous = self._undo.pop()
            if previous is _MISSING:
                self.staged.pop(record_id, None)
            else:
                self.staged[record_id] = previous
        del self.ops[ops_len:]

    def _stage(self, obj: ObjectDef, rec: Record) -> None:
        record_id = rec["Id"]
        self._undo.append((record_id, self.staged.get(record_id, _MISSING)))
        rec["attributes_type"] = obj.name
        self.staged[record_id] = rec
        for f in obj.fields.values():
            if f.indexed and rec.get(f.name) is not None:
                self._staged_unique.setdefault((obj.name, f.name, _norm(f, rec[f.name])), set()).add(
                    record_id
                )

    # ---- input -------------------------------------------------------------------------------
    def _inputs(
        self, obj: ObjectDef, values: Mapping[str, Any], creating: bool, csv: bool
    ) -> tuple[Record, list[ApiError]]:
        """Coerced field values by declared name, and every error found in them."""
        out: Record = {}
        errors: list[ApiError] = []
        not_writable: list[str] = []
        for key, raw in values.items():
            if key == "attributes":
                continue
            f = obj.find_field(key)
            if f is None:
                parent = obj.parent_field(key)
                if parent is not None and isinstance(raw, dict):
                    try:
                        out[parent.name] = self._resolve_parent_by_external_id(parent, raw)
                    except ApiError as err:
                        errors.append(err)
                    continue
                errors.append(
                    ApiError("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", [])
                )
                continue
            if f.name == "Id":
                if creating and raw not in (None, ""):
                    errors.append(
                        ApiError(
                            "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]
                        )
                    )
                continue  # an update body may carry the Id: it addresses the record
            if not (f.createable if creating else f.updateable):
                not_writable.append(f.name)
                continue
            if csv and raw == "":
                continue  # Bulk API: an empty CSV value leaves the field as it is
            if csv and raw == "#N/A":
                raw = None
            try:
                out[f.name] = coerce(f, raw, csv=csv)
            except ApiError as err:
                errors.append(err)
        if not_writable:
            errors.append(
                ApiError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(not_writable)}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile or permission "
                    "set.",
                    not_writable,
                )
            )
        unknown = [e for e in errors if e.error_code == "INVALID_FIELD" and not e.fields]
        if unknown:
            return out, unknown  # Salesforce stops at an unknown field before checking any value
        return out, errors

    def _resolve_parent_by_external_id(self, ref: FieldDef, raw: Mapping[str, Any]) -> str:
        assert ref.reference_to is not None
        parent = self.schema.objects[ref.reference_to]
        keys = [k for k in raw if k != "attributes"]
        if len(keys) != 1:
            raise ApiError(
                "INVALID_FIELD",
                f"A foreign key reference to {parent.name} must name exactly one external ID field",
                [ref.name],
            )
        ext = parent.find_field(keys[0])
        if ext is None or not ext.indexed:
            raise ApiError(
                "INVALID_FIELD",
                f"Provided external ID field does not exist or is not accessible: {keys[0]}",
                [ref.name],
            )
        value = coerce(ext, raw[keys[0]])
        found = self.find_unique(parent, ext, value)
        if not found:
            raise ApiError(
                "INVALID_FIELD",
                f"Foreign key external ID: {value} not found for field {ext.name} in entity {parent.name}",
                [],
            )
        if len(found) > 1:
            raise ApiError(
                "INVALID_FIELD",
                f"More than 1 record found for External ID field: {ext.name}",
                [],
            )
        return found[0]

    def _check_references(
        self, obj: ObjectDef, rec: Record, given: Iterable[str], errors: list[ApiError]
    ) -> None:
        for name in given:
            f = obj.fields[name]
            value = rec.get(name)
            if f.type != "reference" or value is None:
                continue
            target = self.schema.objects[f.reference_to] if f.reference_to else None
            if target is None or ids.key_prefix(value) != target.key_prefix:
                errors.append(
                    ApiError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [name])
                )
                continue
            parent = self.get(value)
            if parent is None:
                errors.append(ApiError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name]))
            elif parent.get("IsDeleted"):
                errors.append(ApiError("ENTITY_IS_DELETED", "entity is deleted", [name]))

    def _check_required(self, obj: ObjectDef, rec: Record, errors: list[ApiError]) -> None:
        missing = [
            f.name for f in obj.fields.values() if f.required and not f.calculated and rec.get(f.name) is None
        ]
        if missing:
            errors.append(
                ApiError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
                )
            )

    def _check_unique(self, obj: ObjectDef, rec: Record, errors: list[ApiError]) -> None:
        for f in obj.fields.values():
            if not f.unique or rec.get(f.name) is None:
                continue
            others = [other for other in self.find_unique(obj, f, rec[f.name]) if other != rec["Id"]]
            if others:
                errors.append(
                    ApiError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record with id: {others[0]}",
                        [],
                    )
                )

    # ---- derived fields ---------------------------------------------------------------------
    def _derive(
        self, obj: ObjectDef, rec: Record, given: set[str], creating: bool, errors: list[ApiError]
    ) -> None:
        name = obj.name
        if name in ("Contact", "User"):
            rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
        elif name == "Opportunity":
            stage = obj.fields["StageName"]
            rec["IsClosed"] = rec.get("StageName") in stage.closed_values
            rec["IsWon"] = rec.get("StageName") in stage.won_values
        elif name == "PricebookEntry":
            product = self._parent(rec, "Product2Id")
            rec["Name"] = product.get("Name") if product else None
            rec["ProductCode"] = product.get("ProductCode") if product else None
        elif name == "Pricebook2":
            rec["IsStandard"] = bool(rec.get("IsStandard"))
        elif name in ("OpportunityLineItem", "OrderItem"):
            entry = self._parent(rec, "PricebookEntryId")
            product = self._parent(entry, "Product2Id") if entry else None
            rec["Product2Id"] = entry.get("Product2Id") if entry else None
            rec["ListPrice"] = entry.get("UnitPrice") if entry else None
            if name == "OpportunityLineItem":
                self._line_item_prices(rec, given, creating, errors)
                opportunity = self._parent(rec, "OpportunityId")
                rec["ProductCode"] = product.get("ProductCode") if product else None
                parts = [
                    opportunity.get("Name") if opportunity else None,
                    product.get("Name") if product else None,
                ]
                rec["Name"] = " ".join(p for p in parts if p)[:376] or None
            elif rec.get("UnitPrice") is not None and rec.get("Quantity") is not None:
                rec["TotalPrice"] = round(rec["UnitPrice"] * rec["Quantity"], 2)
        for f in obj.fields.values():
            if f.auto_number and creating:  # the display format's {000} is the number: CC-{0000000}
                width = f.auto_number.count("0")
                number = str(
                    self.store.next_number(f"{obj.name}.{f.name}") + (100 if width >= 8 else 0)
                ).rjust(width, "0")
                rec[f.name] = re.sub(r"\{0+\}", number, f.auto_number, count=1)

    def _line_item_prices(self, rec: Record, given: set[str], creating: bool, errors: list[ApiError]) -> None:
        if "UnitPrice" in given and "TotalPrice" in given and rec.get("TotalPrice") is not None:
            errors.append(
                ApiError(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "field integrity exception: TotalPrice (only one of unit price or total price may be "
                    "specified)",
                    ["TotalPrice"],
                )
            )
            return
        quantity = rec.get("Quantity")
        if "TotalPrice" in given and rec.get("TotalPrice") is not None and quantity:
            discount = (rec.get("Discount") or 0) / 100
            rec["UnitPrice"] = round(rec["TotalPrice"] / quantity / (1 - discount if discount < 1 else 1), 2)
        if rec.get("UnitPrice") is None:
            if creating:
                errors.append(
                    ApiError(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "field integrity exception: unknown (must specify either UnitPrice or TotalPrice)",
                        [],
                    )
                )
            return
        if quantity is not None:
            discount = (rec.get("Discount") or 0) / 100
            rec["TotalPrice"] = round(rec["UnitPrice"] * quantity * (1 - discount), 2)

    def _parent(self, rec: Record | None, field_name: str) -> Record | None:
        if rec is None or rec.get(field_name) is None:
            return None
        return self.get(rec[field_name])

    # ---- DML ---------------------------------------------------------------------------------
    def create(self, obj: ObjectDef, values: Mapping[str, Any], csv: bool = False) -> str:
        if obj.read_only or obj.is_event:
            raise RecordError(
                [ApiError("INVALID_TYPE", f"entity type {obj.name} does not support insert", [])]
            )
        inputs, errors = self._inputs(obj, values, creating=True, csv=csv)
        rec: Record = {f.name: None for f in obj.fields.values()}
        for f in obj.fields.values():
            if f.default is not None and not f.system:
                rec[f.name] = f.default
        rec.update(inputs)
        record_id = self.store.new_id(obj)
        rec.update(
            Id=record_id,
            IsDeleted=False,
            CreatedDate=self.stamp,
            CreatedById=self.user_id,
            LastModifiedDate=self.stamp,
            LastModifiedById=self.user_id,
            SystemModstamp=self.stamp,
        )
        if "OwnerId" in obj.fields and rec.get("OwnerId") is None:
            rec["OwnerId"] = self.user_id
        self._check_required(obj, rec, errors)
        self._check_references(obj, rec, inputs.keys(), errors)
        if not errors:
            self._derive(obj, rec, set(inputs), creating=True, errors=errors)
        if not errors:
            self._check_unique(obj, rec, errors)
        if errors:
            raise RecordError(errors)
        self._stage(obj, rec)
        self.ops.append(_Op("CREATE", record_id))
        return record_id

    def live(self, obj: ObjectDef | None, record_id: str) -> tuple[ObjectDef, Record]:
        """The record a DML call addresses, or the error Salesforce gives for that ID."""
        normal = ids.normalize(record_id)
        if normal is None:
            raise RecordError([ApiError("MALFORMED_ID", f"malformed id {record_id}", [])])
        target = self.schema.by_prefix(ids.key_prefix(normal))
        if target is None or (obj is not None and target.name != obj.name):
            raise RecordError([ApiError("MALFORMED_ID", f"malformed id {record_id}", [])])
        rec = self.get(normal)
        if rec is None:
            raise RecordError(
                [ApiError("NOT_FOUND", "The requested resource does not exist", [])], status=404
            )
        if rec.get("IsDeleted"):
            raise RecordError([ApiError("ENTITY_IS_DELETED", "entity is deleted", [])], status=404)
        return target, rec

    def update(
        self, obj: ObjectDef | None, record_id: str, values: Mapping[str, Any], csv: bool = False
    ) -> str:
        target, old = self.live(obj, record_id)
        if target.read_only:
            raise RecordError(
                [ApiError("INVALID_TYPE", f"entity type {target.name} does not support update", [])]
            )
        inputs, errors = self._inputs(target, values, creating=False, csv=csv)
        rec = dict(old)
        for f in target.fields.values():
            rec.setdefault(f.name, None)
        rec.update(inputs)
        self._check_required(target, rec, errors)
        self._check_references(target, rec, inputs.keys(), errors)
        if not errors:
            self._derive(target, rec, set(inputs), creating=False, errors=errors)
        if not errors:
            self._check_unique(target, rec, errors)
        if errors:
            raise RecordError(errors)
        changed = [
            f.name for f in target.fields.values() if not f.system and rec.get(f.name) != old.get(f.name)
        ]
        rec.update(LastModifiedDate=self.stamp, LastModifiedById=self.user_id, SystemModstamp=self.stamp)
        self._stage(target, rec)
        self.ops.append(_Op("UPDATE", rec["Id"], changed))
        return str(rec["Id"])

    def upsert(
        self, obj: ObjectDef, ext: FieldDef, value: Any, values: Mapping[str, Any], csv: bool = False
    ) -> tuple[str, bool]:
        """Create or update by external ID; returns (id, created). Several matches: HTTP 300."""
        if ext.name == "Id":
            if value in (None, ""):
                return self.create(obj, values, csv=csv), True
            return self.update(obj, str(value), values, csv=csv), False
        key = coerce(ext, value, csv=csv)
        if key is None:
            raise RecordError([ApiError("MISSING_ARGUMENT", f"{ext.name} not specified", [])])
        found = self.find_unique(obj, ext, key)
        if len(found) > 1:
            raise RecordError(
                [
                    ApiError(
                        "MULTIPLE_CHOICES",
                        f"More than one record found for external id field {ext.name}: {key}",
                        [],
                    )
                ],
                status=300,
                matches=found,
            )
        body = {k: v for k, v in values.items() if obj.find_field(k) is not ext}
        if found:
            return self.update(obj, found[0], body, csv=csv), False
        return self.create(obj, {**body, ext.name: value}, csv=csv), True

    def delete(self, obj: ObjectDef | None, record_id: str) -> str:
        target, old = self.live(obj, record_id)
        if target.read_only:
            raise RecordError(
                [ApiError("INVALID_TYPE", f"entity type {target.name} does not support delete", [])]
            )
        self._delete(target, old)
        return str(old["Id"])

    def _delete(self, obj: ObjectDef, old: Record) -> None:
        rec = dict(old)
        rec.update(
            IsDeleted=True,
            LastModifiedDate=self.stamp,
            LastModifiedById=self.user_id,
            SystemModstamp=self.stamp,
        )
        self._stage(obj, rec)
        self.ops.append(_Op("DELETE", rec["Id"]))
        for rel in obj.children.values():
            if not rel.cascade_delete:
                continue
            child_obj = self.schema.objects[rel.child]
            children = [r for r in self.store.of_type(rel.child) if r.get(rel.field) == rec["Id"]]
            children += [
                r
                for r in self.staged.values()
                if r["attributes_type"] == rel.child
                and r.get(rel.field) == rec["Id"]
                and r["Id"] not in self.store.records
            ]
            for child in children:
                current = self.get(child["Id"])
                if current is not None and not current.get("IsDeleted"):
                    self._delete(child_obj, current)

    def undelete(self, record_id: str) -> str:
        normal = ids.normalize(record_id)
        rec = self.get(normal) if normal else None
        obj = self.schema.by_prefix(ids.key_prefix(normal)) if normal else None
        if rec is None or obj is None:
            raise RecordError([ApiError("INVALID_ID_FIELD", f"invalid record id {record_id}", [])])
        if not rec.get("IsDeleted"):
            raise RecordError([ApiError("UNDELETE_FAILED", "Entity is not in the recycle bin", [])])
        restored = dict(rec)
        restored.update(
            IsDeleted=False,
            LastModifiedDate=self.stamp,
            LastModifiedById=self.user_id,
            SystemModstamp=self.stamp,
        )
        errors: list[ApiError] = []
        self._check_unique(obj, restored, errors)
        if errors:
            raise RecordError(errors)
        self._stage(obj, restored)
        self.ops.append(_Op("UNDELETE", restored["Id"]))
        return str(restored["Id"])

    # ---- commit ------------------------------------------------------------------------------
    def commit(self) -> list[ChangeRecord]:
        """Persist everything staged (one SQLite transaction); the changes for CDC, in order."""
        if not self.staged:
            self.store.flush_meta()
            return []
        changes: list[ChangeRecord] = []
        commit_ms = int(self.moment.timestamp() * 1000)
        for sequence, op in enumerate(self.ops, start=1):
            rec = self.staged[op.record_id]
            fields: dict[str, Any]
            changed: list[str] = []
            if op.change_type in ("CREATE", "UNDELETE"):
                fields = {
                    k: v
                    for k, v in rec.items()
                    if v is not None and k not in CDC_EXCLUDED and k != "attributes_type"
                }
            elif op.change_type == "UPDATE":
                changed = [*op.changed, "LastModifiedDate"]
                fields = {name: rec.get(name) for name in changed}
            else:
                fields = {}
            changes.append(
                ChangeRecord(
                    entity=rec["attributes_type"],
                    change_type=op.change_type,
                    record_ids=[op.record_id],
                    fields=fields,
                    changed_fields=changed,
                    commit_user=self.user_id,
                    origin_client=self.origin_client,
                    transaction_key=self.key,
                    sequence_number=sequence,
                    commit_timestamp_ms=commit_ms,
                    api_name=self.api_name,
                    api_version=self.api_version,
                )
            )
        self.store.write({record_id: _compact(rec) for record_id, rec in self.staged.items()})
        self.staged = {}
        self.ops = []
        self._undo = []
        return changes
