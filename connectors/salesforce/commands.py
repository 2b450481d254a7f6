"""The Salesforce sink's commands and results in Python: reading, coalescing, answering.

What it owns: the mapping between the Avro records on salesforce.commands.v1 /
salesforce.results.v1 (schemas/SalesforceCommand.avsc, SalesforceResult.avsc) and what the sink
works with:
- `parse_command(value)` -> `SalesforceCommand`, checked before anything is sent: a known
  operation, API names that are Salesforce API names (connectors/salesforce/soql.py `is_api_name`:
  they go into URLs and CSV headers), a record ID for UPDATE,
  an external ID field and value for UPSERT (INSERT needs neither: it creates, e.g. publishes a
  platform event), no `Id`/`attributes`/external-ID field among the fields. A command that
  fails is `InvalidCommand` (Permanent): dead-lettered and answered as REJECTED without calling
  Salesforce.
- `coalesce(commands)` -> `Write`s: commands for the same record (same operation and object, same
  record ID, or same external ID field and value, compared case-insensitively as Salesforce does
  for external IDs) become one write whose fields are merged in source_event_time order, ties in
  arrival order: the latest value of each field wins, fields only an earlier command set are kept.
  A burst of N stock updates for one item costs one record in one request.
  The write carries the latest source_event_time of its commands (the sink stamps it into the
  record's version field, stale_guard.py).
- `result_record(...)`: the SalesforceResult dict of one command; `Stale` says why a command
  older than the record was not written (outcome STALE).

Limits: a case-sensitive external ID field is still compared case-insensitively (two values
differing only in case are merged); a record addressed once by ID and once by external ID is two
writes. If the merged write fails, every command merged into it is rejected with that error.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from connectors.salesforce.errors import SalesforceRecordError
from connectors.salesforce.soql import is_api_name
from sagesf.errors import Permanent
from sagesf.stale import Stale

__all__ = [
    "FieldValue",
    "InvalidCommand",
    "Operation",
    "Outcome",
    "SalesforceCommand",
    "Write",
    "WriteApi",
    "coalesce",
    "parse_command",
    "rejected_record",
    "result_record",
]

FieldValue = None | bool | int | float | str
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_RESERVED_FIELDS = frozenset({"id", "attributes"})
_EPOCH = datetime.min.replace(tzinfo=UTC)


class Operation(StrEnum):
    UPSERT = "UPSERT"
    UPDATE = "UPDATE"
    INSERT = "INSERT"  # a new record each time: how platform event messages are published


class Outcome(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    REJECTED = "REJECTED"
    STALE = "STALE"  # nothing written: the record holds a newer change (stale_guard.py)


class WriteApi(StrEnum):
    COLLECTIONS = "COLLECTIONS"
    BULK = "BULK"
    NONE = "NONE"


class InvalidCommand(Permanent):
    """The command itself is malformed; Salesforce is not called."""


@dataclass(frozen=True)
class SalesforceCommand:
    command_id: str
    correlation_id: str | None
    operation: Operation
    sobject: str
    record_id: str | None
    external_id_field: str | None
    external_id: str | None
    fields: Mapping[str, FieldValue]
    source_event_time: datetime | None = None

    @property
    def key_field(self) -> str:
        """The field that finds the record: `Id` for UPDATE, the external ID field for UPSERT, none
        for INSERT (nothing is found: a record is created)."""
        if self.operation is Operation.INSERT:
            return ""
        return "Id" if self.operation is Operation.UPDATE else str(self.external_id_field)

    @property
    def key_value(self) -> str:
        """What the key field must equal; for INSERT the command ID, so only a redelivery of the
        same command is merged with it."""
        if self.operation is Operation.INSERT:
            return self.command_id
        return str(self.record_id if self.operation is Operation.UPDATE else self.external_id)

    def identity(self) -> tuple[str, str, str, str]:
        """What makes two commands address the same record (see the module doc)."""
        value = self.key_value
        if self.operation is Operation.UPDATE:
            value = value[:15]  # 18 = 15 + checksum
        elif self.operation is Operation.UPSERT:
            value = value.lower()
        return (self.operation.value, self.sobject.lower(), self.key_field.lower(), value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_command(value: Any) -> SalesforceCommand:
    """The SalesforceCommand in a decoded record; InvalidCommand when it is not a usable one."""
    if not isinstance(value, Mapping):
        raise InvalidCommand("the record is not a SalesforceCommand", field="value")
    envelope = _mapping(value.get("envelope"))
    command_id = _text(value.get("command_id"))
    if command_id is None:
        raise InvalidCommand("command_id is empty", field="command_id")
    operation_name = str(value.get("operation") or "")
    if operation_name not in Operation.__members__:
        raise InvalidCommand(
            f"operation {operation_name!r} is not UPSERT, UPDATE or INSERT",
            field="operation",
            value=operation_name,
        )
    operation = Operation(operation_name)
    sobject = _text(value.get("sobject")) or ""
    if not is_api_name(sobject):
        raise InvalidCommand(f"sobject {sobject!r} is not an object API name", field="sobject", value=sobject)
    record_id = _text(value.get("record_id"))
    ext_field = _text(value.get("external_id_field"))
    ext_value = _text(value.get("external_id"))
    if operation is Operation.UPDATE:
        if record_id is None or not _RECORD_ID.match(record_id):
            raise InvalidCommand(
                "an UPDATE needs record_id, a 15 or 18 character Salesforce ID",
                field="record_id",
                value=record_id,
            )
    elif operation is Operation.UPSERT:
        if ext_field is None or not is_api_name(ext_field):
            raise InvalidCommand(
                "an UPSERT needs external_id_field, the API name of an external ID field",
                field="external_id_field",
                value=ext_field,
            )
        if ext_value is None:
            raise InvalidCommand("an UPSERT needs external_id, the value to match", field="external_id")
    raw_fields = value.get("fields") or {}
    if not isinstance(raw_fields, Mapping):
        raise InvalidCommand("fields must be a map of field name to value", field="fields")
    fields: dict[str, FieldValue] = {}
    for name, field_value in raw_fields.items():
        if not is_api_name(name):
            raise InvalidCommand(f"field name {name!r} is not a field API name", field="fields", value=name)
        lowered = name.lower()
        if lowered in _RESERVED_FIELDS or (ext_field is not None and lowered == ext_field.lower()):
            raise InvalidCommand(
                f"fields must not set {name}: it says which record to write, not what to write",
                field=name,
            )
        if field_value is not None and not isinstance(field_value, bool | int | float | str):
            raise InvalidCommand(f"field {name} has an unsupported value type", field=name)
        if isinstance(field_value, float) and not math.isfinite(field_value):
            raise InvalidCommand(f"field {name} is {field_value}: Salesforce has no such number", field=name)
        fields[name] = field_value
    when = value.get("source_event_time")
    return SalesforceCommand(
        command_id=command_id,
        correlation_id=_text(envelope.get("correlation_id")),
        operation=operation,
        sobject=sobject,
        record_id=record_id if operation is Operation.UPDATE else None,
        external_id_field=ext_field if operation is Operation.UPSERT else None,
        external_id=ext_value if operation is Operation.UPSERT else None,
        fields=fields,
        source_event_time=when if isinstance(when, datetime) else None,
    )


@dataclass
class Write:
    """One record to write: where (operation, object, key field and value) and the merged fields."""

    operation: Operation
    sobject: str
    key_field: str
    key_value: str
    fields: dict[str, FieldValue]
    members: list[int] = field(default_factory=list)  # positions of the commands merged into it
    source_event_time: datetime | None = None  # the latest of its commands'


def coalesce(commands: Sequence[tuple[int, SalesforceCommand]]) -> list[Write]:
    """One Write per record, fields merged latest-wins (see the module doc); in first-seen order."""
    groups: dict[tuple[str, str, str, str], list[tuple[int, SalesforceCommand]]] = {}
    for position, command in commands:
        groups.setdefault(command.identity(), []).append((position, command))
    writes: list[Write] = []
    for members in groups.values():
        ordered = sorted(members, key=lambda m: (m[1].source_event_time or _EPOCH, m[0]))
        merged: dict[str, FieldValue] = {}
        spelled: dict[str, str] = {}  # field names are case-insensitive: keep the latest spelling
        for _, command in ordered:
            for name, value in command.fields.items():
                old = spelled.pop(name.lower(), None)
                if old is not None:
                    merged.pop(old, None)
                spelled[name.lower()] = name
                merged[name] = value
        latest = ordered[-1][1]
        writes.append(
            Write(
                operation=latest.operation,
                sobject=latest.sobject,
                key_field=latest.key_field,
                key_value=latest.key_value,
                fields=merged,
                members=sorted(position for position, _ in members),
                source_event_time=max(
                    (c.source_event_time for _, c in members if c.source_event_time is not None), default=None
                ),
            )
        )
    return writes


def result_record(
    command: SalesforceCommand,
    *,
    outcome: Outcome,
    api: WriteApi,
    record_id: str | None = None,
    created: bool = False,
    coalesced: int = 1,
    error: Permanent | None = None,
    stale: Stale | None = None,
) -> dict[str, Any]:
    """The SalesforceResult record answering `command`."""
    error_record = None
    if error is not None:
        if isinstance(error, SalesforceRecordError):
            error_record = {
                "status_code": error.status_code,
                "message": error.message,
                "fields": error.fields,
            }
        else:
            error_record = {
                "status_code": None,
                "message": error.reason,
                "fields": [error.field] if error.field else [],
            }
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "source_system": "SALESFORCE",
            "source_record_id": record_id or command.record_id or command.external_id or command.command_id,
            "correlation_id": command.correlation_id,
        },
        "command_id": command.command_id,
        "correlation_id": command.correlation_id,
        "sobject": command.sobject,
        "operation": command.operation.value,
        "outcome": outcome.value,
        "record_id": record_id,
        "external_id_field": command.external_id_field,
        "external_id": command.external_id,
        "created": created,
        "api": api.value,
        "coalesced_commands": coalesced,
        "error": error_record,
        "stale": stale.record() if stale is not None else None,
    }


def rejected_record(value: Any, error: Permanent) -> dict[str, Any]:
    """The REJECTED SalesforceResult of a command too malformed to parse (best effort on its fields)."""
    raw: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    envelope = _mapping(raw.get("envelope"))
    operation = str(raw.get("operation") or "")
    command = SalesforceCommand(
        command_id=_text(raw.get("command_id")) or "",
        correlation_id=_text(envelope.get("correlation_id")),
        operation=Operation.UPDATE,  # placeholder, replaced below
        sobject=_text(raw.get("sobject")) or "",
        record_id=_text(raw.get("record_id")),
        external_id_field=_text(raw.get("external_id_field")),
        external_id=_text(raw.get("external_id")),
        fields={},
    )
    record = result_record(command, outcome=Outcome.REJECTED, api=WriteApi.NONE, error=error)
    record["operation"] = operation if operation in Operation.__members__ else "UNKNOWN"
    return record
