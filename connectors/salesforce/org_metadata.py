"""`sagesf mappings pull --salesforce`: the org's objects and fields, described as the integration user.

Owns salesforce-sink's `metadata` hook (sagesf.runner `Component.metadata`): one describe per
object (preflight's `DescribedOrg`), for every object asked for (those the mapping files name,
`--object` extras) and every object and platform event the source mapping
(mappings/salesforce_source.yaml, `SAGESF_SALESFORCE__SOURCE__MAPPING_FILE`) reads, its child
objects and the parents its paths go through included. Each field becomes the entry the mapping
checks read (processors/metadata.py): type, label, length (text), precision and scale (numbers),
picklist values (active ones) and whether the list is restricted, referenceTo, external ID and
unique, `required` (not nillable, createable and not defaulted on create: a create without it
fails), and `createable`/`updateable` when false.

Limits: what field-level security hides from the user is absent, as it is for the sink; an object
the user cannot see is reported missing. No record types or dependent picklists (their values are
all listed).
"""

from __future__ import annotations

from typing import Any

from connectors.salesforce.client import SalesforceConnection, connect
from connectors.salesforce.config import SalesforceSettings
from connectors.salesforce.preflight import DescribedOrg
from connectors.salesforce.source import SalesforceSourceSettings
from connectors.salesforce.source_mapping import SourceMapping, load_source_mapping
from sagesf.config import load_settings
from sagesf.runner import Process
from sagesf.system_metadata import MetadataRequest, PulledMetadata

__all__ = ["describe_org", "field_entry"]

_TEXT = frozenset({"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox"})
_NUMBER = frozenset({"double", "currency", "percent"})


def describe_org(process: Process, request: MetadataRequest) -> PulledMetadata:
    """The hook: describe what is asked and what the source reads; objects missing are named."""
    settings = process.settings(SalesforceSettings)
    connection: SalesforceConnection = connect(settings)
    process.closing(connection.close, "the Salesforce connection")
    org = DescribedOrg(connection.sf)
    mapping = load_source_mapping(load_settings(SalesforceSourceSettings).mapping_file)
    names = _wanted(org, request.objects, mapping)
    objects: dict[str, Any] = {}
    events: dict[str, Any] = {}
    missing: list[str] = []
    for name in sorted(names, key=str.lower):
        described = org.describe(name)
        if described is None:
            missing.append(name)
            continue
        real = str(described["name"])
        (events if real.endswith("__e") else objects)[real] = _object_entry(described)
    body: dict[str, Any] = {"objects": dict(sorted(objects.items()))}
    if events:
        body["platformEvents"] = dict(sorted(events.items()))
    return PulledMetadata("Salesforce", connection.instance_url, body, tuple(missing))


def _wanted(org: DescribedOrg, asked: tuple[str, ...], mapping: SourceMapping) -> set[str]:
    """The objects asked for, and every object and event the source mapping reads."""
    names = {name for name in asked if name}
    for entity, spec in mapping.objects.items():
        names.add(entity)
        paths = [spec.parent.field] if spec.parent is not None else spec.read_paths()
        names |= _hops(org, entity, paths)
        for child in (spec.lines, spec.contacts):
            found = org.child(entity, child.relationship) if child is not None else None
            if child is not None and found is not None:
                names |= {found, *_hops(org, found, child.paths())}
    names |= {channel.removeprefix("/event/") for channel in mapping.platform_events}
    return names


def _hops(org: DescribedOrg, obj: str, paths: list[str]) -> set[str]:
    """The objects the relationship paths (`Account.ExternalID__c`) lead through."""
    found: set[str] = set()
    for path in paths:
        current: str | None = obj
        for hop in path.split(".")[:-1]:
            current = org.parent(current, hop) if current else None
            if current:
                found.add(current)
    return found


def _object_entry(described: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"label": described.get("label"), "labelPlural": described.get("labelPlural")}
    if described.get("keyPrefix"):
        entry["keyPrefix"] = described["keyPrefix"]
    fields = sorted(described.get("fields") or [], key=lambda f: str(f["name"]).lower())
    entry["fields"] = {str(f["name"]): field_entry(f) for f in fields}
    return entry


def field_entry(field: dict[str, Any]) -> dict[str, Any]:
    """One describe field as the metadata file's entry (only what is set, in a fixed order)."""
    type_ = str(field["type"])
    entry: dict[str, Any] = {"type": type_, "label": field.get("label")}
    if type_ in _TEXT and field.get("length"):
        entry["length"] = int(field["length"])
    if type_ in _NUMBER:
        entry.update(precision=int(field.get("precision") or 0), scale=int(field.get("scale") or 0))
    if type_ == "int" and field.get("digits"):
        entry["precision"] = int(field["digits"])
    values = [str(v["value"]) for v in field.get("picklistValues") or [] if v.get("active", True)]
    if values:
        entry["values"] = values
    references = [str(r) for r in field.get("referenceTo") or []]
    if references:
        entry["referenceTo"] = references[0] if len(references) == 1 else references
    createable, updateable = bool(field.get("createable")), bool(field.get("updateable"))
    flags = {
        "required": not field.get("nillable", True) and createable and not field.get("defaultedOnCreate"),
        "restricted": bool(field.get("restrictedPicklist")),
        "externalId": bool(field.get("externalId")),
        "unique": bool(field.get("unique")),
        "calculated": bool(field.get("calculated")) or bool(field.get("autoNumber")),
    }
    entry.update({key: True for key, on in flags.items() if on})
    entry.update(
        {key: False for key, on in (("createable", createable), ("updateable", updateable)) if not on}
    )
    return entry
