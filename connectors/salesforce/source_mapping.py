"""The CDC source's mapping configuration: Salesforce objects and platform events -> canonical records.

What it owns: reading `mappings/salesforce_source.yaml` (the file's header documents every key),
validating it against the canonical Avro schemas before the source starts, and what follows from
it: which Salesforce fields to read for an object (`read_fields`, with parent paths and child
subqueries), which record a child object's change re-produces (`parent`), the canonical type of
every mapped field (`CanonicalField`), and the value maps.

How it works: pydantic models parse the YAML; `load_source_mapping(path)` then checks every entry
against the schema it produces (schemas/<Name>.avsc, through sagesf.schemas): the canonical
fields exist and are mappable scalars, every required field (no default, not nullable) is mapped
or built by the source, enum targets of value maps are symbols of the enum, topics and value maps
named exist, Salesforce names look like Salesforce names. Any problem raises `MappingError`
naming the file, the entry (`objects.Opportunity.fields.status`) and the reason.

Limits: Salesforce field names are only checked for shape here; the source checks them against
the org at start-up with one `LIMIT 1` query per object (connectors/salesforce/record_reader.py).
Compound addresses are read as their five text parts (Street, City, State, PostalCode,
Country), not StateCode/CountryCode. The structural parts (envelope, customer reference,
addresses, lines, contacts, custom fields, deletion) are built by
connectors/salesforce/record_mapper.py; a record needing another structure needs code there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.salesforce.soql import API_NAME_RULE, is_api_name, is_api_path
from sagesf.errors import MappingError
from sagesf.schemas import SchemaError, schema_json

__all__ = [
    "DEFAULT_MAPPING_FILE",
    "AddressSpec",
    "CanonicalField",
    "FieldSpec",
    "MappingError",
    "ObjectMapping",
    "PlatformEventMapping",
    "RecordSpec",
    "SourceMapping",
    "canonical_fields",
    "load_source_mapping",
]

DEFAULT_MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "salesforce_source.yaml"
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country")
# Canonical fields the source fills itself, never from a field spec.
STRUCTURAL_FIELDS = frozenset(
    {"envelope", "customer", "lines", "contacts", "custom_fields", "deleted", "ar_division_no", "customer_no"}
)
_CHANNEL = re.compile(r"^/event/[A-Za-z][A-Za-z0-9_]*__e$")


# --- the file's shape ----------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_path(path: str) -> str:
    if not is_api_path(path):
        raise ValueError(f"{path!r} is not a Salesforce field name or relationship path ({API_NAME_RULE})")
    return path


def _check_name(name: str, what: str) -> str:
    if not is_api_name(name):
        raise ValueError(f"{name!r} is not a Salesforce {what} ({API_NAME_RULE}, no dots here)")
    return name


class FieldSpec(_Strict):
    """Where one canonical field's value comes from."""

    field: list[str] = Field(default_factory=list)  # the first non-empty one wins
    map: str | None = None  # a value map's name
    value: Any = None  # a constant
    default: Any = None  # used when the Salesforce value is empty

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"field": [data]}
        if isinstance(data, list):
            return {"field": data}
        if isinstance(data, dict) and isinstance(data.get("field"), str):
            return {**data, "field": [data["field"]]}
        return data

    @field_validator("field")
    @classmethod
    def _paths(cls, fields: list[str]) -> list[str]:
        return [_check_path(f) for f in fields]

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if not self.field and self.value is None:
            raise ValueError("needs `field` (a Salesforce field or a list of them) or `value` (a constant)")
        if self.field and self.value is not None:
            raise ValueError("`field` and `value` exclude each other")
        return self


class AddressSpec(_Strict):
    prefix: str  # Billing, Shipping, Mailing, Account.Billing ...
    name: str | None = None  # the addressee
    country_map: str | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        return _check_path(prefix)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        return None if name is None else _check_path(name)

    def paths(self) -> list[str]:
        return [self.prefix + part for part in ADDRESS_PARTS] + ([self.name] if self.name else [])


class CustomerRefSpec(_Strict):
    account_id: str | None = None
    external_id: str | None = None  # ARDivisionNo-CustomerNo
    name: str | None = None

    @field_validator("account_id", "external_id", "name")
    @classmethod
    def _paths(cls, path: str | None) -> str | None:
        return None if path is None else _check_path(path)

    def paths(self) -> list[str]:
        return [p for p in (self.account_id, self.external_id, self.name) if p]


class ChildSpec(_Strict):
    relationship: str  # the child relationship name (OpportunityLineItems)
    order_by: str | None = None
    fields: dict[str, FieldSpec]
    address: AddressSpec | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)  # lines: canonical name -> field

    @field_validator("relationship")
    @classmethod
    def _relationship(cls, name: str) -> str:
        return _check_name(name, "child relationship name")

    @field_validator("order_by")
    @classmethod
    def _order_by(cls, path: str | None) -> str | None:
        return None if path is None else _check_path(path)

    @field_validator("custom_fields")
    @classmethod
    def _custom(cls, fields: dict[str, str]) -> dict[str, str]:
        return {name: _check_path(path) for name, path in fields.items()}

    def paths(self) -> list[str]:
        found = ["Id"] + [p for spec in self.fields.values() for p in spec.field]
        found += self.custom_fields.values()
        if self.order_by:
            found.append(self.order_by)
        if self.address:
            found += self.address.paths()
        return found


class WhenSpec(_Strict):
    field: str  # a field of the object itself (change event bodies carry no parent fields)
    in_: list[str] = Field(alias="in", min_length=1)  # values as text (booleans: true, false)

    @field_validator("field")
    @classmethod
    def _field(cls, name: str) -> str:
        return _check_name(name, "field name of the object itself")

    @field_validator("in_", mode="before")
    @classmethod
    def _as_text(cls, values: Any) -> Any:
        if isinstance(values, list):
            return [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
        return values


class ParentSpec(_Strict):
    object: str
    field: str  # the child's reference to the parent (AccountId)

    @field_validator("object")
    @classmethod
    def _object(cls, name: str) -> str:
        return _check_name(name, "object name")

    @field_validator("field")
    @classmethod
    def _field(cls, name: str) -> str:
        return _check_name(name, "field name")


class RecordSpec(_Strict):
    """What every produced record shares, for objects and platform events."""

    produces: str | None = None
    topic: str | None = None
    key: list[str] = Field(default_factory=list)
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    customer: CustomerRefSpec | None = None
    custom_fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("key")
    @classmethod
    def _key(cls, key: list[str]) -> list[str]:
        return [_check_path(k) for k in key]

    @field_validator("custom_fields")
    @classmethod
    def _custom(cls, fields: dict[str, str]) -> dict[str, str]:
        return {name: _check_path(path) for name, path in fields.items()}


class ObjectMapping(RecordSpec):
    """One Salesforce object: the record it produces, or the parent its changes re-produce."""

    when: WhenSpec | None = None
    external_id: str | None = None
    addresses: dict[str, AddressSpec] = Field(default_factory=dict)
    lines: ChildSpec | None = None
    contacts: ChildSpec | None = None
    parent: ParentSpec | None = None

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, path: str | None) -> str | None:
        return None if path is None else _check_path(path)

    @model_validator(mode="after")
    def _role(self) -> ObjectMapping:
        if self.parent is not None:
            extra = [k for k in ("produces", "topic") if getattr(self, k)]
            if extra or self.key or self.fields:
                raise ValueError(
                    "an object with `parent` produces nothing itself: drop produces/topic/key/fields"
                )
        elif not (self.produces and self.topic and self.key):
            raise ValueError("needs `produces`, `topic` and `key` (or `parent` for a child object)")
        return self

    def read_paths(self) -> list[str]:
        """Every field to select for this object's records (without subqueries)."""
        paths = ["Id", "SystemModstamp", "IsDeleted", *self.key]
        for spec in self.fields.values():
            paths += spec.field
        if self.when:
            paths.append(self.when.field)
        if self.external_id:
            paths.append(self.external_id)
        if self.customer:
            paths += self.customer.paths()
        for address in self.addresses.values():
            paths += address.paths()
        paths += self.custom_fields.values()
        return _unique(paths)

    def select_list(self) -> str:
        """The SELECT list: fields, then the lines and contacts subqueries."""
        parts = self.read_paths()
        for child in (self.lines, self.contacts):
            if child is not None:
                # names only, checked by _check_path/_check_name at load; no value is formatted in
                fields = ", ".join(_unique(child.paths()))
                parts.append(f"(SELECT {fields} FROM {child.relationship})")  # noqa: S608
        return ", ".join(parts)


class PlatformEventMapping(RecordSpec):
    correlation: str | None = None

    @field_validator("correlation")
    @classmethod
    def _correlation(cls, path: str | None) -> str | None:
        return None if path is None else _check_path(path)

    @model_validator(mode="after")
    def _complete(self) -> PlatformEventMapping:
        if not (self.produces and self.topic and self.key):
            raise ValueError("needs `produces`, `topic` and `key`")
        return self


class ValueMap(_Strict):
    values: dict[str, Any]
    unknown: Literal["error", "null", "keep"] = "error"

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, values: Any) -> Any:
        # YAML reads `Net 30: 30` keys as text but `1: x` as ints; Salesforce values are text
        if isinstance(values, dict):
            return {str(k): v for k, v in values.items()}
        return values


class SourceMapping(_Strict):
    version: Literal[1]
    value_maps: dict[str, ValueMap] = Field(default_factory=dict)
    objects: dict[str, ObjectMapping]
    platform_events: dict[str, PlatformEventMapping] = Field(default_factory=dict)

    def producing(self, entity: str) -> ObjectMapping | None:
        """The mapping of an object that produces records itself (not a child object)."""
        mapping = self.objects.get(entity)
        return mapping if mapping is not None and mapping.parent is None else None

    def topics(self) -> set[str]:
        specs: list[RecordSpec] = [*self.objects.values(), *self.platform_events.values()]
        return {spec.topic for spec in specs if spec.topic}


def _unique(paths: list[str]) -> list[str]:
    """Paths in order, each once (Salesforce refuses a field selected twice, in any case)."""
    seen: set[str] = set()
    out: list[str] = []
    for path in paths:
        if path.lower() not in seen:
            seen.add(path.lower())
            out.append(path)
    return out


# --- canonical field types -----------------------------------------------------------------

Kind = Literal["string", "decimal", "date", "timestamp", "boolean", "int", "long", "double", "enum", "other"]


@dataclass(frozen=True)
class CanonicalField:
    """One field of a canonical record, as far as converting a Salesforce value needs to know."""

    name: str
    kind: Kind
    nullable: bool
    required: bool  # no default and not nullable: the record cannot be written without it
    scale: int = 0
    precision: int = 0
    symbols: tuple[str, ...] = ()


def canonical_fields(schema_name: str) -> dict[str, CanonicalField]:
    """The fields of canonical record `schema_name` (schemas/<name>.avsc) by name."""
    expanded = json.loads(schema_json(schema_name))
    named: dict[str, Any] = {}
    _collect_named(expanded, named)
    if not isinstance(expanded, dict) or expanded.get("type") != "record":
        raise SchemaError(f"{schema_name} is not a record schema")
    out: dict[str, CanonicalField] = {}
    for fld in expanded["fields"]:
        node = fld["type"]
        nullable = False
        if isinstance(node, list):
            branches = [b for b in node if b != "null"]
            nullable = len(branches) < len(node)
            node = branches[0] if len(branches) == 1 else {"type": "union"}
        if isinstance(node, str) and node in named:
            node = named[node]
        out[fld["name"]] = _field(fld["name"], node, nullable, "default" in fld)
    return out


def _collect_named(node: Any, named: dict[str, Any], namespace: str = "") -> None:
    if isinstance(node, list):
        for branch in node:
            _collect_named(branch, named, namespace)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "enum", "fixed") and "name" in node:
            ns = node.get("namespace", namespace)
            full = node["name"] if "." in node["name"] else f"{ns}.{node['name']}"
            named[full] = node
            named[node["name"]] = node
            namespace = ns
        for fld in node.get("fields", []) if kind == "record" else []:
            _collect_named(fld.get("type"), named, namespace)
        for key in ("items", "values"):
            if key in node:
                _collect_named(node[key], named, namespace)
        if isinstance(kind, dict | list):
            _collect_named(kind, named, namespace)


def _field(name: str, node: Any, nullable: bool, has_default: bool) -> CanonicalField:
    required = not nullable and not has_default
    if isinstance(node, str):
        simple: dict[str, Kind] = {
            "string": "string",
            "boolean": "boolean",
            "int": "int",
            "long": "long",
            "double": "double",
            "float": "double",
        }
        return CanonicalField(name, simple.get(node, "other"), nullable, required)
    if isinstance(node, dict):
        logical = node.get("logicalType")
        if logical == "decimal":
            return CanonicalField(
                name,
                "decimal",
                nullable,
                required,
                scale=int(node.get("scale", 0)),
                precision=int(node["precision"]),
            )
        if logical == "date":
            return CanonicalField(name, "date", nullable, required)
        if logical == "timestamp-millis":
            return CanonicalField(name, "timestamp", nullable, required)
        if logical == "uuid":
            return CanonicalField(name, "string", nullable, required)
        if node.get("type") == "enum":
            return CanonicalField(name, "enum", nullable, required, symbols=tuple(node["symbols"]))
        if isinstance(node.get("type"), str) and node["type"] in (
            "string",
            "boolean",
            "int",
            "long",
            "double",
        ):
            return _field(name, node["type"], nullable, has_default)
    return CanonicalField(name, "other", nullable, required)


# --- loading and validation ----------------------------------------------------------------


def load_source_mapping(path: Path = DEFAULT_MAPPING_FILE) -> SourceMapping:
    """Read and validate the mapping file; raises MappingError naming file, entry and reason."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    try:
        mapping = SourceMapping.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{path}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise MappingError(problems) from None
    problems = _Validator(mapping).problems()
    if problems:
        raise MappingError([f"{path}: {p}" for p in problems])
    return mapping


class _Validator:
    """Checks a parsed mapping against the canonical schemas; collects every problem."""

    def __init__(self, mapping: SourceMapping) -> None:
        self.mapping = mapping
        self.found: list[str] = []
        self._schemas: dict[str, dict[str, CanonicalField] | None] = {}

    def problems(self) -> list[str]:
        for entity, obj in self.mapping.objects.items():
            where = f"objects.{entity}"
            if not is_api_name(entity):
                self.found.append(f"{where}: {entity!r} is not a Salesforce object name ({API_NAME_RULE})")
            if obj.parent is not None:
                self._parent(where, entity, obj)
            else:
                self._record(where, obj)
        for channel, event in self.mapping.platform_events.items():
            where = f"platform_events.{channel}"
            if not _CHANNEL.match(channel):
                self.found.append(f"{where}: not a platform event channel (/event/<Name>__e)")
            self._record(where, event)
        return self.found

    def _schema(self, where: str, name: str) -> dict[str, CanonicalField] | None:
        if name not in self._schemas:
            try:
                self._schemas[name] = canonical_fields(name)
            except SchemaError as exc:
                self.found.append(f"{where}: no canonical record {name!r}: {exc}")
                self._schemas[name] = None
        return self._schemas[name]

    def _parent(self, where: str, entity: str, obj: ObjectMapping) -> None:
        assert obj.parent is not None
        parent = self.mapping.objects.get(obj.parent.object)
        if parent is None or parent.parent is not None:
            self.found.append(
                f"{where}.parent.object: {obj.parent.object!r} is not an object that produces records"
            )

    def _record(self, where: str, spec: RecordSpec) -> None:
        assert spec.produces is not None
        fields = self._schema(f"{where}.produces", spec.produces)
        if fields is None:
            return
        if "envelope" not in fields:
            self.found.append(f"{where}.produces: {spec.produces} has no envelope: not a canonical record")
        covered = {"envelope"}
        covered |= self._fields(f"{where}.fields", spec.fields, fields, spec.produces)
        if spec.customer is not None:
            covered |= self._structural(where, "customer", fields, spec.produces)
        if spec.custom_fields:
            covered |= self._structural(where, "custom_fields", fields, spec.produces)
        if isinstance(spec, ObjectMapping):
            covered |= self._object_parts(where, spec, fields)
        for name, fld in fields.items():
            if fld.required and name not in covered:
                self.found.append(f"{where}.fields: {spec.produces}.{name} is required and not mapped")

    def _structural(
        self, where: str, name: str, fields: dict[str, CanonicalField], produces: str
    ) -> set[str]:
        if name not in fields:
            self.found.append(f"{where}.{name}: {produces} has no field {name!r}")
            return set()
        return {name}

    def _object_parts(self, where: str, obj: ObjectMapping, fields: dict[str, CanonicalField]) -> set[str]:
        covered: set[str] = set()
        produces = obj.produces or ""
        if obj.external_id:
            for name in ("ar_division_no", "customer_no"):
                covered |= self._structural(f"{where}.external_id", name, fields, produces)
        for name, address in obj.addresses.items():
            if name not in fields or fields[name].kind != "other":
                self.found.append(f"{where}.addresses.{name}: {produces} has no address field {name!r}")
            else:
                covered.add(name)
            self._value_map(f"{where}.addresses.{name}.country_map", address.country_map, None)
        for part, child_schema in (("lines", "SalesOrderLine"), ("contacts", "Contact")):
            child: ChildSpec | None = getattr(obj, part)
            if child is None:
                continue
            covered |= self._structural(where, part, fields, produces)
            child_fields = self._schema(f"{where}.{part}", child_schema)
            if child_fields is None:
                continue
            child_covered = self._fields(f"{where}.{part}.fields", child.fields, child_fields, child_schema)
            if child.custom_fields:
                child_covered |= self._structural(
                    f"{where}.{part}", "custom_fields", child_fields, child_schema
                )
            if part == "lines":
                child_covered.add("line_no")
            if child.address is not None:
                if "address" in child_fields:
                    child_covered.add("address")
                self._value_map(f"{where}.{part}.address.country_map", child.address.country_map, None)
            for name, fld in child_fields.items():
                if fld.required and name not in child_covered:
                    self.found.append(
                        f"{where}.{part}.fields: {child_schema}.{name} is required and not mapped"
                    )
        if "total_amount" in fields and obj.lines is not None:
            covered.add("total_amount")  # empty Amount: the lines' sum
        return covered

    def _fields(
        self, where: str, specs: dict[str, FieldSpec], fields: dict[str, CanonicalField], produces: str
    ) -> set[str]:
        covered: set[str] = set()
        for name, spec in specs.items():
            entry = f"{where}.{name}"
            fld = fields.get(name)
            if fld is None:
                self.found.append(f"{entry}: {produces} has no field {name!r}")
                continue
            if name in STRUCTURAL_FIELDS:
                self.found.append(
                    f"{entry}: {produces}.{name} is built by the source, not mapped field by field"
                )
                continue
            if fld.kind == "other":
                self.found.append(f"{entry}: {produces}.{name} is not a single value and cannot be mapped")
                continue
            covered.add(name)
            self._value_map(entry + ".map", spec.map, fld)
            if fld.kind == "enum":
                for constant in (spec.value, spec.default):
                    if constant is not None and constant not in fld.symbols:
                        self.found.append(f"{entry}: {constant!r} is not one of {', '.join(fld.symbols)}")
        return covered

    def _value_map(self, entry: str, name: str | None, target: CanonicalField | None) -> None:
        if name is None:
            return
        value_map = self.mapping.value_maps.get(name)
        if value_map is None:
            known = ", ".join(sorted(self.mapping.value_maps)) or "none"
            self.found.append(f"{entry}: no value map {name!r} (value_maps has {known})")
            return
        if target is not None and target.kind == "enum":
            wrong = sorted(
                {str(v) for v in value_map.values.values() if v is not None and v not in target.symbols}
            )
            if wrong:
                self.found.append(
                    f"{entry}: value map {name!r} maps to {', '.join(wrong)}, not symbols of "
                    f"{target.name} ({', '.join(target.symbols)})"
                )
