"""Salesforce records and platform events -> canonical records, by the mapping configuration.

What it owns: `RecordMapper`, which turns one Salesforce record as SOQL returns it (parent
relationships as nested objects, child subqueries as `{"records": [...]}`) or one platform event
payload into a `CanonicalRecord` (sagesf.publisher): the canonical value (a dict fastavro writes with
schemas/<Name>.avsc), its Kafka topic and its key. Anything that cannot be mapped (a required
value empty, a picklist value missing from its value map, a number too large for its decimal, a
malformed external ID) raises `Permanent` naming the Salesforce field and value; the source
dead-letters the event and goes on.

How it works: the mapping (connectors/salesforce/source_mapping.py) says where each canonical
field comes from; values are converted to the field's Avro type: text, decimal rounded half-up
to the schema's scale (precision checked), date (`YYYY-MM-DD`), timestamp (ISO 8601 or epoch
ms), boolean, int, enum symbol. The source builds the structure itself:
- `envelope`: deterministic event_id (a redelivered change keeps its ID), the change's commit
  time, source SALESFORCE, the Salesforce record ID;
- `customer` (CustomerRef) and, for Customer, `ar_division_no`/`customer_no` from an external ID
  `ARDivisionNo-CustomerNo` split at the first '-';
- addresses from compound address parts (Street split into line1, line2, the rest in line3);
- `lines` in `order_by` order (then as read), numbered from 1; `total_amount` left empty by the
  org (Opportunity.Amount without line roll-up) is the sum of the lines' extension amounts;
- `contacts`, `custom_fields` of the record and of each line (values as text);
- a deleted record: `deleted: true` where the schema has it (Customer, Item), else status
  DELETED where the status enum has it (SalesOrder).

Limits: value maps match exactly (case and spaces count). Text is not truncated to Sage's
lengths here; the Sage sink applies them. A child set Salesforce paged (`done: false`, more
lines than one query returns) is a `Permanent` error, never a record short of its lines; the
pages are not followed. A value of the wrong shape (an object or list where a single value
belongs, an epoch outside the calendar, a number beyond its Avro type) is `Permanent` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from connectors.salesforce.source_mapping import (
    AddressSpec,
    CanonicalField,
    ChildSpec,
    CustomerRefSpec,
    FieldSpec,
    RecordSpec,
    SourceMapping,
    canonical_fields,
)
from sagesf.errors import Permanent
from sagesf.publisher import CanonicalRecord

__all__ = ["SOURCE_HEADERS", "RecordMapper", "field_value"]

# every record the Salesforce source publishes says where it came from
SOURCE_HEADERS = (("sagesf.source", b"salesforce"),)


def field_value(record: Mapping[str, Any] | None, path: str) -> Any:
    """The value at `path` (`Name`, `Account.Name`); None when any step is empty.

    Field names match exactly first, then case-insensitively (Salesforce answers in the API name's
    case, which need not be the case the mapping wrote).
    """
    current: Any = record
    for step in path.split("."):
        if not isinstance(current, Mapping):
            return None
        if step in current:
            current = current[step]
            continue
        lowered = step.lower()
        current = next((v for k, v in current.items() if isinstance(k, str) and k.lower() == lowered), None)
    return current


class RecordMapper:
    def __init__(self, mapping: SourceMapping) -> None:
        self.mapping = mapping
        self._schemas: dict[str, dict[str, CanonicalField]] = {}

    def _fields(self, schema: str) -> dict[str, CanonicalField]:
        if schema not in self._schemas:
            self._schemas[schema] = canonical_fields(schema)
        return self._schemas[schema]

    # --- objects ---------------------------------------------------------------------------

    def in_state(self, entity: str, record: Mapping[str, Any]) -> bool:
        """Whether the record is in a state its mapping produces (`when`), e.g. Closed Won."""
        obj = self.mapping.producing(entity)
        if obj is None:
            return False
        return obj.when is None or _text(field_value(record, obj.when.field)) in obj.when.in_

    def enters_state(self, entity: str, event_values: Mapping[str, Any]) -> bool:
        """Whether change event bodies set the `when` field to one of its values."""
        obj = self.mapping.producing(entity)
        if obj is None or obj.when is None or obj.when.field not in event_values:
            return False
        return _text(event_values[obj.when.field]) in obj.when.in_

    def object_record(
        self,
        entity: str,
        record: Mapping[str, Any],
        *,
        event_id: str,
        event_time_ms: int,
        deleted: bool = False,
    ) -> CanonicalRecord:
        obj = self.mapping.producing(entity)
        if obj is None or obj.produces is None or obj.topic is None:
            raise Permanent(f"no mapping produces records for {entity}", field="entityName", value=entity)
        schema = obj.produces
        fields = self._fields(schema)
        record_id = str(field_value(record, "Id") or "")
        value = self._common(entity, obj, record, fields, schema)
        value["envelope"] = _envelope(event_id, event_time_ms, record_id)
        if obj.external_id:
            division, customer_no = _split_external_id(
                entity, obj.external_id, field_value(record, obj.external_id)
            )
            value["ar_division_no"], value["customer_no"] = division, customer_no
        for name, address in obj.addresses.items():
            value[name] = self._address(entity, address, record)
        if obj.lines is not None:
            value["lines"] = self._lines(entity, obj.lines, record)
            if value.get("total_amount") is None and "total_amount" in fields:
                total = sum((line["extension_amount"] for line in value["lines"]), Decimal(0))
                value["total_amount"] = _decimal(total, fields["total_amount"], entity, "lines.TotalPrice")
        if obj.contacts is not None:
            value["contacts"] = self._contacts(entity, obj.contacts, record)
        if deleted:
            _mark_deleted(value, fields)
        _check_required(value, fields, schema, entity)
        return CanonicalRecord(obj.topic, schema, self._key(entity, obj.key, record), value, SOURCE_HEADERS)

    # --- platform events -------------------------------------------------------------------

    def platform_event_record(
        self, channel: str, payload: Mapping[str, Any], *, event_id: str, created_ms: int
    ) -> CanonicalRecord:
        spec = self.mapping.platform_events.get(channel)
        if spec is None or spec.produces is None or spec.topic is None:
            raise Permanent(
                f"no mapping for platform event channel {channel}", field="channel", value=channel
            )
        schema = spec.produces
        fields = self._fields(schema)
        where = channel.rsplit("/", 1)[-1]
        value = self._common(where, spec, payload, fields, schema)
        correlation = field_value(payload, spec.correlation) if spec.correlation else None
        key = self._key(where, spec.key, payload)
        value["envelope"] = {
            **_envelope(event_id, created_ms, key),
            "correlation_id": None if correlation is None else str(correlation),
        }
        _check_required(value, fields, schema, where)
        return CanonicalRecord(spec.topic, schema, key, value, SOURCE_HEADERS)

    # --- the parts -------------------------------------------------------------------------

    def _common(
        self,
        entity: str,
        spec: RecordSpec,
        record: Mapping[str, Any],
        fields: dict[str, CanonicalField],
        schema: str,
    ) -> dict[str, Any]:
        # an empty total is the lines' sum (object_record), not an error yet
        later = frozenset({"total_amount"}) if getattr(spec, "lines", None) is not None else frozenset()
        value = self._mapped_fields(entity, spec.fields, record, fields, later)
        customer: CustomerRefSpec | None = spec.customer
        if customer is not None:
            value["customer"] = self._customer_ref(entity, customer, record)
        if spec.custom_fields:
            value["custom_fields"] = _custom_values(spec.custom_fields, record)
        return value

    def _mapped_fields(
        self,
        entity: str,
        specs: Mapping[str, FieldSpec],
        record: Mapping[str, Any],
        fields: dict[str, CanonicalField],
        later: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """The mapped fields; a required one left empty is an error unless it is in `later`."""
        out: dict[str, Any] = {}
        for name, spec in specs.items():
            converted = self._one(entity, spec, record, fields[name])
            if converted is None and fields[name].required and name not in later:
                sources = " / ".join(f"{entity}.{f}" for f in spec.field) or "the constant"
                raise Permanent(
                    f"{sources} is empty, and the canonical {name} is required",
                    field=f"{entity}.{spec.field[0] if spec.field else name}",
                    value=None,
                )
            if converted is None and not fields[name].nullable:
                continue  # left out: the schema default applies
            out[name] = converted
        return out

    def _one(self, entity: str, spec: FieldSpec, record: Mapping[str, Any], target: CanonicalField) -> Any:
        source = spec.field[0] if spec.field else "(constant)"
        if spec.value is not None:
            raw: Any = spec.value
        else:
            raw = None
            for path in spec.field:
                candidate = field_value(record, path)
                if candidate is not None and candidate != "":
                    raw, source = candidate, path
                    break
        if raw is None:
            raw = spec.default
        if raw is not None and spec.map is not None:
            raw = self._mapped_value(entity, spec.map, source, raw)
        return convert(raw, target, entity, source)

    def _mapped_value(self, entity: str, map_name: str, source: str, raw: Any) -> Any:
        value_map = self.mapping.value_maps[map_name]
        text = _text(raw)
        if text in value_map.values:
            return value_map.values[text]
        if value_map.unknown == "null":
            return None
        if value_map.unknown == "keep":
            return raw
        raise Permanent(
            f"{entity}.{source}: value {text!r} is not in value map {map_name!r} "
            f"(known: {', '.join(sorted(value_map.values))})",
            field=f"{entity}.{source}",
            value=raw,
        )

    def _customer_ref(self, entity: str, spec: CustomerRefSpec, record: Mapping[str, Any]) -> dict[str, Any]:
        external = field_value(record, spec.external_id) if spec.external_id else None
        division, customer_no = (
            _split_external_id(entity, spec.external_id, external) if spec.external_id else (None, None)
        )
        return {
            "salesforce_account_id": _text(field_value(record, spec.account_id)) if spec.account_id else None,
            "ar_division_no": division,
            "customer_no": customer_no,
            "name": _text(field_value(record, spec.name)) if spec.name else None,
        }

    def _address(self, entity: str, spec: AddressSpec, record: Mapping[str, Any]) -> dict[str, Any] | None:
        street, city, state, postal, country = (
            _text(field_value(record, spec.prefix + part))
            for part in ("Street", "City", "State", "PostalCode", "Country")
        )
        if not any((street, city, state, postal, country)):
            return None
        lines = [line.strip() for line in (street or "").splitlines() if line.strip()]
        if country is not None and spec.country_map is not None:
            mapped = self._mapped_value(entity, spec.country_map, spec.prefix + "Country", country)
            country = _text(mapped)
        return {
            "name": _text(field_value(record, spec.name)) if spec.name else None,
            "code": None,
            "line1": lines[0] if lines else None,
            "line2": lines[1] if len(lines) > 1 else None,
            "line3": " ".join(lines[2:]) or None,
            "city": city,
            "state": state,
            "postal_code": postal,
            "country_code": country,
        }

    def _children(self, entity: str, record: Mapping[str, Any], child: ChildSpec) -> list[Mapping[str, Any]]:
        block = field_value(record, child.relationship)
        rows = block.get("records") if isinstance(block, Mapping) else None
        if not isinstance(rows, list):
            return []
        if isinstance(block, Mapping) and block.get("done") is False:
            # Salesforce pages a large child set separately; a record without all of it (an order
            # short of lines) must not be published as if it were whole
            raise Permanent(
                f"{entity}.{child.relationship}: only {len(rows)} of {block.get('totalSize', '?')} came back "
                "in one query (a child set this large is paged by Salesforce; the source does not follow it)",
                field=f"{entity}.{child.relationship}",
                value=block.get("totalSize"),
            )
        children = [r for r in rows if isinstance(r, Mapping)]
        if child.order_by:
            order_by = child.order_by
            children.sort(
                key=lambda r: (field_value(r, order_by) is None, _sortable(field_value(r, order_by)))
            )
        return children

    def _lines(self, entity: str, spec: ChildSpec, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        fields = self._fields("SalesOrderLine")
        where = f"{entity}.{spec.relationship}"
        lines = []
        for number, row in enumerate(self._children(entity, record, spec), start=1):
            line = self._mapped_fields(where, spec.fields, row, fields)
            line["line_no"] = number
            if spec.custom_fields:
                line["custom_fields"] = _custom_values(spec.custom_fields, row)
            _check_required(line, fields, f"SalesOrderLine {number}", where)
            lines.append(line)
        return lines

    def _contacts(self, entity: str, spec: ChildSpec, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        fields = self._fields("Contact")
        where = f"{entity}.{spec.relationship}"
        contacts = []
        for row in self._children(entity, record, spec):
            contact = self._mapped_fields(where, spec.fields, row, fields)
            if spec.address is not None:
                contact["address"] = self._address(where, spec.address, row)
            _check_required(contact, fields, "Contact", where)
            contacts.append(contact)
        return contacts

    def _key(self, entity: str, paths: list[str], record: Mapping[str, Any]) -> str:
        for path in paths:
            value = _text(field_value(record, path))
            if value:
                return value
        raise Permanent(
            f"{entity}: no key, {' and '.join(paths)} {'are' if len(paths) > 1 else 'is'} empty",
            field=f"{entity}.{paths[0]}",
            value=None,
        )


# --- conversions -------------------------------------------------------------------------------


def convert(raw: Any, target: CanonicalField, entity: str, source: str) -> Any:
    """`raw` (a Salesforce JSON value) as the canonical field's Avro type; Permanent if it cannot be."""
    if raw is None or raw == "":
        return None
    try:
        return _CONVERTERS[target.kind](raw, target)
    # OSError: an epoch far outside the calendar (datetime.fromtimestamp raises EOVERFLOW)
    except (ValueError, TypeError, InvalidOperation, ArithmeticError, OSError) as exc:
        raise Permanent(
            f"{entity}.{source}: {raw!r} does not fit {target.name} ({target.kind}): {exc}",
            field=f"{entity}.{source}",
            value=raw,
        ) from None


def _decimal(raw: Any, target: CanonicalField, entity: str, source: str) -> Decimal:
    return convert(raw, target, entity, source)  # type: ignore[no-any-return]


def _to_decimal(raw: Any, target: CanonicalField) -> Decimal:
    if isinstance(raw, bool):
        raise TypeError("a boolean is not a number")
    value = Decimal(str(raw)).quantize(Decimal(1).scaleb(-target.scale), rounding=ROUND_HALF_UP)
    digits = len(value.as_tuple().digits)
    if not value.is_finite() or digits > target.precision:
        raise ValueError(f"more than {target.precision} digits ({target.scale} after the point)")
    return value


def _to_date(raw: Any, target: CanonicalField) -> date:
    if isinstance(raw, date):
        return raw
    return date.fromisoformat(str(raw)[:10])


def _to_timestamp(raw: Any, target: CanonicalField) -> datetime:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw / 1000, UTC)
    moment = datetime.fromisoformat(str(raw))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _to_boolean(raw: Any, target: CanonicalField) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "y"):
        return True
    if text in ("false", "0", "no", "n"):
        return False
    raise ValueError("not a boolean")


def _to_enum(raw: Any, target: CanonicalField) -> str:
    text = str(raw)
    if text not in target.symbols:
        raise ValueError(f"not one of {', '.join(target.symbols)}")
    return text


def _to_int(raw: Any, target: CanonicalField) -> int:
    if isinstance(raw, bool):
        raise TypeError("a boolean is not a number")
    number = Decimal(str(raw))
    if number != number.to_integral_value():
        raise ValueError("not a whole number")
    value = int(number)
    bits = 32 if target.kind == "int" else 64
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(f"outside the {bits}-bit range")
    return value


def _to_text(raw: Any, target: CanonicalField) -> str | None:
    if isinstance(raw, Mapping | list):
        raise TypeError("a compound value (object or list) where a single value belongs")
    return _text(raw)


_CONVERTERS: dict[str, Any] = {
    "string": _to_text,
    "decimal": _to_decimal,
    "date": _to_date,
    "timestamp": _to_timestamp,
    "boolean": _to_boolean,
    "int": _to_int,
    "long": _to_int,
    "double": lambda raw, _t: float(raw),
    "enum": _to_enum,
}


def _custom_values(paths: Mapping[str, str], record: Mapping[str, Any]) -> dict[str, str | None]:
    """custom_fields: each canonical name's Salesforce value, as text."""
    return {name: _text(field_value(record, path)) for name, path in paths.items()}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value))
    return (1, "" if value is None else str(value))


def _envelope(event_id: str, event_time_ms: int, record_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_time": datetime.fromtimestamp(event_time_ms / 1000, UTC),
        "source_system": "SALESFORCE",
        "source_record_id": record_id,
        "correlation_id": None,
    }


def _split_external_id(entity: str, path: str, value: Any) -> tuple[str | None, str | None]:
    text = _text(value)
    if not text:
        return None, None
    division, sep, customer_no = text.partition("-")
    if not sep or not division.strip() or not customer_no.strip():
        raise Permanent(
            f"{entity}.{path}: {text!r} is not ARDivisionNo-CustomerNo (e.g. 01-ABF0001)",
            field=f"{entity}.{path}",
            value=text,
        )
    return division.strip(), customer_no.strip()


def _mark_deleted(value: dict[str, Any], fields: dict[str, CanonicalField]) -> None:
    if "deleted" in fields:
        value["deleted"] = True
    elif "status" in fields and "DELETED" in fields["status"].symbols:
        value["status"] = "DELETED"


def _check_required(value: dict[str, Any], fields: dict[str, CanonicalField], what: str, entity: str) -> None:
    for name, fld in fields.items():
        if fld.required and value.get(name) is None:
            raise Permanent(
                f"{entity}: {what}.{name} is required and the record has no value for it", field=name
            )
