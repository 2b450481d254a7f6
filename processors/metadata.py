"""What the mapping checks know about the two systems: Salesforce objects and Sage 100 columns.

Owns reading the systems' metadata *as data files*, by path (processors import no sandbox or
connector module):
- Salesforce: a YAML file such as mappings/metadata/salesforce.yaml, which `sagesf mappings pull`
  writes from describe (`objects.<Object>.fields.<Field>: {type, label, length, precision, scale,
  values, restricted, referenceTo, externalId, required, createable, updateable, ...}`; the
  sandbox org's sandbox/salesforce/metadata.yaml has the same format). Every object also gets the
  system fields Salesforce adds (Id, IsDeleted, CreatedDate, CreatedById, LastModifiedDate,
  LastModifiedById, SystemModstamp; OwnerId when `owned: true`) unless the file lists them. Names
  are matched case-insensitively, as Salesforce does.
- Sage 100: a YAML file such as mappings/metadata/sage100.yaml, pulled from the ODBC catalog
  (`tables.<Table>: {key: [...], columns: {Name: S30 | N13.2 | date | time}}`).

A file that cannot be read or has the wrong shape raises `MetadataError` naming the file and the
entry. Limits: only what the checks use is kept (types, lengths, scales, picklist values,
external-ID and updateable flags); no record types, dependent picklists or field-level security.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "NUMBER_TYPES",
    "MetadataError",
    "SageColumn",
    "SageMetadata",
    "SageTable",
    "SalesforceField",
    "SalesforceMetadata",
    "SalesforceObject",
    "load_sage_metadata",
    "load_salesforce_metadata",
]

NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist"})
_SYSTEM_FIELDS = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "CreatedById": "reference",
    "LastModifiedDate": "datetime",
    "LastModifiedById": "reference",
    "SystemModstamp": "datetime",
}
_SAGE_TYPE = re.compile(r"^(?:S(?P<length>\d+)|N(?P<precision>\d+)\.(?P<scale>\d+)|(?P<other>date|time))$")


class MetadataError(ValueError):
    """A metadata file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class SalesforceField:
    name: str
    type: str
    length: int | None = None
    scale: int | None = None
    values: tuple[str, ...] = ()
    restricted: bool = False
    external_id: bool = False
    updateable: bool = True

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_TYPES

    @property
    def is_number(self) -> bool:
        return self.type in NUMBER_TYPES


@dataclass(frozen=True)
class SalesforceObject:
    name: str
    fields: dict[str, SalesforceField] = field(default_factory=dict)

    def field(self, name: str) -> SalesforceField | None:
        found = self.fields.get(name)
        if found is None:
            lowered = name.lower()
            found = next((f for n, f in self.fields.items() if n.lower() == lowered), None)
        return found


@dataclass(frozen=True)
class SalesforceMetadata:
    source: str
    objects: dict[str, SalesforceObject]

    def object(self, name: str) -> SalesforceObject | None:
        found = self.objects.get(name)
        if found is None:
            lowered = name.lower()
            found = next((o for n, o in self.objects.items() if n.lower() == lowered), None)
        return found


@dataclass(frozen=True)
class SageColumn:
    name: str
    kind: str  # text | decimal | date | time
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    def describe(self) -> str:
        if self.kind == "text":
            return f"S{self.length}"
        if self.kind == "decimal":
            return f"N{self.precision}.{self.scale}"
        return self.kind


@dataclass(frozen=True)
class SageTable:
    name: str
    key: tuple[str, ...]
    columns: dict[str, SageColumn]


@dataclass(frozen=True)
class SageMetadata:
    source: str
    tables: dict[str, SageTable]

    def column(self, table: str, column: str) -> SageColumn | None:
        found = self.tables.get(table)
        return found.columns.get(column) if found else None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetadataError(f"{path}: metadata file not found") from None
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MetadataError(f"{path}: not valid YAML: {exc}") from None


def load_salesforce_metadata(path: Path | str) -> SalesforceMetadata:
    """The objects, platform events and their fields in a Salesforce metadata file (sandbox
    metadata.yaml format)."""
    path = Path(path)
    data = _read_yaml(path)
    objects_in = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(objects_in, dict):
        raise MetadataError(f"{path}: expected a mapping `objects: {{<Object>: {{fields: ...}}}}`")
    objects: dict[str, SalesforceObject] = {}
    events_in = data.get("platformEvents") or {}
    if not isinstance(events_in, dict):
        raise MetadataError(f"{path}: platformEvents: expected a mapping `{{<Name>__e: {{fields: ...}}}}`")
    for name, spec in [*objects_in.items(), *events_in.items()]:
        if not isinstance(spec, dict) or not isinstance(spec.get("fields", {}), dict):
            raise MetadataError(f"{path}: objects.{name}: expected a mapping with `fields`")
        fields = {n: SalesforceField(n, t, updateable=False) for n, t in _SYSTEM_FIELDS.items()}
        if spec.get("owned"):
            fields["OwnerId"] = SalesforceField("OwnerId", "reference")
        for fname, fspec in (spec.get("fields") or {}).items():
            if not isinstance(fspec, dict) or not isinstance(fspec.get("type"), str):
                raise MetadataError(f"{path}: objects.{name}.fields.{fname}: expected a mapping with `type`")
            calculated = bool(fspec.get("calculated")) or bool(fspec.get("autoNumber"))
            length = fspec.get("length")
            scale = fspec.get("scale")
            fields[str(fname)] = SalesforceField(
                name=str(fname),
                type=fspec["type"],
                length=int(length) if isinstance(length, int) else None,
                scale=int(scale) if isinstance(scale, int) else None,
                values=tuple(str(v) for v in fspec.get("values") or ()),
                restricted=bool(fspec.get("restricted")),
                external_id=bool(fspec.get("externalId")),
                updateable=bool(fspec.get("updateable", not calculated)),
            )
        objects[str(name)] = SalesforceObject(str(name), fields)
    return SalesforceMetadata(str(path), objects)


def _sage_column(path: Path, where: str, name: str, text: Any) -> SageColumn:
    match = _SAGE_TYPE.match(str(text).strip())
    if match is None:
        raise MetadataError(
            f"{path}: {where}.{name}: type {text!r} is not S<length>, N<precision>.<scale>, date or time"
        )
    if match["length"]:
        return SageColumn(name, "text", length=int(match["length"]))
    if match["precision"]:
        return SageColumn(name, "decimal", precision=int(match["precision"]), scale=int(match["scale"]))
    return SageColumn(name, str(match["other"]))


def load_sage_metadata(path: Path | str) -> SageMetadata:
    """The tables and columns in a Sage 100 metadata file (mappings/metadata/sage100.yaml format)."""
    path = Path(path)
    data = _read_yaml(path)
    tables_in = data.get("tables") if isinstance(data, dict) else None
    if not isinstance(tables_in, dict):
        raise MetadataError(f"{path}: expected a mapping `tables: {{<Table>: {{key, columns}}}}`")
    tables: dict[str, SageTable] = {}
    for name, spec in tables_in.items():
        where = f"tables.{name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("columns"), dict):
            raise MetadataError(f"{path}: {where}: expected a mapping with `columns`")
        columns = {
            str(c): _sage_column(path, f"{where}.columns", str(c), t) for c, t in spec["columns"].items()
        }
        key = tuple(str(k) for k in spec.get("key") or ())
        missing = [k for k in key if k not in columns]
        if missing:
            raise MetadataError(f"{path}: {where}.key: {missing} are not columns of the table")
        tables[str(name)] = SageTable(str(name), key, columns)
    return SageMetadata(str(path), tables)
