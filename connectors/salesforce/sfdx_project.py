"""The Salesforce metadata sagesf ships, read from its sfdx project (salesforce/ in the repository).

Owns reading a Salesforce DX project in source format: the custom fields
(`objects/<Object>/fields/<Field>.field-meta.xml`, on standard and custom objects alike), the
custom objects and platform events (`objects/<Name>/<Name>.object-meta.xml`), the objects selected
for Change Data Capture on the standard channel (`platformEventChannelMembers/`) and the
permission sets (`permissionsets/<Name>.permissionset-meta.xml`). `sagesf preflight salesforce`
checks an org against it and the sandbox's emulator builds its org from it, so what users deploy
is what the tests run against.

How it works: the package directories named in `sfdx-project.json` are searched at any depth, as
the Salesforce CLI does. Each file is parsed with the standard library's ElementTree: the files
are the operator's own project, and Python's bundled expat refuses entity expansion attacks; no
third-party XML parser is needed for a handful of small, flat documents.

Limits: only the field types sagesf's metadata uses are read (Text, TextArea, LongTextArea,
Email, Phone, Url, Picklist, Number, Currency, Percent, Checkbox, Date, DateTime and AutoNumber
name fields); another type (Lookup, Formula, ...) is refused naming the file. Record types,
layouts, global value sets, custom channels and profiles are not read.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "DEFAULT_PROJECT",
    "CustomField",
    "CustomObject",
    "FieldPermission",
    "ObjectPermission",
    "PermissionSet",
    "SfdxProject",
    "SfdxProjectError",
]

DEFAULT_PROJECT = Path(__file__).resolve().parents[2] / "salesforce"
_NS = "{http://soap.sforce.com/2006/04/metadata}"
# Metadata API field type -> the type a describe call answers with
_DESCRIBE_TYPES = {
    "Text": "string",
    "TextArea": "textarea",
    "LongTextArea": "textarea",
    "Email": "email",
    "Phone": "phone",
    "Url": "url",
    "Picklist": "picklist",
    "Number": "double",
    "Currency": "currency",
    "Percent": "percent",
    "Checkbox": "boolean",
    "Date": "date",
    "DateTime": "datetime",
    "AutoNumber": "string",
}
# the length Salesforce gives the text types that have no <length>
_FIXED_LENGTHS = {"TextArea": 255, "Email": 80, "Phone": 40, "Url": 255, "AutoNumber": 30}


class SfdxProjectError(ValueError):
    """The project cannot be read; the message names the file and what is wrong in it."""


@dataclass(frozen=True)
class CustomField:
    """One field as its `.field-meta.xml` declares it (Metadata API names and units)."""

    object: str
    name: str
    type: str  # Text, Number, Picklist, ... (Metadata API)
    label: str
    length: int | None = None
    precision: int | None = None  # total digits, as in the XML and in describe
    scale: int | None = None
    required: bool = False
    unique: bool = False
    external_id: bool = False
    case_sensitive: bool = False
    values: tuple[str, ...] = ()
    restricted: bool = False
    default: str | None = None
    display_format: str | None = None  # AutoNumber

    @property
    def path(self) -> str:
        return f"{self.object}.{self.name}"

    @property
    def describe_type(self) -> str:
        return _DESCRIBE_TYPES[self.type]

    @property
    def text_length(self) -> int | None:
        """The length describe reports for a text type; None for the others."""
        return self.length if self.length is not None else _FIXED_LENGTHS.get(self.type)

    @property
    def setup_type(self) -> str:
        """The type as Setup shows it: `Text(7)`, `Number(14, 2)` (digits before and after the point)."""
        if self.length is not None:
            return f"{self.type}({self.length})"
        if self.precision is not None:
            return f"{self.type}({self.precision - (self.scale or 0)}, {self.scale or 0})"
        return self.type

    @property
    def flags(self) -> tuple[str, ...]:
        settings = (
            ("external ID", self.external_id),
            ("unique", self.unique),
            ("restricted", self.restricted),
            ("required", self.required),
        )
        return tuple(flag for flag, on in settings if on)

    def shown(self) -> str:
        """`Text(7), external ID, unique`."""
        return ", ".join((self.setup_type, *self.flags))


@dataclass(frozen=True)
class CustomObject:
    """A custom object or platform event the project creates (`<Name>.object-meta.xml`)."""

    name: str
    label: str
    plural_label: str
    is_event: bool
    sharing_model: str | None = None
    name_field: CustomField | None = None  # custom objects: the Name field (Text or AutoNumber)


@dataclass(frozen=True)
class ObjectPermission:
    object: str
    create: bool = False
    read: bool = False
    edit: bool = False
    delete: bool = False
    view_all: bool = False
    modify_all: bool = False


@dataclass(frozen=True)
class FieldPermission:
    object: str
    field: str
    readable: bool = False
    editable: bool = False


@dataclass(frozen=True)
class PermissionSet:
    name: str
    label: str
    objects: dict[str, ObjectPermission] = field(default_factory=dict)
    fields: dict[str, FieldPermission] = field(default_factory=dict)  # by "Object.Field"


@dataclass(frozen=True)
class SfdxProject:
    """What the project deploys: custom objects and events, fields by object, CDC selection,
    permission sets."""

    root: Path
    objects: dict[str, CustomObject]
    fields: dict[str, dict[str, CustomField]]  # object -> field name -> field
    change_events: tuple[str, ...]  # entities selected on the standard ChangeEvents channel
    permission_sets: dict[str, PermissionSet]

    @classmethod
    def load(cls, root: Path = DEFAULT_PROJECT) -> SfdxProject:
        """The project at `root` (the folder holding sfdx-project.json); SfdxProjectError naming
        the file when one cannot be read."""
        objects: dict[str, CustomObject] = {}
        fields: dict[str, dict[str, CustomField]] = {}
        channels: list[str] = []
        permission_sets: dict[str, PermissionSet] = {}
        for directory in _package_directories(root):
            for path in sorted(directory.rglob("*.object-meta.xml")):
                obj = _custom_object(path)
                objects[obj.name] = obj
            for path in sorted(directory.rglob("*.field-meta.xml")):
                found = _custom_field(path, path.parent.parent.name, _document(path, "CustomField"))
                fields.setdefault(found.object, {})[found.name] = found
            for path in sorted(directory.rglob("*.platformEventChannelMember-meta.xml")):
                channels += _channel_member(path)
            for path in sorted(directory.rglob("*.permissionset-meta.xml")):
                permission_set = _permission_set(path)
                permission_sets[permission_set.name] = permission_set
        return cls(root, objects, fields, tuple(dict.fromkeys(channels)), permission_sets)

    def all_fields(self) -> Iterator[CustomField]:
        for by_name in self.fields.values():
            yield from by_name.values()

    def field(self, obj: str, name: str) -> CustomField | None:
        return self.fields.get(obj, {}).get(name)


def _package_directories(root: Path) -> list[Path]:
    config = root / "sfdx-project.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SfdxProjectError(f"{config}: not found (is {root} an sfdx project?)") from None
    except (OSError, ValueError) as exc:
        raise SfdxProjectError(f"{config}: cannot be read: {exc}") from None
    entries = data.get("packageDirectories") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SfdxProjectError(f"{config}: packageDirectories: expected a list of {{path: ...}}")
    directories = [root / str(entry.get("path", "")) for entry in entries if isinstance(entry, dict)]
    missing = [str(d) for d in directories if not d.is_dir()]
    if missing:
        raise SfdxProjectError(f"{config}: package directories {missing} do not exist")
    return directories


def _document(path: Path, root_tag: str) -> ET.Element:
    try:
        document = ET.parse(path).getroot()  # noqa: S314 - the operator's own project files
    except (OSError, ET.ParseError) as exc:
        raise SfdxProjectError(f"{path}: cannot be read: {exc}") from None
    if document.tag != _NS + root_tag:
        raise SfdxProjectError(f"{path}: expected a <{root_tag}> document in the Metadata API namespace")
    return document


def _text(node: ET.Element, tag: str) -> str | None:
    found = node.find(_NS + tag)
    return None if found is None or found.text is None else found.text.strip()


def _flag(node: ET.Element, tag: str) -> bool:
    return _text(node, tag) == "true"


def _number(path: Path, node: ET.Element, tag: str) -> int | None:
    text = _text(node, tag)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise SfdxProjectError(f"{path}: <{tag}> {text!r} is not a whole number") from None


def _custom_field(path: Path, obj: str, node: ET.Element) -> CustomField:
    name = _text(node, "fullName") or path.name.removesuffix(".field-meta.xml")
    kind = _text(node, "type")
    if kind not in _DESCRIBE_TYPES:
        known = ", ".join(_DESCRIBE_TYPES)
        raise SfdxProjectError(f"{path}: {obj}.{name}: field type {kind!r} is not one sagesf reads ({known})")
    value_set = node.find(_NS + "valueSet")
    values: tuple[str, ...] = ()
    default = _text(node, "defaultValue")
    if value_set is not None:
        entries = value_set.findall(f"{_NS}valueSetDefinition/{_NS}value")
        values = tuple(_text(v, "fullName") or "" for v in entries)
        default = next((_text(v, "fullName") for v in entries if _flag(v, "default")), default)
    if kind == "Picklist" and not values:
        raise SfdxProjectError(f"{path}: {obj}.{name}: a picklist needs <valueSet> values")
    if kind == "Text" and _number(path, node, "length") is None:
        raise SfdxProjectError(f"{path}: {obj}.{name}: a Text field needs <length>")
    return CustomField(
        object=obj,
        name=name,
        type=kind,
        label=_text(node, "label") or name,
        length=_number(path, node, "length"),
        precision=_number(path, node, "precision"),
        scale=_number(path, node, "scale"),
        required=_flag(node, "required"),
        unique=_flag(node, "unique"),
        external_id=_flag(node, "externalId"),
        case_sensitive=_flag(node, "caseSensitive"),
        values=values,
        restricted=value_set is not None and _flag(value_set, "restricted"),
        default=default,
        display_format=_text(node, "displayFormat"),
    )


def _custom_object(path: Path) -> CustomObject:
    node = _document(path, "CustomObject")
    name = path.name.removesuffix(".object-meta.xml")
    name_node = node.find(_NS + "nameField")
    name_field = None
    if name_node is not None:  # a Text name holds 80 characters; the XML gives no length
        if _text(name_node, "type") == "Text" and name_node.find(_NS + "length") is None:
            ET.SubElement(name_node, _NS + "length").text = "80"
        name_field = replace(_custom_field(path, name, name_node), name="Name")
    return CustomObject(
        name=name,
        label=_text(node, "label") or name,
        plural_label=_text(node, "pluralLabel") or _text(node, "label") or name,
        is_event=name.endswith("__e"),
        sharing_model=_text(node, "sharingModel"),
        name_field=name_field,
    )


def _channel_member(path: Path) -> list[str]:
    """The entity a member of the standard channel selects (`AccountChangeEvent` -> Account)."""
    node = _document(path, "PlatformEventChannelMember")
    if _text(node, "eventChannel") != "ChangeEvents":
        return []  # a custom channel: not what the source subscribes to
    selected = _text(node, "selectedEntity") or ""
    if not selected.endswith("ChangeEvent"):
        raise SfdxProjectError(f"{path}: <selectedEntity> {selected!r} is not a change event name")
    entity = selected.removesuffix("ChangeEvent")
    return [entity + "c" if entity.endswith("__") else entity]


def _permission_set(path: Path) -> PermissionSet:
    node = _document(path, "PermissionSet")
    name = path.name.removesuffix(".permissionset-meta.xml")
    objects = {}
    for entry in node.findall(_NS + "objectPermissions"):
        obj = _text(entry, "object") or ""
        objects[obj] = ObjectPermission(
            obj,
            create=_flag(entry, "allowCreate"),
            read=_flag(entry, "allowRead"),
            edit=_flag(entry, "allowEdit"),
            delete=_flag(entry, "allowDelete"),
            view_all=_flag(entry, "viewAllRecords"),
            modify_all=_flag(entry, "modifyAllRecords"),
        )
    fields = {}
    for entry in node.findall(_NS + "fieldPermissions"):
        obj, _, field_name = (_text(entry, "field") or "").partition(".")
        fields[f"{obj}.{field_name}"] = FieldPermission(
            obj, field_name, readable=_flag(entry, "readable"), editable=_flag(entry, "editable")
        )
    return PermissionSet(name, _text(node, "label") or name, objects, fields)
