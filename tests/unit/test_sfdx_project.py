"""The sfdx project in salesforce/ is the one description of sagesf's Salesforce metadata: the
emulator's org is built from it, metadata.yaml (the processors' view) is generated from it, and it
grants the integration user every custom field the mappings write and the source reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors.salesforce.sfdx_project import DEFAULT_PROJECT, SfdxProject, SfdxProjectError
from connectors.salesforce.source_mapping import load_source_mapping
from processors.mapping_checks import check_mappings
from processors.mapping_files import FILES, load_mappings
from processors.metadata import SalesforceMetadata, SalesforceObject, load_salesforce_metadata
from sandbox.salesforce.metadata import OrgSchema
from sandbox.salesforce.org_metadata import ORG_METADATA, load_org, org_spec, render

REPO = Path(__file__).resolve().parents[2]
PROJECT = SfdxProject.load(DEFAULT_PROJECT)
GRANTS = PROJECT.permission_sets["Sagesf_Integration"]
# line items have no object permissions of their own: access follows their parent's
CONTROLLED_BY_PARENT = {"OpportunityLineItem", "OrderItem"}


def test_metadata_yaml_is_generated_from_the_standard_objects_and_the_project() -> None:
    assert ORG_METADATA.read_text(encoding="utf-8") == render(org_spec()), (
        "sandbox/salesforce/metadata.yaml is out of date: run python -m sandbox.salesforce.org_metadata"
    )


def test_the_emulator_org_is_the_one_metadata_yaml_describes() -> None:
    emulator, generated = load_org(), OrgSchema.load(ORG_METADATA)
    assert emulator.objects.keys() == generated.objects.keys()
    for name, obj in emulator.objects.items():
        assert obj.describe("62.0") == generated.objects[name].describe("62.0"), name
    assert emulator.change_events == generated.change_events == frozenset(PROJECT.change_events)


def test_every_project_field_is_in_the_emulator_org_as_declared() -> None:
    org = load_org()
    for spec in PROJECT.all_fields():
        described = org.objects[spec.object].fields[spec.name].describe()
        assert described["type"] == spec.describe_type, spec.path
        assert (described["externalId"], described["unique"]) == (spec.external_id, spec.unique), spec.path
        assert [v["value"] for v in described["picklistValues"]] == list(spec.values), spec.path
        if spec.text_length is not None:
            assert described["length"] == spec.text_length, spec.path


@dataclass(frozen=True)
class _Recording(SalesforceMetadata):
    """The metadata the mapping checks see, noting every (object, field) they look up."""

    seen: set[tuple[str, str]] = field(default_factory=set)

    def object(self, name: str) -> SalesforceObject | None:
        found = super().object(name)
        return None if found is None else _RecordingObject(found.name, found.fields, self.seen)


@dataclass(frozen=True)
class _RecordingObject(SalesforceObject):
    seen: set[tuple[str, str]] = field(default_factory=set)

    def field(self, name: str) -> Any:
        self.seen.add((self.name, name))
        return super().field(name)


def test_the_permission_set_lets_the_integration_user_write_every_custom_field_the_mappings_name() -> None:
    mappings = load_mappings(REPO / "mappings")
    metadata = load_salesforce_metadata(ORG_METADATA)
    recording = _Recording(metadata.source, metadata.objects)
    check_mappings({key: getattr(mappings, key) for key in FILES}, recording, None, _no_problem)
    written = {
        (obj, name)
        for obj, name in recording.seen
        if name.endswith("__c") and not obj.endswith("__e") and not PROJECT.fields[obj][name].required
    }
    assert written, "the recording saw no custom field: the mapping checks changed shape"
    assert {f"{o}.{n}" for o, n in written} - {k for k, g in GRANTS.fields.items() if g.editable} == set()
    for obj in {obj for obj, _ in written}:
        # Salesforce controls access to an order's lines by their parent's object permission
        parent = {"OpportunityLineItem": "Opportunity", "OrderItem": "Order"}.get(obj, obj)
        assert GRANTS.objects[parent].edit, obj


def test_the_permission_set_lets_the_source_read_every_custom_field_it_maps() -> None:
    mapping, org = load_source_mapping(), load_org()
    read: set[tuple[str, str]] = set()
    for entity, obj in mapping.objects.items():
        paths = [(entity, p) for p in ([obj.parent.field] if obj.parent else obj.read_paths())]
        for child in (obj.lines, obj.contacts):
            if child is not None:
                paths += [(org.objects[entity].children[child.relationship].child, p) for p in child.paths()]
        read |= {_resolved(org, start, path) for start, path in paths}
    custom = {f"{o}.{n}" for o, n in read if n.endswith("__c")}
    assert custom - {k for k, g in GRANTS.fields.items() if g.readable} == set()
    events = {channel.removeprefix("/event/") for channel in mapping.platform_events}
    readable = {obj for obj, grant in GRANTS.objects.items() if grant.read}
    assert ({o for o, _ in read} | events) - CONTROLLED_BY_PARENT <= readable


def test_a_field_type_the_reader_does_not_know_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "sfdx-project.json").write_text('{"packageDirectories": [{"path": "force-app"}]}')
    fields = tmp_path / "force-app/objects/Account/fields"
    fields.mkdir(parents=True)
    (fields / "Parent__c.field-meta.xml").write_text(
        '<CustomField xmlns="http://soap.sforce.com/2006/04/metadata"><fullName>Parent__c</fullName>'
        "<label>Parent</label><type>Lookup</type></CustomField>"
    )
    refused = r"Parent__c\.field-meta\.xml: Account\.Parent__c: field type 'Lookup'"
    with pytest.raises(SfdxProjectError, match=refused):
        SfdxProject.load(tmp_path)


def _resolved(org: OrgSchema, obj: str, path: str) -> tuple[str, str]:
    """(object, field) at the end of a relationship path (Opportunity, Account.ExternalID__c)."""
    *hops, last = path.split(".")
    for hop in hops:
        reference = org.objects[obj].parent_field(hop)
        assert reference is not None, f"{obj}.{hop}"
        assert reference.reference_to is not None, f"{obj}.{hop}"
        obj = reference.reference_to
    return obj, last


def _no_problem(file: str, path: Any, reason: str) -> None:
    raise AssertionError(f"{file}: {path}: {reason}")
