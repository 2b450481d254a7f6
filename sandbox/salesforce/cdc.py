"""Change Data Capture event bodies for the Salesforce emulator, built by Salesforce's rules.

What it owns: turning one committed record change (`Change`) into the `data` object of a CDC
message as a CometD (Streaming API) client receives it:
`{"schema": <id>, "payload": {"ChangeEventHeader": {...}, <fields>}}`; the event log adds
`"event": {"replayId": N}` and the channel. Also the channel names (`/data/AccountChangeEvent`,
`/data/Sage_Order__ChangeEvent`) and platform event bodies (`/event/<Name>__e`).

How it works, rule by rule (Change Data Capture Developer Guide, "JSON change event messages"):
- CREATE and UNDELETE carry every non-null field of the record; UPDATE carries only the changed
  fields (a field set to null is present with null) plus LastModifiedDate, and `changedFields`
  names them (LastModifiedDate included); DELETE carries no field.
- Compound fields are nested, as in Salesforce: Account/Order `BillingAddress` and
  `ShippingAddress`, Contact `MailingAddress`, `OtherAddress` and `Name`, Lead/User `Address` and
  `Name`. `BillingCity` becomes `"BillingAddress": {"City": ...}` and an update names it
  `BillingAddress.City` in `changedFields`.
- Fields a change event never carries are dropped: Id (the header's recordIds says it),
  IsDeleted, SystemModstamp, LastViewedDate, LastReferencedDate, and REST's `attributes`.
- Datetimes in REST's format (`2024-05-01T10:00:00.000+0000`) are rewritten to the CDC JSON
  format (`2024-05-01T10:00:00Z`, milliseconds kept only when non-zero).
- `changeOrigin` is `com/salesforce/api/<api>/<version>`, followed by `;client=<id>` when the
  caller sent `Sforce-Call-Options: client=<id>`; gap events have an empty origin.
- Gap events (GAP_CREATE, GAP_UPDATE, GAP_DELETE, GAP_UNDELETE) carry recordIds and no field,
  sequenceNumber 1; GAP_OVERFLOW carries an empty recordIds list.
- `nulledFields` and `diffFields` are empty lists, as CometD JSON clients receive them: in JSON a
  nulled field is present with null, and the Avro bitmap fields are a Pub/Sub API matter.

Limits (where the emulator differs from Salesforce):
- The schema id is a stable hash of the channel name, not of the real Avro schema: it does not
  change when fields are added, and `/event/eventSchema/<id>` is not served.
- `commitNumber` is derived from the commit time and transaction key: increasing across
  milliseconds, not a real system change number.
- Formula and roll-up fields, and LastModifiedById's "only when it changed" rule, are the
  caller's business: the body carries the fields it is given (minus the ones dropped above).
- No merging of identical changes to several records into one event (Salesforce merges them
  within a transaction and one second); the caller decides how many recordIds an event carries.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_API_VERSION = "62.0"  # the sandbox clients' version (client.py); callers pass the real one
ALL_CHANGE_EVENTS = "/data/ChangeEvents"

CHANGE_TYPES = ("CREATE", "UPDATE", "DELETE", "UNDELETE")
GAP_TYPES = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW")

# Never in a change event body (Change Data Capture Developer Guide, "Change Event Fields").
_NEVER_IN_BODY = frozenset(
    {"attributes", "Id", "IsDeleted", "SystemModstamp", "LastViewedDate", "LastReferencedDate"}
)
_ADDRESS_PARTS = (
    "Street",
    "City",
    "State",
    "PostalCode",
    "Country",
    "StateCode",
    "CountryCode",
    "Latitude",
    "Longitude",
    "GeocodeAccuracy",
)
_NAME_PARTS = ("Salutation", "FirstName", "LastName", "MiddleName", "InformalName", "Suffix")


def _address(prefix: str) -> dict[str, tuple[str, str]]:
    return {prefix + part: (prefix + "Address", part) for part in _ADDRESS_PARTS}


def _name() -> dict[str, tuple[str, str]]:
    return {part: ("Name", part) for part in _NAME_PARTS}


# entity -> flat REST field -> (compound field, component) as change events nest them
COMPOUND_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "Account": {**_address("Billing"), **_address("Shipping")},
    "Order": {**_address("Billing"), **_address("Shipping")},
    "Contact": {**_address("Mailing"), **_address("Other"), **_name()},
    "Lead": {**_address(""), **_name()},
    "User": {**_address(""), **_name()},
}

_REST_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{3})\+0000$")


@dataclass
class Change:
    """One committed change of one or more records of one entity, as the REST side reports it."""

    entity: str  # "Account"
    change_type: str  # "CREATE" | "UPDATE" | "DELETE" | "UNDELETE" (or a GAP_* type)
    record_ids: list[str]
    # CREATE/UNDELETE: all non-null fields; UPDATE: changed fields (None when set to null) plus
    # LastModifiedDate; DELETE: {}
    fields: dict[str, Any]
    changed_fields: list[str]  # UPDATE: names of changed fields; else []
    commit_user: str
    origin_client: str | None  # client= value of the caller's Sforce-Call-Options header
    transaction_key: str
    sequence_number: int
    commit_timestamp_ms: int
    api_name: str = "rest"  # soap, rest, bulkapi ... as changeOrigin names the API
    api_version: str = DEFAULT_API_VERSION


def change_channel(entity: str) -> str:
    """The per-object CDC channel: Account -> /data/AccountChangeEvent, Foo__c -> /data/Foo__ChangeEvent."""
    if entity.endswith("__c"):
        return f"/data/{entity[:-3]}__ChangeEvent"
    return f"/data/{entity}ChangeEvent"


def is_change_channel(channel: str) -> bool:
    return channel == ALL_CHANGE_EVENTS or (channel.startswith("/data/") and channel.endswith("ChangeEvent"))


def schema_id(channel: str) -> str:
    """A stable, opaque 22-character id in the style of Salesforce's schema ids."""
    digest = hashlib.sha256(channel.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def gap_change(
    entity: str,
    change_type: str,
    record_ids: list[str] | None,
    commit_user: str,
    commit_timestamp_ms: int | None = None,
) -> Change:
    """A gap event (GAP_CREATE/UPDATE/DELETE/UNDELETE with record ids) or GAP_OVERFLOW (none)."""
    if change_type not in GAP_TYPES:
        raise ValueError(f"not a gap change type: {change_type!r}")
    ids = [] if change_type == "GAP_OVERFLOW" else list(record_ids or [])
    if change_type != "GAP_OVERFLOW" and not ids:
        raise ValueError(f"{change_type} needs at least one record id")
    return Change(
        entity=entity,
        change_type=change_type,
        record_ids=ids,
        fields={},
        changed_fields=[],
        commit_user=commit_user,
        origin_client=None,
        transaction_key=str(uuid.uuid4()),
        sequence_number=1,
        commit_timestamp_ms=commit_timestamp_ms if commit_timestamp_ms is not None else now_ms(),
    )


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def change_origin(change: Change) -> str:
    if change.change_type in GAP_TYPES:
        return ""
    origin = f"com/salesforce/api/{change.api_name}/{change.api_version}"
    if change.origin_client:
        origin += f";client={change.origin_client}"
    return origin


def commit_number(change: Change) -> int:
    tx = int.from_bytes(hashlib.sha256(change.transaction_key.encode()).digest()[:2], "big") % 1000
    return change.commit_timestamp_ms * 1000 + tx


def cdc_datetime(value: Any) -> Any:
    """REST's `2024-05-01T10:00:00.000+0000` as CDC JSON writes it: `2024-05-01T10:00:00Z`."""
    if isinstance(value, str):
        match = _REST_DATETIME.match(value)
        if match:
            seconds, millis = match.groups()
            return f"{seconds}Z" if millis == "000" else f"{seconds}.{millis}Z"
    return value


def _iso_ms(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(entity: str, fields: dict[str, Any], keep_nulls: bool) -> tuple[dict[str, Any], list[str]]:
    """Nest compound fields and drop the ones change events never carry.

    Returns the body and the changedFields names of the fields in it, in the caller's order.
    """
    compounds = COMPOUND_FIELDS.get(entity, {})
    compound_names = {name for name, _ in compounds.values()}
    body: dict[str, Any] = {}
    names: list[str] = []
    for name, value in fields.items():
        if name in _NEVER_IN_BODY or name in compound_names:
            continue  # a REST read-only compound (BillingAddress, Contact.Name) is rebuilt below
        if value is None and not keep_nulls:
            continue
        value = cdc_datetime(value)
        if name in compounds:
            compound, part = compounds[name]
            nested = body.setdefault(compound, {})
            nested[part] = value
            names.append(f"{compound}.{part}")
        else:
            body[name] = value
            names.append(name)
    return body, names


def change_payload(change: Change) -> dict[str, Any]:
    """The `payload` of a change event: ChangeEventHeader plus the body fields."""
    kind = change.change_type
    if kind not in CHANGE_TYPES and kind not in GAP_TYPES:
        raise ValueError(f"unknown change type: {kind!r}")
    changed: list[str] = []
    body: dict[str, Any] = {}
    if kind in ("CREATE", "UNDELETE"):
        body, _ = _body(change.entity, change.fields, keep_nulls=False)
    elif kind == "UPDATE":
        wanted = dict(change.fields)
        wanted.setdefault("LastModifiedDate", _iso_ms(change.commit_timestamp_ms))
        body, names = _body(change.entity, wanted, keep_nulls=True)
        # changedFields: the caller's list first (it may name fields whose value is in `fields`),
        # then whatever else the body carries (LastModifiedDate at least)
        compounds = COMPOUND_FIELDS.get(change.entity, {})
        for name in change.changed_fields:
            label = f"{compounds[name][0]}.{compounds[name][1]}" if name in compounds else name
            if label not in changed and name not in _NEVER_IN_BODY:
                changed.append(label)
        for label in names:
            if label not in changed:
                changed.append(label)
    header = {
        "entityName": change.entity,
        "recordIds": [] if kind == "GAP_OVERFLOW" else list(change.record_ids),
        "changeType": kind,
        "changeOrigin": change_origin(change),
        "transactionKey": change.transaction_key,
        "sequenceNumber": 1 if kind in GAP_TYPES else change.sequence_number,
        "commitTimestamp": change.commit_timestamp_ms,
        "commitNumber": commit_number(change),
        "commitUser": change.commit_user,
        "nulledFields": [],
        "diffFields": [],
        "changedFields": changed,
    }
    return {"ChangeEventHeader": header, **body}


def change_data(change: Change) -> dict[str, Any]:
    """The `data` object of a change event message, without the `event` (replay id) part."""
    return {"schema": schema_id(change_channel(change.entity)), "payload": change_payload(change)}


def platform_event_data(channel: str, payload: dict[str, Any], created_ms: int) -> dict[str, Any]:
    """The `data` object of a platform event message; CreatedDate is added when missing."""
    body = {name: cdc_datetime(value) for name, value in payload.items() if name != "attributes"}
    if "CreatedDate" not in body:
        moment = datetime.fromtimestamp(created_ms / 1000, UTC)
        body["CreatedDate"] = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created_ms % 1000:03d}Z"
    return {"schema": schema_id(channel), "payload": body}
