"""The emulated org's schema: objects, fields, relationships and platform events, from a metadata mapping.

What it owns: `OrgSchema.from_spec(raw)` reads a mapping in the format of metadata.yaml (keys
documented at the top of standard_objects.yaml; org_metadata.py builds it from the standard
objects and the sfdx project) into `ObjectDef`/`FieldDef`, adds the system fields every
Salesforce object has (Id, IsDeleted, CreatedDate, CreatedById, LastModifiedDate,
LastModifiedById, SystemModstamp, and OwnerId on owned objects), links each reference field to its
parent (`relationshipName`, e.g. `Account`) and each parent to its children (`childRelationship`,
e.g. `Contacts`), keeps which objects are selected for Change Data Capture (`changeDataCapture`)
and renders the REST describe bodies (`describe()`, `describe_global_entry()`).

Field and object names are case-insensitive on input, as in Salesforce; `ObjectDef.field` finds a
field by any case and the API answers with the declared case.

Limits: `sharingModel` is read and kept; only UserRecordAccess answers by it
(record_access.py): queries do not enforce sharing, so every user reads every record
(records.py). No record types, field-level security, formula fields (derived
values are computed in records.py), dependent picklists, compound address fields or
multi-currency. Polymorphic references are not supported (OwnerId, CreatedById point at User
only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STRING_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
ID_TYPES = frozenset({"id", "reference"})
KNOWN_TYPES = STRING_TYPES | NUMBER_TYPES | ID_TYPES | {"boolean", "date", "datetime"}
SHARING_MODELS = frozenset({"Private", "Read", "ReadWrite"})

SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


class MetadataError(ValueError):
    """The metadata file is not valid; the message names the object and field."""


@dataclass
class FieldDef:
    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False
    default: Any = None
    values: list[str] = field(default_factory=list)
    restricted: bool = False
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    reference_to: str | None = None
    relationship_name: str | None = None
    child_relationship: str | None = None
    cascade_delete: bool = False
    calculated: bool = False
    auto_number: str | None = None
    createable: bool = True
    updateable: bool = True
    custom: bool = False
    system: bool = False
    defaulted: bool = False  # Salesforce sets it on create when none is given (OwnerId)
    closed_values: frozenset[str] = frozenset()
    won_values: frozenset[str] = frozenset()

    @property
    def nillable(self) -> bool:
        """As a real org: required, checkbox, system and defaulted fields (OwnerId) are not."""
        return not (self.required or self.system or self.defaulted) and self.type != "boolean"

    @property
    def indexed(self) -> bool:
        """Looked up through the in-memory unique index (external IDs and unique fields)."""
        return self.external_id or self.unique

    def describe(self) -> dict[str, Any]:
        is_text = self.type in STRING_TYPES or self.type in ID_TYPES
        length = self.length if self.type in STRING_TYPES else (18 if self.type in ID_TYPES else 0)
        return {
            "aggregatable": self.type not in ("textarea",),
            "autoNumber": self.auto_number is not None,
            "byteLength": length * 3 if is_text else 0,
            "calculated": self.calculated,
            "caseSensitive": self.case_sensitive,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default if self.type == "boolean" else None,
            "defaultedOnCreate": self.default is not None
            or self.system
            or self.defaulted
            or self.auto_number is not None,
            "digits": self.precision if self.type == "int" else 0,
            "externalId": self.external_id,
            "filterable": self.type != "textarea" or self.length <= 255,
            "groupable": self.type not in ("double", "currency", "percent", "datetime", "textarea"),
            "idLookup": self.name == "Id" or self.indexed,
            "label": self.label,
            "length": length,
            "name": self.name,
            "nillable": self.nillable,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.values
            ],
            "precision": self.precision if self.type in ("double", "currency", "percent") else 0,
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted,
            "scale": self.scale if self.type in ("double", "currency", "percent") else 0,
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.type != "textarea" or self.length <= 255,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


@dataclass
class ChildRelationship:
    name: str
    child: str
    field: str
    cascade_delete: bool


@dataclass
class ObjectDef:
    name: str
    key_prefix: str
    label: str
    label_plural: str
    fields: dict[str, FieldDef]
    is_event: bool = False
    read_only: bool = False
    custom: bool = False
    sharing_model: str = "ReadWrite"  # the org-wide default; only UserRecordAccess follows it
    children: dict[str, ChildRelationship] = field(default_factory=dict)
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, repr=False)
    _parents: dict[str, FieldDef] = field(default_factory=dict, repr=False)
    _children_lower: dict[str, ChildRelationship] = field(default_factory=dict, repr=False)

    def index(self) -> None:
        self._by_lower = {name.lower(): f for name, f in self.fields.items()}
        self._parents = {
            f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name is not None
        }
        self._children_lower = {name.lower(): rel for name, rel in self.children.items()}

    def find_field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def parent_field(self, relationship: str) -> FieldDef | None:
        """The reference field behind a parent relationship name (`Account` -> AccountId)."""
        return self._parents.get(relationship.lower())

    def child(self, relationship: str) -> ChildRelationship | None:
        return self._children_lower.get(relationship.lower())

    @property
    def createable(self) -> bool:
        return not self.read_only

    def describe_global_entry(self, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "activateable": False,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deletable": self.createable and not self.is_event,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": not self.is_event,
            "mergeable": False,
            "name": self.name,
            "queryable": not self.is_event,
            "replicateable": not self.is_event,
            "retrieveable": not self.is_event,
            "searchable": not self.is_event,
            "triggerable": True,
            "undeletable": self.createable and not self.is_event,
            "updateable": self.createable and not self.is_event,
            "urls": {
                "rowTemplate": f"{base}/{{ID}}",
                "describe": f"{base}/describe",
                "sobject": base,
            },
        }

    def describe(self, version: str) -> dict[str, Any]:
        body = self.describe_global_entry(version)
        body["fields"] = [f.describe() for f in self.fields.values()]
        body["childRelationships"] = [
            {
                "cascadeDelete": rel.cascade_delete,
                "childSObject": rel.child,
                "deprecatedAndHidden": False,
                "field": rel.field,
                "relationshipName": rel.name,
                "restrictedDelete": False,
            }
            for rel in self.children.values()
        ]
        body["recordTypeInfos"] = []
        body["supportedScopes"] = [{"label": "All", "name": "everything"}]
        return body


def _system_fields(owned: bool, is_event: bool) -> dict[str, FieldDef]:
    def system(name: str, type_: str, label: str, **kw: Any) -> FieldDef:
        return FieldDef(name, type_, label, createable=False, updateable=False, system=True, **kw)

    if is_event:
        return {
            "ReplayId": system("ReplayId", "string", "Replay ID", length=255),
            "CreatedDate": system("CreatedDate", "datetime", "Created Date"),
            "CreatedById": system(
                "CreatedById",
                "reference",
                "Created By ID",
                reference_to="User",
                relationship_name="CreatedBy",
            ),
            "EventUuid": system("EventUuid", "string", "Event UUID", length=36),
        }
    fields = {
        "Id": system("Id", "id", "Record ID", length=18),
        "IsDeleted": system("IsDeleted", "boolean", "Deleted", default=False),
    }
    if owned:
        fields["OwnerId"] = FieldDef(
            "OwnerId",
            "reference",
            "Owner ID",
            reference_to="User",
            relationship_name="Owner",
            defaulted=True,
        )
    fields.update(
        {
            "CreatedDate": system("CreatedDate", "datetime", "Created Date"),
            "CreatedById": system(
                "CreatedById",
                "reference",
                "Created By ID",
                reference_to="User",
                relationship_name="CreatedBy",
            ),
            "LastModifiedDate": system("LastModifiedDate", "datetime", "Last Modified Date"),
            "LastModifiedById": system(
                "LastModifiedById",
                "reference",
                "Last Modified By ID",
                reference_to="User",
                relationship_name="LastModifiedBy",
            ),
            "SystemModstamp": system("SystemModstamp", "datetime", "System Modstamp"),
        }
    )
    return fields


def _field(obj: str, name: str, spec: dict[str, Any]) -> FieldDef:
    where = f"{obj}.{name}"
    if not isinstance(spec, dict):
        raise MetadataError(f"{where}: a field is a mapping of keys, got {spec!r}")
    type_ = spec.get("type")
    if type_ not in KNOWN_TYPES:
        raise MetadataError(f"{where}: unknown type {type_!r} (one of {sorted(KNOWN_TYPES)})")
    unknown = set(spec) - {
        "type",
        "label",
        "length",
        "precision",
        "scale",
        "required",
        "default",
        "values",
        "restricted",
        "externalId",
        "unique",
        "caseSensitive",
        "referenceTo",
        "relationshipName",
        "childRelationship",
        "cascadeDelete",
        "calculated",
        "autoNumber",
        "createable",
        "updateable",
        "closed",
        "won",
    }
    if unknown:
        raise MetadataError(f"{where}: unknown keys {sorted(unknown)}")
    calculated = bool(spec.get("calculated", False))
    auto_number = spec.get("autoNumber")
    writable = not calculated and auto_number is None
    length = int(spec.get("length", 255 if type_ in STRING_TYPES else 0))
    if type_ == "reference" and not spec.get("referenceTo"):
        raise MetadataError(f"{where}: a reference needs referenceTo")
    values = [str(v) for v in spec.get("values", [])]
    if type_ == "picklist" and not values:
        raise MetadataError(f"{where}: a picklist needs values")
    return FieldDef(
        name=name,
        type=type_,
        label=str(spec.get("label", name.removesuffix("__c").replace("_", " "))),
        length=length,
        precision=int(spec.get("precision", 18 if type_ in NUMBER_TYPES else 0)),
        scale=int(spec.get("scale", 0)),
        required=bool(spec.get("required", False)),
        default=spec.get("default", False if type_ == "boolean" else None),
        values=values,
        restricted=bool(spec.get("restricted", False)),
        external_id=bool(spec.get("externalId", False)),
        unique=bool(spec.get("unique", False)),
        case_sensitive=bool(spec.get("caseSensitive", False)),
        reference_to=spec.get("referenceTo"),
        relationship_name=spec.get("relationshipName"),
        child_relationship=spec.get("childRelationship"),
        cascade_delete=bool(spec.get("cascadeDelete", False)),
        calculated=calculated,
        auto_number=auto_number,
        createable=bool(spec.get("createable", writable)) and writable,
        updateable=bool(spec.get("updateable", writable)) and writable,
        custom=name.endswith("__c"),
        closed_values=frozenset(str(v) for v in spec.get("closed", [])),
        won_values=frozenset(str(v) for v in spec.get("won", [])),
    )


def _sharing_model(obj: str, spec: dict[str, Any]) -> str:
    value = str(spec.get("sharingModel", "ReadWrite"))
    if value not in SHARING_MODELS:
        raise MetadataError(f"{obj}: sharingModel {value!r} is not one of {sorted(SHARING_MODELS)}")
    return value


@dataclass
class OrgSchema:
    objects: dict[str, ObjectDef]
    # the objects selected for Change Data Capture; None: every object (a file that does not say)
    change_events: frozenset[str] | None = None
    _by_lower: dict[str, ObjectDef] = field(default_factory=dict, repr=False)
    _by_prefix: dict[str, ObjectDef] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path) -> OrgSchema:
        """The org one metadata file describes whole (metadata.yaml)."""
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise MetadataError(f"{path}: expected a mapping with `objects` and `platformEvents`")
        return cls.from_spec(raw)

    @classmethod
    def from_spec(cls, raw: dict[str, Any]) -> OrgSchema:
        objects: dict[str, ObjectDef] = {}
        for name, spec in (raw.get("objects") or {}).items():
            prefix = str(spec.get("keyPrefix", ""))
            if len(prefix) != 3:
                raise MetadataError(f"{name}: keyPrefix must have 3 characters")
            fields = _system_fields(bool(spec.get("owned", False)), is_event=False)
            for field_name, field_spec in (spec.get("fields") or {}).items():
                if field_name in fields:
                    raise MetadataError(f"{name}.{field_name}: a system field cannot be redeclared")
                fields[field_name] = _field(name, field_name, field_spec)
            objects[name] = ObjectDef(
                name=name,
                key_prefix=prefix,
                label=str(spec.get("label", name)),
                label_plural=str(spec.get("labelPlural", name + "s")),
                fields=fields,
                read_only=bool(spec.get("readOnly", False)),
                custom=name.endswith("__c"),
                sharing_model=_sharing_model(name, spec),
            )
        for number, (name, spec) in enumerate((raw.get("platformEvents") or {}).items()):
            if not name.endswith("__e"):
                raise MetadataError(f"{name}: a platform event's name ends in __e")
            fields = _system_fields(False, is_event=True)
            for field_name, field_spec in (spec.get("fields") or {}).items():
                fields[field_name] = _field(name, field_name, field_spec)
            objects[name] = ObjectDef(
                name=name,
                key_prefix=f"e{number:02d}",
                label=str(spec.get("label", name)),
                label_plural=str(spec.get("labelPlural", spec.get("label", name))),
                fields=fields,
                is_event=True,
                custom=True,
            )
        selected = raw.get("changeDataCapture")
        schema = cls(objects, None if selected is None else frozenset(str(name) for name in selected))
        schema._link()
        return schema

    def _link(self) -> None:
        unknown = sorted((self.change_events or frozenset()) - set(self.objects))
        if unknown:
            raise MetadataError(f"changeDataCapture: {unknown} are not objects of the org")
        prefixes: dict[str, str] = {}
        for obj in self.objects.values():
            if obj.key_prefix in prefixes:
                raise MetadataError(
                    f"{obj.name}: key prefix {obj.key_prefix} already used by {prefixes[obj.key_prefix]}"
                )
            prefixes[obj.key_prefix] = obj.name
        for obj in self.objects.values():
            for f in obj.fields.values():
                if f.reference_to is None:
                    continue
                parent = self.objects.get(f.reference_to)
                if parent is None:
                    raise MetadataError(f"{obj.name}.{f.name}: referenceTo unknown object {f.reference_to}")
                if f.child_relationship:
                    parent.children[f.child_relationship] = ChildRelationship(
                        f.child_relationship, obj.name, f.name, f.cascade_delete
                    )
        for obj in self.objects.values():
            obj.index()
        self._by_lower = {name.lower(): obj for name, obj in self.objects.items()}
        self._by_prefix = {obj.key_prefix: obj for obj in self.objects.values()}

    def get(self, name: str) -> ObjectDef | None:
        return self._by_lower.get(name.lower())

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(prefix)

    def sobjects(self) -> list[ObjectDef]:
        return [obj for obj in self.objects.values() if not obj.is_event]

    def has_change_events(self, name: str) -> bool:
        """Whether the object is selected for Change Data Capture (so its channel exists)."""
        obj = self.objects.get(name)
        if obj is None or obj.is_event:
            return False
        return self.change_events is None or name in self.change_events
