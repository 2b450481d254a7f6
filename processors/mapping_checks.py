"""The cross-checks of the mapping files against the canonical schemas and the systems' metadata.

What it owns: `check_mappings(models, salesforce, sage, report)`, run by
processors/mapping_files.load_mappings once every file parsed: each rule below reports a problem as
(file key, entry path, reason), and the loader turns it into `<file>:<line>: <entry>: <reason>`.
- Canonical schemas (sagesf.schemas): canonical fields named exist in their record and are not
  structure (envelope, lines); order types and statuses are symbols of their enums; inventory
  sources are InventoryLevel quantities or event_time.
- Salesforce metadata (when given): objects and fields exist, fields written are updateable,
  picklist values named are values of the picklist, external-ID fields are external IDs,
  quantities go to number fields, text fits the field.
- Sage 100 columns (when given): tables and columns exist, UDFs are `UDF_` columns, mapped values,
  defaults, lookup ItemCodes, country and state codes fit their columns, address and price
  rules fit Sage's lengths and scales.
- Round trips: a customer field mapped both ways comes back as it went (`_Checker.round_trips`).
- Plain sense: ISO currency and country codes, positive rates, picklists that exist in the file.

Limits: without metadata only the first and last groups run. Values are checked for length and
picklist membership, not against Sage's data (a TermsCode that fits S2 but is not in AR_TermsCode
passes; the Sage sink refuses it).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from processors.metadata import SageColumn, SageMetadata, SalesforceField, SalesforceMetadata
from sagesf.schemas import SchemaError, schema_json

if TYPE_CHECKING:
    from processors.mapping_model import (
        AddressesMapping,
        CreditReply,
        CustomersMapping,
        CustomField,
        OrdersMapping,
        PricingMapping,
        ProductsMapping,
        SageField,
        SyncStatus,
        ValueMap,
    )

__all__ = ["Report", "check_mappings"]

Path_ = tuple[str | int, ...]
Report = Callable[[str, Path_, str], None]

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# canonical record fields that are structure, not mappable values
_STRUCTURAL = frozenset({"envelope", "customer", "lines", "contacts", "custom_fields", "deleted"})
# what each custom-field type needs: Sage column kinds, Salesforce field types (empty: any), and
# the least length of a text column (a date as YYYY-MM-DD, a date-time as ISO-8601 with Z)
_CUSTOM_SAGE_KINDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "number": ("decimal", "text"),
    "date": ("date", "text"),
    "datetime": ("date", "text"),
    "checkbox": ("text",),
    "picklist": ("text",),
    "lookup": ("text",),
}
_CUSTOM_SALESFORCE_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("string", "textarea", "email", "phone", "url"),
    "number": ("int", "double", "currency", "percent"),
    "date": ("date",),
    "datetime": ("datetime",),
    "checkbox": ("boolean",),
    "picklist": ("picklist",),
    "lookup": ("reference", "id", "string"),
}
_CUSTOM_TEXT_LENGTH = {"date": 10, "datetime": 20, "checkbox": 1}
# the Salesforce object of an order's lines, by the order's object (line custom fields written back)
_LINE_OBJECTS = {"Opportunity": "OpportunityLineItem", "Order": "OrderItem"}


def check_mappings(
    models: Mapping[str, Any],
    salesforce: SalesforceMetadata | None,
    sage: SageMetadata | None,
    report: Report,
    source_maps: Mapping[str, ValueMap] | None = None,
) -> None:
    """Run every cross-check over the parsed files (`models` by file key: customers, orders, ...);
    `source_maps`: the Salesforce source's value map of each Account field (canonical field ->
    map), the first leg of a customer field's round trip."""
    checker = _Checker(salesforce, sage, report)
    checker.run(models)
    if "customers" in models:
        checker.round_trips(models["customers"], source_maps or {})


def _compose(source: ValueMap | None, to_sage: ValueMap) -> dict[str, str]:
    """Salesforce value -> Sage code through the source's map then `to_sage`, explicit entries only
    (no source map: canonical value -> Sage code)."""
    if source is None:
        return dict(to_sage.values)
    return {v: to_sage.values[c] for v, c in source.values.items() if c in to_sage.values}


def _round_trip(
    labels: tuple[str, str, str], to_sage: dict[str, str], to_salesforce: dict[str, str], *, whole: bool
) -> list[str]:
    """What keeps a field (`labels`: its name, Sage column, Salesforce field) from coming back as
    it went, in both directions (see `round_trips`); not `whole`: values that meet only."""
    field, column, target = labels
    sf, sage = f"Salesforce {target}", f"Sage {column}"
    start = sf if whole else f"canonical {field}"  # without the source's map, to_sage starts there
    problems = _one_way(to_sage, to_salesforce, f"{field}: {start}", sage, whole=whole)
    return problems + _one_way(to_salesforce, to_sage, f"{field}: {sage}", sf, whole=whole)


def _one_way(there: dict[str, str], back: dict[str, str], side: str, other: str, *, whole: bool) -> list[str]:
    problems = []
    meet: dict[str, list[str]] = {}
    for value, mapped in there.items():
        meet.setdefault(mapped, []).append(value)
    for mapped, values in meet.items():
        if len(values) > 1:
            named = " and ".join(repr(v) for v in sorted(values))
            problems.append(
                f"{side} values {named} all become {other} {mapped!r}: the way back cannot tell them "
                "apart (give each its own value, or map all but one to nothing)"
            )
        elif not whole:
            continue
        elif mapped not in back:
            problems.append(f"{side} {values[0]!r} goes as {other} {mapped!r}, which has no way back")
        elif back[mapped] != values[0]:
            problems.append(
                f"{side} {values[0]!r} goes as {other} {mapped!r} and comes back as {back[mapped]!r}"
            )
    return problems


@functools.cache
def _record_fields(name: str) -> dict[str, Any]:
    """Field name -> Avro type (expanded JSON) of canonical record `name`."""
    node = json.loads(schema_json(name))
    return {f["name"]: f["type"] for f in node["fields"]}


def _branches(avro_type: Any) -> list[Any]:
    return [b for b in avro_type if b != "null"] if isinstance(avro_type, list) else [avro_type]


def _is_text(avro_type: Any) -> bool:
    return any(b == "string" for b in _branches(avro_type))


def _is_decimal(avro_type: Any) -> bool:
    return any(isinstance(b, dict) and b.get("logicalType") == "decimal" for b in _branches(avro_type))


def _enum_symbols(avro_type: Any) -> list[str] | None:
    for b in _branches(avro_type):
        if isinstance(b, dict) and b.get("type") == "enum":
            return list(b["symbols"])
    return None


@functools.cache
def _order_statuses() -> list[str]:
    return list(json.loads(schema_json("OrderStatus"))["symbols"])


class _Checker:
    """Cross-checks the validated models; reports each problem as (file, entry path, reason)."""

    def __init__(
        self, salesforce: SalesforceMetadata | None, sage: SageMetadata | None, report: Report
    ) -> None:
        self.salesforce = salesforce
        self.sage = sage
        self.report = report

    def run(self, models: Mapping[str, Any]) -> None:
        try:
            self.customers(models["customers"])
            self.orders(models["orders"])
            self.products(models["products"])
            self.pricing(models["pricing"])
            self.addresses(models["addresses"])
        except SchemaError as exc:  # the canonical schemas themselves are broken
            self.report("customers", (), f"the canonical schemas cannot be read: {exc}")

    # --- two-way value maps ---

    def round_trips(self, mapping: CustomersMapping, source_maps: Mapping[str, ValueMap]) -> None:
        """Every customer field mapped both ways comes back as it went: Salesforce value v ->
        (the source's map) canonical -> (`salesforce_to_sage` map) Sage code -> (`sage_to_salesforce`
        map) v again, and Sage code c -> Salesforce value -> c again. Two values that meet in one
        are refused by name: the way back cannot tell them apart.

        Only explicit entries are held to it: a value a map leaves out (`unknown: null` or `keep`)
        is a decision not to carry it, e.g. a Sage terms code Salesforce has no value for keeps the
        Account's terms; a round trip through an `unknown` rule is not checked. Without the
        source's map of the field (no salesforce_source.yaml beside the files) the canonical values
        cannot be compared with the Salesforce ones: only values that meet are refused."""
        there = mapping.salesforce_to_sage.fields
        for name, back in mapping.sage_to_salesforce.fields.items():
            spec = there.get(name)
            if spec is None or spec.map is None or back.map is None:
                continue
            if spec.map in mapping.picklists and back.map in mapping.picklists:
                source = source_maps.get(name)
                to_sage = _compose(source, mapping.picklists[spec.map])
                to_salesforce = mapping.picklists[back.map].values
                path = ("picklists", back.map, "values")
                labels = (name, spec.sage, back.salesforce)
                for reason in _round_trip(labels, to_sage, to_salesforce, whole=source is not None):
                    self.report("customers", path, reason)

    # --- the systems' metadata ---

    def sf_field(self, file: str, path: Path_, obj: str, name: str, *, write: bool = False) -> Any:
        """The Salesforce field, or None (reported) when it does not exist; None too without metadata."""
        if self.salesforce is None:
            return None
        sobject = self.salesforce.object(obj)
        if sobject is None:
            self.report(file, path, f"Salesforce has no object {obj} in {self.salesforce.source}")
            return None
        found = sobject.field(name)
        if found is None:
            self.report(file, path, f"{obj} has no field {name} in {self.salesforce.source}")
            return None
        if write and not found.updateable:
            self.report(file, path, f"{obj}.{name} is not updateable (calculated or system field)")
        return found

    def sf_picklist(self, file: str, path: Path_, obj: str, name: str, values: Iterable[str]) -> None:
        found = self.sf_field(file, path, obj, name, write=True)
        if found is None:
            return
        if found.type != "picklist":
            self.report(file, path, f"{obj}.{name} is a {found.type} field, not a picklist")
            return
        for value in values:
            if value not in found.values:
                self.report(
                    file,
                    path,
                    f"{value!r} is not a value of the picklist {obj}.{name} ({', '.join(found.values)})",
                )

    def sf_text(self, file: str, path: Path_, obj: str, name: str) -> None:
        found = self.sf_field(file, path, obj, name, write=True)
        if found is not None and not found.is_text:
            self.report(file, path, f"{obj}.{name} is a {found.type} field; text is written to it")

    def sage_column(self, file: str, path: Path_, table: str, column: str) -> Any:
        if self.sage is None:
            return None
        if table not in self.sage.tables:
            self.report(file, path, f"Sage table {table} is not in {self.sage.source}")
            return None
        col = self.sage.column(table, column)
        if col is None:
            self.report(file, path, f"{table} has no column {column} in {self.sage.source}")
        return col

    def fits(self, file: str, path: Path_, table: str, column: str, value: str, what: str = "value") -> None:
        col = self.sage_column(file, path, table, column)
        if col is not None and col.kind == "text" and col.length is not None and len(value) > col.length:
            self.report(
                file,
                path,
                f"{what} {value!r} is {len(value)} characters; {table}.{column} holds {col.length}",
            )

    def udf(self, file: str, path: Path_, table: str, column: str) -> None:
        if not column.startswith("UDF_"):
            self.report(file, path, f"{column} is not a user-defined field (Sage names them UDF_...)")
            return
        self.sage_column(file, path, table, column)

    # --- shared sections ---

    def record_field(self, file: str, path: Path_, record: str, name: str) -> Any:
        fields = _record_fields(record)
        if name not in fields or name in _STRUCTURAL:
            known = ", ".join(sorted(set(fields) - _STRUCTURAL))
            self.report(file, path, f"{record} has no mappable field {name!r} (fields: {known})")
            return None
        return fields[name]

    def sage_fields(
        self,
        file: str,
        base: Path_,
        record: str,
        table: str,
        specs: Mapping[str, SageField],
        maps: Mapping[str, ValueMap],
    ) -> None:
        for name, spec in specs.items():
            path = (*base, name)
            avro = self.record_field(file, path, record, name)
            col = self.sage_column(file, (*path, "sage"), table, spec.sage)
            if spec.map is not None and spec.map not in maps:
                self.report(file, (*path, "map"), f"no picklist named {spec.map!r} in this file")
            elif spec.map is not None and col is not None:
                for target in maps[spec.map].values.values():
                    self.fits(file, ("picklists", spec.map), table, spec.sage, target, "mapped value")
            if spec.default is not None:
                self.fits(file, (*path, "default"), table, spec.sage, spec.default, "default")
            if spec.overflow == "truncate" and avro is not None and not _is_text(avro):
                self.report(
                    file, (*path, "overflow"), f"truncate applies to text; {record}.{name} is not text"
                )
            if spec.outside_code_page == "error" and avro is not None and not _is_text(avro):
                self.report(
                    file,
                    (*path, "outside_code_page"),
                    f"outside_code_page applies to text; {record}.{name} is not text",
                )
            if (
                col is not None
                and avro is not None
                and col.kind == "text"
                and not (_is_text(avro) or _enum_symbols(avro))
            ):
                self.report(
                    file, path, f"{record}.{name} is not text but {table}.{spec.sage} is {col.describe()}"
                )

    def custom_fields(
        self,
        file: str,
        objects: Iterable[str],
        table: str,
        specs: Mapping[str, CustomField],
        maps: tuple[Mapping[str, ValueMap], Mapping[str, ValueMap]],
        section: str = "custom_fields",
        written_only: bool = False,
    ) -> None:
        """Each typed custom field: its UDF column and Salesforce field exist and suit its type
        (`_CUSTOM_SAGE_KINDS`, `_CUSTOM_SALESFORCE_TYPES`), its picklist or lookup map exists,
        fits, and can be inverted when the field goes to Salesforce (two values meeting in one
        are refused by name). `written_only`: the Salesforce field is looked up on `objects` only
        when it is written there (order lines: the source mapping checks the fields it reads)."""
        picklists, lookups = maps
        for name, spec in specs.items():
            path: Path_ = (section, name)
            if spec.salesforce is None and spec.sage is None:
                self.report(file, path, "name the Salesforce field, the Sage UDF column, or both")
            values = self.custom_map(file, path, spec, picklists, lookups)
            col = None
            if spec.sage is not None:
                self.udf(file, (*path, "sage"), table, spec.sage)
                col = self.sage.column(table, spec.sage) if self.sage is not None else None
            if col is not None:
                self.custom_column(file, path, spec, (table, col), values)
            checked = spec.salesforce is not None and (spec.to_salesforce or not written_only)
            for obj in objects if checked else ():
                found = self.sf_field(
                    file, (*path, "salesforce"), obj, str(spec.salesforce), write=spec.to_salesforce
                )
                if found is not None:
                    self.custom_salesforce(file, path, obj, spec, found, values)

    def custom_map(
        self,
        file: str,
        path: Path_,
        spec: CustomField,
        picklists: Mapping[str, ValueMap],
        lookups: Mapping[str, ValueMap],
    ) -> ValueMap | None:
        """The picklist or lookup map a custom field names (None, reported, when missing); a map
        read backwards (the field goes to Salesforce) must not have two values meeting in one."""
        section, key, known = (
            ("picklists", spec.map, picklists) if spec.map is not None else ("lookups", spec.lookup, lookups)
        )
        if key is None:
            return None
        if key not in known:
            self.report(
                file,
                (*path, "map" if spec.map else "lookup"),
                f"no {section} entry named {key!r} in this file",
            )
            return None
        if spec.to_salesforce:  # read backwards: Sage value -> Salesforce value
            side = f"{path[-1]}: Salesforce {spec.salesforce}"
            for reason in _one_way(dict(known[key].values), {}, side, f"Sage {spec.sage}", whole=False):
                self.report(file, (section, key, "values"), reason)
        return known[key]

    def custom_column(
        self,
        file: str,
        path: Path_,
        spec: CustomField,
        column: tuple[str, SageColumn],
        values: ValueMap | None,
    ) -> None:
        table, col = column
        kinds = _CUSTOM_SAGE_KINDS[spec.type]
        if col.kind not in kinds:
            self.report(
                file,
                (*path, "sage"),
                f"a {spec.type} field needs a {' or '.join(kinds)} column; {col.name} is {col.describe()}",
            )
            return
        need = _CUSTOM_TEXT_LENGTH.get(spec.type, 0)
        if col.kind == "text" and col.length is not None and col.length < need:
            self.report(
                file,
                (*path, "sage"),
                f"a {spec.type} needs {need} characters; {col.name} is {col.describe()}",
            )
        section = ("picklists", str(spec.map)) if spec.map is not None else ("lookups", str(spec.lookup))
        for value in values.values.values() if values is not None else ():
            self.fits(file, section, table, col.name, value, "mapped value")
        if spec.default is not None:
            self.fits(file, (*path, "default"), table, col.name, spec.default, "default")

    def custom_salesforce(
        self,
        file: str,
        path: Path_,
        obj: str,
        spec: CustomField,
        found: SalesforceField,
        values: ValueMap | None,
    ) -> None:
        types = _CUSTOM_SALESFORCE_TYPES[spec.type]
        where = (*path, "salesforce")
        if types and found.type not in types:
            self.report(
                file,
                where,
                f"a {spec.type} field needs a {' or '.join(types)} field; {obj}.{found.name} is {found.type}",
            )
            return
        if spec.type == "picklist" and values is not None:
            for value in values.values:
                if value not in found.values:
                    self.report(
                        file,
                        ("picklists", str(spec.map)),
                        f"{value!r} is not a value of the picklist {obj}.{found.name} "
                        f"({', '.join(found.values)})",
                    )

    def sync_status(
        self, file: str, base: Path_, objects: Iterable[str], spec: SyncStatus, message: str | None
    ) -> None:
        for obj in objects:
            self.sf_picklist(
                file, (*base, "sync_status"), obj, spec.field, (spec.synced, spec.error, spec.pending)
            )
            if message is not None:
                self.sf_text(file, (*base, "message_field"), obj, message)

    # --- files ---

    def customers(self, mapping: CustomersMapping) -> None:
        file = "customers"
        self.sf_field(
            file, ("identity", "salesforce"), mapping.salesforce_object, mapping.identity.salesforce
        )
        self.udf(file, ("identity", "sage"), mapping.sage_table, mapping.identity.sage)
        ext = self.sf_field(
            file, ("external_id",), mapping.salesforce_object, mapping.external_id, write=True
        )
        if ext is not None and not ext.external_id:
            self.report(file, ("external_id",), f"Account.{mapping.external_id} is not an external ID field")
        if ext is not None and ext.length is not None and self.sage is not None:
            division = self.sage.column(mapping.sage_table, "ARDivisionNo")
            number = self.sage.column(mapping.sage_table, "CustomerNo")
            need = (division.length or 0) + 1 + (number.length or 0) if division and number else 0
            if ext.length < need:
                self.report(
                    file,
                    ("external_id",),
                    f"Account.{mapping.external_id} holds {ext.length} characters; "
                    f"ARDivisionNo-CustomerNo needs up to {need}",
                )
        self.sage_fields(
            file,
            ("salesforce_to_sage", "fields"),
            "Customer",
            mapping.sage_table,
            mapping.salesforce_to_sage.fields,
            mapping.picklists,
        )
        for address, columns in mapping.salesforce_to_sage.addresses.items():
            for part, column in columns.items():
                at: Path_ = ("salesforce_to_sage", "addresses", address, part)
                self.sage_column(file, at, mapping.sage_table, column)
        for name, spec in mapping.sage_to_salesforce.fields.items():
            path = ("sage_to_salesforce", "fields", name)
            self.record_field(file, path, "Customer", name)
            if spec.map is not None and spec.map not in mapping.picklists:
                self.report(file, (*path, "map"), f"no picklist named {spec.map!r} in this file")
            found = self.sf_field(
                file, (*path, "salesforce"), mapping.salesforce_object, spec.salesforce, write=True
            )
            if found is not None and spec.map in mapping.picklists and found.type == "picklist":
                self.sf_picklist(
                    file,
                    ("picklists", str(spec.map)),
                    mapping.salesforce_object,
                    spec.salesforce,
                    mapping.picklists[str(spec.map)].values.values(),
                )
        self.custom_fields(
            file,
            [mapping.salesforce_object],
            mapping.sage_table,
            mapping.custom_fields,
            (mapping.picklists, mapping.lookups),
        )
        if mapping.credit_reply is not None:
            self.credit_reply(file, mapping.credit_reply)
        self.sync_status(
            file,
            ("write_back",),
            [mapping.salesforce_object],
            mapping.write_back.sync_status,
            mapping.write_back.message_field,
        )

    def credit_reply(self, file: str, spec: CreditReply) -> None:
        ext = self.sf_field(file, ("credit_reply", "external_id"), spec.record, spec.external_id, write=True)
        if ext is not None and not ext.external_id:
            self.report(
                file,
                ("credit_reply", "external_id"),
                f"{spec.record}.{spec.external_id} is not an external ID field",
            )
        # the record must have an owner to give it to: the requester
        self.sf_field(file, ("credit_reply", "record"), spec.record, "OwnerId", write=True)
        for value, name in spec.fields.items():
            self.sf_field(file, ("credit_reply", "fields", value), spec.record, name, write=True)
        for event_value, name in spec.event_fields.items():
            self.sf_field(file, ("credit_reply", "event_fields", event_value), spec.event, name, write=True)

    def orders(self, mapping: OrdersMapping) -> None:
        file = "orders"
        order_types = _enum_symbols(_record_fields("SalesOrder")["order_type"]) or []
        for status, start in mapping.start.items():
            if start.order_type not in order_types:
                self.report(
                    file,
                    ("start", status, "order_type"),
                    f"{start.order_type!r} is not an OrderType ({', '.join(order_types)})",
                )
        self.udf(file, ("identity", "sage"), "SO_SalesOrderHeader", mapping.identity.sage)
        self.sage_fields(
            file, ("header",), "SalesOrder", "SO_SalesOrderHeader", mapping.header, mapping.picklists
        )
        self.sage_fields(
            file, ("lines",), "SalesOrderLine", "SO_SalesOrderDetail", mapping.lines, mapping.picklists
        )
        objects = mapping.write_back.objects
        for i, obj in enumerate(objects):
            if obj not in ("Opportunity", "Order"):
                self.report(
                    file, ("write_back", "objects", i), f"{obj!r}: orders come from Opportunity or Order"
                )
        maps = (mapping.picklists, mapping.lookups)
        self.custom_fields(file, objects, "SO_SalesOrderHeader", mapping.custom_fields, maps)
        # a line custom field coming back is written to the line object of each order object
        lines = [_LINE_OBJECTS[obj] for obj in objects if obj in _LINE_OBJECTS]
        self.custom_fields(
            file, lines, "SO_SalesOrderDetail", mapping.line_custom_fields, maps, "line_custom_fields", True
        )
        self.order_columns(mapping)
        wb = mapping.write_back
        for obj in objects:
            found = self.sf_field(file, ("write_back", "order_number"), obj, wb.order_number, write=True)
            if found is not None and found.length is not None and self.sage is not None:
                col = self.sage.column("SO_SalesOrderHeader", "SalesOrderNo")
                if col is not None and col.length is not None and found.length < col.length:
                    self.report(
                        file,
                        ("write_back", "order_number"),
                        f"{obj}.{wb.order_number} holds {found.length} characters; "
                        f"SalesOrderNo is {col.describe()}",
                    )
        self.sync_status(file, ("write_back",), objects, wb.sync_status, wb.message_field)
        st = mapping.order_status
        statuses = _order_statuses()
        for code in st.sage_codes:
            if len(code) != 1:
                self.report(
                    file, ("order_status", "sage_codes", code), "a Sage OrderStatus code is one character"
                )
        for name in st.canonical:
            if name not in statuses:
                self.report(
                    file, ("order_status", "canonical", name), f"not an OrderStatus ({', '.join(statuses)})"
                )
        used = set(st.sage_codes.values()) | set(st.canonical.values())
        for obj in objects:
            for section, values in (("sage_codes", st.sage_codes), ("canonical", st.canonical)):
                for code, value in values.items():
                    self.sf_picklist(file, ("order_status", section, code), obj, wb.order_status, [value])
        for obj, by_value in st.extra_fields.items():
            if obj not in objects:
                self.report(
                    file, ("order_status", "extra_fields", obj), f"{obj} is not one of write_back.objects"
                )
                continue
            for value, fields in by_value.items():
                path = ("order_status", "extra_fields", obj, value)
                if value not in used:
                    self.report(
                        file,
                        path,
                        f"{value!r} is not a status value this map produces ({', '.join(sorted(used))})",
                    )
                for name, field_value in fields.items():
                    found = self.sf_field(file, (*path, name), obj, name, write=True)
                    if found is not None and found.type == "picklist" and field_value not in found.values:
                        self.report(
                            file,
                            (*path, name),
                            f"{field_value!r} is not a value of the picklist {obj}.{name}",
                        )
                    if (
                        found is not None
                        and isinstance(field_value, str)
                        and found.length is not None
                        and len(field_value) > found.length
                    ):
                        self.report(
                            file,
                            (*path, name),
                            f"{len(field_value)} characters; {obj}.{name} holds {found.length}",
                        )

    def order_columns(self, mapping: OrdersMapping) -> None:
        """The address columns of orders.yaml name columns Sage has; line custom fields name a UDF."""
        file = "orders"
        for key, parts in mapping.addresses.items():
            for part, column in parts.items():
                self.sage_column(file, ("addresses", key, part), "SO_SalesOrderHeader", column)
        for name, spec in mapping.line_custom_fields.items():
            path = ("line_custom_fields", name)
            if spec.sage is None:
                self.report(file, (*path, "sage"), "a line custom field goes to a SO_SalesOrderDetail UDF")

    def products(self, mapping: ProductsMapping) -> None:
        file = "products"
        product_code = None
        if self.salesforce is not None:
            obj = self.salesforce.object("Product2")
            product_code = obj.field("ProductCode") if obj else None
        for code, item in mapping.lookup.items():
            path: Path_ = ("lookup", code)
            if not code.strip() or code != code.strip():
                self.report(file, path, "a ProductCode must not be blank or start/end with spaces")
            if not item.strip() or item != item.strip():
                self.report(file, path, f"ItemCode {item!r} must not be blank or start/end with spaces")
            self.fits(file, path, "CI_Item", "ItemCode", item, "ItemCode")
            if (
                product_code is not None
                and product_code.length is not None
                and len(code) > product_code.length
            ):
                self.report(
                    file,
                    path,
                    f"ProductCode is {len(code)} characters; "
                    f"Product2.ProductCode holds {product_code.length}",
                )
        for name, spec in mapping.item_fields.items():
            path = ("item_fields", name)
            self.record_field(file, path, "Item", name)
            if spec.map is not None and spec.map not in mapping.picklists:
                self.report(file, (*path, "map"), f"no picklist named {spec.map!r} in this file")
                continue
            found = self.sf_field(file, (*path, "salesforce"), "Product2", spec.salesforce, write=True)
            if found is not None and spec.map is not None and found.type == "picklist":
                self.sf_picklist(
                    file,
                    ("picklists", spec.map),
                    "Product2",
                    spec.salesforce,
                    mapping.picklists[spec.map].values.values(),
                )
        maps = (mapping.picklists, mapping.lookups)
        self.custom_fields(file, ["Product2"], "CI_Item", mapping.custom_fields, maps)
        inv = mapping.inventory
        ext = self.sf_field(file, ("inventory", "external_id_field"), inv.sobject, inv.external_id_field)
        if ext is not None and not ext.external_id:
            self.report(
                file,
                ("inventory", "external_id_field"),
                f"{inv.sobject}.{inv.external_id_field} is not an external ID field",
            )
        if isinstance(inv.warehouses, list):
            for i, code in enumerate(inv.warehouses):
                self.fits(
                    file,
                    ("inventory", "warehouses", i),
                    "IM_ItemWarehouse",
                    "WarehouseCode",
                    code,
                    "WarehouseCode",
                )
        levels = _record_fields("InventoryLevel")
        for target, source in inv.fields.items():
            path = ("inventory", "fields", target)
            if source != "event_time" and not (source in levels and _is_decimal(levels[source])):
                quantities = sorted(n for n, t in levels.items() if _is_decimal(t))
                self.report(
                    file,
                    path,
                    f"{source!r} is not an InventoryLevel quantity ({', '.join(quantities)}) or event_time",
                )
                continue
            found = self.sf_field(file, path, inv.sobject, target, write=True)
            if found is None:
                continue
            if source == "event_time" and found.type not in ("datetime", "string"):
                self.report(
                    file, path, f"{inv.sobject}.{target} is a {found.type} field; event_time is a datetime"
                )
            elif source != "event_time" and not found.is_number:
                self.report(
                    file, path, f"{inv.sobject}.{target} is a {found.type} field; {source} is a number"
                )

    def pricing(self, mapping: PricingMapping) -> None:
        file = "pricing"
        if not _CURRENCY.match(mapping.home_currency):
            self.report(file, ("home_currency",), f"{mapping.home_currency!r} is not an ISO 4217 code (USD)")
        for code, rate in mapping.rates.items():
            if not _CURRENCY.match(code):
                self.report(file, ("rates", code), f"{code!r} is not an ISO 4217 code (EUR)")
            if not rate.is_finite() or rate <= 0:
                self.report(file, ("rates", code), f"rate {rate} must be a number above 0")
            if code == mapping.home_currency and rate != 1:
                self.report(file, ("rates", code), f"the home currency converts at 1, not {rate}")
        if self.sage is not None:
            col = self.sage.column("SO_SalesOrderDetail", "UnitPrice")
            if col is not None and col.scale is not None and mapping.unit_price_decimals > col.scale:
                self.report(
                    file,
                    ("unit_price_decimals",),
                    f"SO_SalesOrderDetail.UnitPrice keeps {col.scale} decimals",
                )

    def addresses(self, mapping: AddressesMapping) -> None:
        file = "addresses"
        targets = {
            "lines": [
                ("AR_Customer", "AddressLine1"),
                ("SO_SalesOrderHeader", "BillToAddress1"),
                ("SO_SalesOrderHeader", "ShipToAddress1"),
            ],
            "name": [("SO_SalesOrderHeader", "BillToName"), ("SO_SalesOrderHeader", "ShipToName")],
            "city": [("AR_Customer", "City"), ("SO_SalesOrderHeader", "BillToCity")],
            "postal_code": [("AR_Customer", "ZipCode"), ("SO_SalesOrderHeader", "BillToZipCode")],
        }
        rules: dict[str, tuple[Path_, int]] = {"lines": (("lines", "length"), mapping.lines.length)}
        rules.update({k: (("lengths", k, "length"), v.length) for k, v in mapping.lengths.items()})
        for name, (path, length) in rules.items():
            for table, column in targets[name]:
                col = self.sage_column(file, path, table, column)
                if col is not None and col.length is not None and length > col.length:
                    self.report(
                        file, path, f"{length} characters do not fit {table}.{column} ({col.describe()})"
                    )
        for code, sage_code in mapping.countries.items():
            path = ("countries", code)
            if not _COUNTRY.match(code):
                self.report(file, path, f"{code!r} is not an ISO 3166-1 alpha-2 code (US)")
            if sage_code != sage_code.upper() or not sage_code.strip():
                self.report(file, path, f"Sage country code {sage_code!r} must be upper case")
            self.fits(file, path, "AR_Customer", "CountryCode", sage_code, "country code")
        for name, code in mapping.names.items():
            if code not in mapping.countries:
                self.report(file, ("names", name), f"{code!r} is not one of `countries`")
        for country, states in mapping.states.items():
            if country not in mapping.countries:
                self.report(file, ("states", country), f"{country!r} is not one of `countries`")
            for state, code in states.items():
                self.fits(file, ("states", country, state), "AR_Customer", "State", code, "state code")
