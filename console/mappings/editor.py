"""The mapping editor's model: what one entity and direction shows (`EditorView`: both systems'
fields, the current pairs with their transforms, the value maps they use, each with the problems
found about it) and the edits a mapper makes to a draft (`pair`, `unpair`, `set_value_map`,
`set_code_lookup`).

A new custom field of an object the Salesforce source reads (Account, Opportunity, Product2) is
also added to that object's `custom_fields` in salesforce_source.yaml, so the source starts
reading the field the mapping sends on; removing the pair removes that entry too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap

from console.mappings import yaml_edit
from console.mappings.draft import MappingDraft, Problem
from console.mappings.entities import Direction, Entity
from console.mappings.fields import SageColumnInfo, SalesforceFieldInfo

__all__ = [
    "CUSTOM_TYPES",
    "EditorView",
    "PairRequest",
    "Row",
    "ValueMapEdit",
    "ValueMapView",
    "canonical_name",
    "pair",
    "set_code_lookup",
    "set_transform",
    "set_value_map",
    "unpair",
]

CUSTOM_TYPES = ("text", "number", "date", "datetime", "checkbox", "picklist", "lookup")
UNKNOWN_RULES = ("error", "keep", "null")
SOURCE = "salesforce_source.yaml"


@dataclass
class Row:
    """One pair as the editor lists it."""

    kind: str  # field | custom
    name: str  # the canonical field
    salesforce: str
    sage: str
    type: str
    transform: str
    entry: str  # its entry path in the file, e.g. custom_fields.customer_tier
    problems: list[Problem] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)  # the entry as the file has it
    target: str = ""  # sage | salesforce: what a plain field's entry names (its transforms)


@dataclass
class ValueMapView:
    name: str
    section: str  # picklists | lookups
    rows: list[tuple[str, str]]
    unknown: str
    used_by: str  # e.g. "customer_tier (Customer_Tier__c -> UDF_CUSTOMER_TIER)"
    problems: list[Problem] = field(default_factory=list)
    backwards: bool = False  # a custom field's map: Sage -> Salesforce reads it from right to left

    @property
    def entry(self) -> str:
        return f"{self.section}.{self.name}"


@dataclass
class EditorView:
    entity: Entity
    direction: Direction
    salesforce_fields: list[SalesforceFieldInfo]
    sage_columns: list[SageColumnInfo]
    rows: list[Row]
    value_maps: list[ValueMapView]
    code_lookup: list[tuple[str, str]] | None
    problems: list[Problem]  # all of them
    elsewhere: list[Problem]  # those no row or map of this page shows
    picklist_names: list[str] = field(default_factory=list)  # the file's value maps, for a transform

    @classmethod
    def build(
        cls,
        draft: MappingDraft,
        entity: Entity,
        direction: Direction,
        salesforce_fields: list[SalesforceFieldInfo],
        sage_columns: list[SageColumnInfo],
        problems: list[Problem],
    ) -> EditorView:
        doc, source = draft.read(entity.file), draft.read(SOURCE)
        sf_by_name = {f.name: f for f in salesforce_fields}
        rows = _plain_rows(doc, source, entity, direction) + _custom_rows(doc, entity, direction)
        maps = _value_maps(doc, rows, sf_by_name)
        lookup = (
            [(str(k), str(v)) for k, v in (doc.get("lookup") or {}).items()] if entity.code_lookup else None
        )
        shown: list[Problem] = []
        for row in rows:
            row.problems = [p for p in problems if p.about(entity.file, row.entry)]
            shown += row.problems
        for table in maps:
            table.problems = [p for p in problems if p.about(entity.file, table.entry)]
            shown += table.problems
        if lookup is not None:
            shown += [p for p in problems if p.about(entity.file, "lookup")]
        elsewhere = [p for p in problems if p not in shown]
        return cls(
            entity, direction, salesforce_fields, sage_columns, rows, maps, lookup, problems, elsewhere
        )

    @property
    def lookup_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.about(self.entity.file, "lookup")]

    @property
    def paired_salesforce(self) -> set[str]:
        return {r.salesforce for r in self.rows}

    @property
    def paired_sage(self) -> set[str]:
        return {r.sage for r in self.rows}


def _node(doc: Mapping[str, Any], path: Iterable[str]) -> Mapping[str, Any]:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _source_field(source: Mapping[str, Any], obj: str | None, canonical: str) -> str:
    """The Salesforce field the source reads a canonical field from (for display)."""
    spec = _node(source, ("objects", obj or "", "fields")).get(canonical)
    if isinstance(spec, Mapping):
        return str(spec.get("field") or (f"= {spec['value']}" if "value" in spec else ""))
    if isinstance(spec, list):
        return " / ".join(str(s) for s in spec)
    return str(spec or "")


def _transform(spec: Mapping[str, Any]) -> str:
    parts = []
    if spec.get("map"):
        parts.append(f"value map {spec['map']}")
    if spec.get("lookup"):
        parts.append(f"lookup table {spec['lookup']}")
    if spec.get("overflow") == "truncate":
        parts.append("truncate to the column")
    if spec.get("default") is not None:
        parts.append(f"default {spec['default']!r}")
    if spec.get("outside_code_page") == "error":
        parts.append("refuse text outside the code page")
    return ", ".join(parts) or "copy"


def _plain_rows(
    doc: Mapping[str, Any], source: Mapping[str, Any], entity: Entity, direction: Direction
) -> list[Row]:
    section = entity.sections.get(direction)
    if section is None:
        return []
    back = _node(doc, ("salesforce_to_sage", "fields"))  # customers: the Sage column of a field
    rows = []
    for name, spec in _node(doc, section.path).items():
        spec = spec if isinstance(spec, Mapping) else {}
        if section.target == "sage":
            sf, sage = _source_field(source, entity.source_object, name), str(spec.get("sage", ""))
        else:
            sf = str(spec.get("salesforce", ""))
            sage = str(_node(back, (name,)).get("sage") or f"({name})")
        entry = ".".join((*section.path, str(name)))
        row = Row(
            "field", str(name), sf, sage, "", _transform(spec), entry, spec=dict(spec), target=section.target
        )
        rows.append(row)
    return rows + _address_rows(
        doc, section.path, _node(source, ("objects", entity.source_object or "", "addresses"))
    )


def _address_rows(doc: Mapping[str, Any], path: tuple[str, ...], read: Mapping[str, Any]) -> list[Row]:
    """The address parts a section sends to columns (`addresses` beside its `fields`), each
    standardised by addresses.yaml on the way."""
    if path[-1:] != ("fields",):
        return []
    rows = []
    for key, parts in _node(doc, (*path[:-1], "addresses")).items():
        for part, column in (parts if isinstance(parts, Mapping) else {}).items():
            entry = ".".join((*path[:-1], "addresses", str(key), str(part)))
            prefix = _node(read, (str(key),)).get("prefix")
            sf = f"{prefix} address" if prefix else ""
            rows.append(
                Row("address", f"{key}.{part}", sf, str(column), "", "standardise (addresses.yaml)", entry)
            )
    return rows


def _custom_rows(doc: Mapping[str, Any], entity: Entity, direction: Direction) -> list[Row]:
    rows = []
    for name, spec in _node(doc, entity.custom_fields).items():
        spec = spec if isinstance(spec, Mapping) else {}
        way = spec.get("direction", "both")
        if way != "both" and way != (
            "salesforce_to_sage" if direction == "to_sage" else "sage_to_salesforce"
        ):
            continue
        entry = ".".join((*entity.custom_fields, str(name)))
        kind = str(spec.get("type", "text"))
        rows.append(
            Row(
                "custom",
                str(name),
                str(spec.get("salesforce", "")),
                str(spec.get("sage", "")),
                kind,
                _transform(spec),
                entry,
            )
        )
    return rows


def _value_maps(
    doc: Mapping[str, Any], rows: list[Row], sf_fields: Mapping[str, SalesforceFieldInfo]
) -> list[ValueMapView]:
    """The value maps and lookup tables the rows use; a picklist custom field's map lists every
    picklist value of its Salesforce field (blank where not mapped yet)."""
    out: dict[str, ValueMapView] = {}
    # the custom fields' maps first, the newest pair's (last in the file) on top
    customs = [r for r in rows if r.kind == "custom"]
    for row in [*reversed(customs), *(r for r in rows if r.kind != "custom")]:
        spec = _node(doc, row.entry.split("."))
        for section, key in (("picklists", "map"), ("lookups", "lookup")):
            name = spec.get(key)
            if not name or f"{section}.{name}" in out:
                continue
            current = _node(doc, (section, str(name)))
            values = {str(k): str(v) for k, v in _node(current, ("values",)).items()}
            if row.kind == "custom" and row.salesforce in sf_fields:
                for value in sf_fields[row.salesforce].values:
                    values.setdefault(value, "")
            used_by = f"{row.name} ({row.salesforce} → {row.sage})"
            unknown = str(current.get("unknown", "error") if current.get("unknown") is not None else "null")
            out[f"{section}.{name}"] = ValueMapView(
                str(name), section, list(values.items()), unknown, used_by
            )
    return list(out.values())


# --- edits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairRequest:
    salesforce: str
    sage: str
    type: str = "text"
    name: str = ""  # the canonical name; empty: made from the Salesforce field
    default: str = ""
    direction: str = "both"


def canonical_name(salesforce_field: str) -> str:
    """`Customer_Tier__c` -> `customer_tier`: the canonical name a new custom field gets."""
    base = re.sub(r"__c$", "", salesforce_field)
    base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base)
    return re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_") or "custom_field"


def pair(draft: MappingDraft, entity: Entity, request: PairRequest) -> str:
    """Add (or replace) the custom field pairing `request.salesforce` with `request.sage`; a
    picklist gets a value map of its own and a lookup a table (filled in the grid). Returns the
    canonical name."""
    if request.type not in CUSTOM_TYPES:
        raise ValueError(f"unknown type {request.type!r} (known: {', '.join(CUSTOM_TYPES)})")
    name = request.name.strip() or canonical_name(request.salesforce)
    spec: dict[str, Any] = {"salesforce": request.salesforce, "sage": request.sage}
    if request.type != "text":
        spec["type"] = request.type
    with draft.edit(entity.file) as doc:
        if request.type in ("picklist", "lookup"):
            section, key = ("picklists", "map") if request.type == "picklist" else ("lookups", "lookup")
            spec[key] = name
            tables = yaml_edit.section(doc, (section,))
            if name not in tables:
                yaml_edit.put(tables, name, CommentedMap({"values": yaml_edit.flow({}), "unknown": "error"}))
        if request.default:
            spec["default"] = request.default
        if request.direction != "both":
            spec["direction"] = request.direction
        yaml_edit.put(yaml_edit.section(doc, entity.custom_fields), name, yaml_edit.flow(spec))
    if entity.source_object and request.direction != "sage_to_salesforce":
        with draft.edit(SOURCE) as source:
            fields = yaml_edit.section(source, ("objects", entity.source_object, "custom_fields"))
            yaml_edit.put(fields, name, request.salesforce)
    return name


def unpair(draft: MappingDraft, entity: Entity, name: str) -> None:
    """Remove custom field `name` (its value map stays, for another pair to use or to delete)."""
    with draft.edit(entity.file) as doc:
        yaml_edit.remove(yaml_edit.section(doc, entity.custom_fields), name)
    if entity.source_object:
        with draft.edit(SOURCE) as source:
            objects = source.get("objects") or {}
            fields = (objects.get(entity.source_object) or {}).get("custom_fields")
            if isinstance(fields, CommentedMap):
                yaml_edit.remove(fields, name)


def set_transform(
    draft: MappingDraft,
    entity: Entity,
    entry: str,
    *,
    overflow: str = "",
    default: str = "",
    map_name: str = "",
) -> None:
    """A plain field's transforms: `overflow` truncate (else an overlong value is refused),
    `default` for an empty value, `map` a picklist of the file ("" removes each)."""
    path = tuple(entry.split("."))
    section = next((s for s in entity.sections.values() if s.path == path[:-1]), None)
    if section is None:
        raise ValueError(f"{entry} is not a field of {entity.title.lower()}")
    wanted: dict[str, str] = {"map": map_name}
    if section.target == "sage":
        wanted.update(overflow="truncate" if overflow == "truncate" else "", default=default)
    with draft.edit(entity.file) as doc:
        spec = yaml_edit.section(doc, path[:-1]).get(path[-1])
        if not isinstance(spec, CommentedMap):
            raise ValueError(f"no field {entry} in {entity.file}")
        if map_name and map_name not in (doc.get("picklists") or {}):
            raise ValueError(f"no value map {map_name!r} in {entity.file}")
        for key, value in wanted.items():
            if value:
                yaml_edit.put(spec, key, value)
            else:
                yaml_edit.remove(spec, key)


def _rows(sources: Iterable[str], targets: Iterable[str]) -> dict[str, str]:
    """Grid rows as a mapping; rows with an empty cell are left out (that is how one is removed)."""
    return {s.strip(): t.strip() for s, t in zip(sources, targets, strict=False) if s.strip() and t.strip()}


@dataclass(frozen=True)
class ValueMapEdit:
    """A value-map grid as posted: `sources[i]` -> `targets[i]`, and what an unlisted value does."""

    section: str  # picklists | lookups
    name: str
    sources: list[str]
    targets: list[str]
    unknown: str = "error"


def set_value_map(draft: MappingDraft, entity: Entity, edit: ValueMapEdit) -> None:
    section, name, unknown = edit.section, edit.name, edit.unknown
    if section not in ("picklists", "lookups"):
        raise ValueError(f"no value map section {section!r}")
    if unknown not in UNKNOWN_RULES:
        raise ValueError(f"unknown: {unknown!r} is none of {', '.join(UNKNOWN_RULES)}")
    with draft.edit(entity.file) as doc:
        table = yaml_edit.section(doc, (section, name))
        values = table.get("values")
        if not isinstance(values, CommentedMap):
            values = yaml_edit.flow({})
            yaml_edit.put(table, "values", values)
        yaml_edit.replace_entries(values, _rows(edit.sources, edit.targets))
        yaml_edit.put(table, "unknown", unknown)


def set_code_lookup(draft: MappingDraft, entity: Entity, sources: list[str], targets: list[str]) -> None:
    """products.yaml `lookup`: ProductCode -> ItemCode, as the grid has it."""
    with draft.edit(entity.file) as doc:
        yaml_edit.replace_entries(yaml_edit.section(doc, ("lookup",)), _rows(sources, targets))
