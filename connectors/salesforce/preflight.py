"""`sagesf preflight salesforce`: does the org have what the Salesforce connector needs?

Owns the checks of a real org through describe calls made as the integration user, so what that
user cannot see counts as missing (field-level security hides a field from describe):
- the sink's (`check_sink`): everything the sfdx project (salesforce/) deploys: each custom object
  and platform event; each custom field with its type, length, picklist values and external-ID
  and unique flags; and the permission set's grants as the user has them: an object createable,
  updateable, deletable or queryable, a field updateable where the set makes it editable. The
  processors write only through the sink, and a test (tests/unit/test_sfdx_project.py) keeps the
  project holding every custom field the mappings (mappings/*.yaml) write and read. The stale
  guard's version field (`SAGESF_SALESFORCE__SINK__VERSION_FIELD`, Sage_Synced_At__c) is needed
  on each object it guards (`__STALE_GUARD_OBJECTS`) as a DateTime the user can edit, and the
  project's copies of it only there: with no version field (`__VERSION_FIELD=`, the guard then
  compares other users' edits only) none is needed.
- the source's (`check_source`): every field the source mapping reads (relationship paths
  followed, child relationships found), the platform events it subscribes to, and a Change Data
  Capture selection for every object whose channel it subscribes to (the Tooling API's
  PlatformEventChannelMember; without View Setup and Configuration the selection is "unknown").

How: one describe global, then one describe per object named, each once. A check names what is
needed as Setup shows it (`Opportunity.Sage_Order_No__c`) and, when it is missing, how to add it:
deploy the project, or add the field by hand with the project's type (`Text(7), external ID,
unique`). Settings: `SAGESF_SALESFORCE__PREFLIGHT__PROJECT` (another copy of the project) and
`__PERMISSION_SET` (its name).

Limits: View All and Modify All (which CDC and Credit_Check__c need) and platform event
subscription rights do not show in describe and are not checked: the source's subscription is
refused at start instead (ChannelRefused). Standard fields the processors write (Account.Phone,
Product2.Family, ...) are checked where the source mapping reads them, not for edit access.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic_settings import BaseSettings, SettingsConfigDict
from simple_salesforce.exceptions import SalesforceError

from connectors.salesforce.client import SalesforceConnection, connect
from connectors.salesforce.config import ENV_PREFIX, VERSION_FIELD, SalesforceSettings, SalesforceSinkOptions
from connectors.salesforce.errors import SalesforceUnavailable, from_exception
from connectors.salesforce.sfdx_project import DEFAULT_PROJECT, CustomField, SfdxProject, SfdxProjectError
from connectors.salesforce.source import SalesforceSourceSettings
from connectors.salesforce.source_mapping import RecordSpec, SourceMapping, load_source_mapping
from sagesf.config import ConfigError, load_settings
from sagesf.preflight import Check, Outcome
from sagesf.runner import Process

__all__ = ["OrgChecks", "PreflightSettings", "check_sink", "check_source"]

DEPLOY = "deploy salesforce/ (cd salesforce && sf project deploy start)"
SOURCE, SINK = "salesforce-source", "salesforce-sink"
# an object permission's right, its flag on ObjectPermission, and the describe flag that shows it
_RIGHTS = (
    ("read", "read", "queryable"),
    ("create", "create", "createable"),
    ("edit", "edit", "updateable"),
    ("delete", "delete", "deletable"),
)
T = TypeVar("T")
_OWN_VERSION = (
    "add a DateTime field the integration user can edit, or name another with "
    f"{ENV_PREFIX}SINK__VERSION_FIELD (empty: compare other users' edits only)"
)


class PreflightSettings(BaseSettings):
    """`SAGESF_SALESFORCE__PREFLIGHT__*`: what the org is checked against."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX + "PREFLIGHT__", extra="ignore", case_sensitive=False
    )

    project: Path = DEFAULT_PROJECT  # the sfdx project deployed to the org
    permission_set: str = "Sagesf_Integration"  # the project's permission set of the integration user


def check_sink(process: Process) -> list[Check]:
    """The sink's hook: the project's objects, events, fields and permission set, and the stale
    guard's version fields."""
    checks = _org_checks(process, SINK)
    stamped = _version_fields(process.settings(SalesforceSettings).sink)
    needed = {path.lower() for path in stamped}
    unused = {
        spec.path
        for spec in checks.project.all_fields()
        if spec.name == VERSION_FIELD and spec.path.lower() not in needed
    }
    return checks.deployed(unused) + checks.granted(unused) + checks.stamped(stamped)


def _version_fields(options: SalesforceSinkOptions) -> set[str]:
    """`Object.Field` of the version field on every object the stale guard checks; none when off."""
    if not options.version_field:
        return set()
    return {f"{obj}.{options.version_field}" for obj in options.stale_guard_objects}


def check_source(process: Process) -> list[Check]:
    """The source's hook: what its mapping reads and the channels it subscribes to."""
    settings = process.settings(SalesforceSourceSettings)
    mapping = load_source_mapping(settings.mapping_file)
    return _org_checks(process, SOURCE).read_by(mapping, settings.channels)


def _org_checks(process: Process, component: str) -> OrgChecks:
    options = load_settings(PreflightSettings)
    try:
        project = SfdxProject.load(options.project)
    except SfdxProjectError as exc:
        raise ConfigError(f"{ENV_PREFIX}PREFLIGHT__PROJECT: {exc}") from None
    if options.permission_set not in project.permission_sets:
        known = ", ".join(project.permission_sets) or "none"
        raise ConfigError(
            f"{ENV_PREFIX}PREFLIGHT__PERMISSION_SET: {options.permission_set} is not a permission set of "
            f"{options.project} (it has {known})"
        )
    connection: SalesforceConnection = connect(process.settings(SalesforceSettings))
    process.closing(connection.close, "the Salesforce connection")
    return OrgChecks(DescribedOrg(connection.sf), project, options.permission_set, component)


@dataclass
class DescribedOrg:
    """The org as the integration user sees it through describe calls, each object described once."""

    sf: Any
    _names: dict[str, str] | None = None
    _described: dict[str, dict[str, Any]] = field(default_factory=dict)

    def name(self, obj: str) -> str | None:
        """The object's API name as the org spells it; None when the user cannot see it."""
        if self._names is None:
            body = _call("describe global", self.sf.describe)
            self._names = {entry["name"].lower(): entry["name"] for entry in body["sobjects"]}
        return self._names.get(obj.lower())

    def describe(self, obj: str) -> dict[str, Any] | None:
        real = self.name(obj)
        if real is None:
            return None
        if real not in self._described:
            self._described[real] = _call(
                f"describe {real}", lambda: self.sf.restful(f"sobjects/{real}/describe")
            )
        return self._described[real]

    def field(self, obj: str, name: str) -> dict[str, Any] | None:
        described = self.describe(obj)
        return None if described is None else _named(described["fields"], "name", name)

    def parent(self, obj: str, relationship: str) -> str | None:
        """The object a relationship name leads to (Opportunity, `Account` -> Account)."""
        described = self.describe(obj)
        ref = None if described is None else _named(described["fields"], "relationshipName", relationship)
        return ref["referenceTo"][0] if ref and ref.get("referenceTo") else None

    def child(self, obj: str, relationship: str) -> str | None:
        """The child object of a child relationship (Opportunity, `OpportunityLineItems`)."""
        described = self.describe(obj)
        rel = (
            None
            if described is None
            else _named(described["childRelationships"], "relationshipName", relationship)
        )
        return None if rel is None else str(rel["childSObject"])

    @cached_property
    def change_events(self) -> set[str] | None:
        """The objects selected for Change Data Capture (asked once); None when the user may not
        ask (the Tooling API wants View Setup and Configuration)."""
        soql = "SELECT DeveloperName, SelectedEntity FROM PlatformEventChannelMember"
        try:
            body = self.sf.restful("tooling/query", params={"q": soql})
        except SalesforceError as exc:
            if exc.status in (400, 401, 403, 404):
                return None
            raise _unavailable(exc, "Tooling API query") from None
        except Exception as exc:  # noqa: BLE001 - classified: network failures wait, the rest says why
            raise _unavailable(exc, "Tooling API query") from None
        entities = {str(r.get("SelectedEntity") or "").removesuffix("ChangeEvent") for r in body["records"]}
        return {e + "c" if e.endswith("__") else e for e in entities if e}


def _named(entries: Iterable[dict[str, Any]], key: str, name: str) -> dict[str, Any] | None:
    lowered = name.lower()
    return next((e for e in entries if str(e.get(key) or "").lower() == lowered), None)


def _call(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - classified: network failures wait, the rest says why
        raise _unavailable(exc, what) from None


def _unavailable(exc: BaseException, what: str) -> SalesforceUnavailable:
    classified = from_exception(exc, rate_limit_pause=0.0, what=what)
    return (
        classified
        if isinstance(classified, SalesforceUnavailable)
        else SalesforceUnavailable(str(classified))
    )


@dataclass
class OrgChecks:
    """The checks of one org against the project (`deployed`, `granted`) and a source mapping
    (`read_by`), for `component`."""

    org: DescribedOrg
    project: SfdxProject
    permission_set: str
    component: str

    # --- what the project deploys -------------------------------------------------------------

    def deployed(self, unused: Collection[str] = ()) -> list[Check]:
        """The project's objects, events and fields, but for the fields in `unused` (`Object.Field`)."""
        checks = [
            self._object(obj.name, "platform event" if obj.is_event else "object")
            for obj in self.project.objects.values()
        ]
        fields = [spec for spec in self.project.all_fields() if spec.path not in unused]
        return checks + [self._custom_field(spec) for spec in fields]

    def _object(self, name: str, kind: str) -> Check:
        if self.org.name(name) is not None:
            return self._check(kind, name, Outcome.OK)
        created = self.project.objects.get(name)
        how = (
            f"{DEPLOY}, or create the {created.label} {kind}"
            if created
            else "grant the integration user Read on it"
        )
        return self._check(kind, name, Outcome.MISSING, fix=how)

    def _custom_field(self, spec: CustomField, by_hand: str = "") -> Check:
        """`spec` against the org; `by_hand`: how to fix a field the project does not deploy."""
        found = self.org.field(spec.object, spec.name)
        if found is None:
            return self._missing_field(spec.path, by_hand)
        differences = _differences(spec, found)
        if differences:
            fix = by_hand or f"change it to {spec.shown()} ({DEPLOY} does)"
            return self._check("field", spec.path, Outcome.DIFFERENT, "; ".join(differences), fix)
        return self._check("field", spec.path, Outcome.OK, spec.shown())

    def _missing_field(self, path: str, by_hand: str = "") -> Check:
        obj, _, name = path.partition(".")
        spec = self.project.field(obj, name)
        if by_hand:
            fix = by_hand
        elif spec is not None:
            flags = f" ({', '.join(spec.flags)})" if spec.flags else ""
            fix = f"{DEPLOY} or add a {spec.setup_type} field{flags} the integration user can read"
        else:
            fix = "grant the integration user Read on it (field-level security)"
        return self._check("field", path, Outcome.MISSING, fix=fix)

    # --- what the permission set grants -------------------------------------------------------

    def granted(self, unused: Collection[str] = ()) -> list[Check]:
        """The permission set's grants as describe shows them, but for the fields in `unused`."""
        grants = self.project.permission_sets[self.permission_set]
        checks = []
        for perm in grants.objects.values():
            wanted = [(right, flag) for right, on, flag in _RIGHTS if getattr(perm, on)]
            if _is_event(perm.object):  # subscribing shows nowhere in describe: publishing does
                wanted = [(right, flag) for right, flag in wanted if right == "create"]
            if not wanted:
                continue
            described = self.org.describe(perm.object) or {}
            lacking = [right for right, flag in wanted if not described.get(flag)]
            checks.append(self._grant(f"{perm.object}: {', '.join(r for r, _ in wanted)}", lacking))
        for grant in grants.fields.values():
            if grant.editable and f"{grant.object}.{grant.field}" not in unused:
                checks += self._editable(grant.object, grant.field)
        return checks

    def _editable(self, obj: str, name: str) -> list[Check]:
        """Whether the user may write the field; nothing when it is missing (reported as such)."""
        found = self.org.field(obj, name)
        if found is None:
            return []
        writable = found.get("updateable") or found.get("createable")
        return [self._grant(f"{obj}.{name}: edit", [] if writable else ["edit"])]

    def _grant(self, name: str, lacking: list[str]) -> Check:
        if not lacking:
            return self._check("permission", name, Outcome.OK)
        fix = (
            f"assign the permission set {self.permission_set} to the integration user "
            f"(sf org assign permset --name {self.permission_set} --on-behalf-of <username>)"
        )
        return self._check("permission", name, Outcome.MISSING, f"lacks {', '.join(lacking)}", fix)

    # --- what the stale guard compares ---------------------------------------------------------

    def stamped(self, paths: Iterable[str]) -> list[Check]:
        """The stale guard's version fields (`Object.Field`): each a DateTime the user can edit,
        the project's own where it has one (connectors/salesforce/stale_guard.py)."""
        deployed = {spec.path.lower(): spec for spec in self.project.all_fields()}
        checks: list[Check] = []
        for path in sorted(paths):
            spec = deployed.get(path.lower())
            if spec is not None:
                checks.append(self._custom_field(spec))
            else:
                obj, _, name = path.partition(".")
                spec = CustomField(obj, name, "DateTime", name)
                checks.append(self._custom_field(spec, _OWN_VERSION))
            checks += self._editable(spec.object, spec.name)
        return checks

    # --- what the source reads ----------------------------------------------------------------

    def read_by(self, mapping: SourceMapping, channels: Iterable[str]) -> list[Check]:
        checks: list[Check] = []
        for entity, obj in mapping.objects.items():
            checks.append(self._object(entity, "object"))
            paths = [obj.parent.field] if obj.parent is not None else obj.read_paths()
            checks += self._paths(entity, paths)
            for child in (obj.lines, obj.contacts):
                if child is not None:
                    checks += self._child(entity, child.relationship, child.paths())
        for channel in channels:
            checks += self._channel(channel, mapping)
        return checks

    def _paths(self, obj: str, paths: Iterable[str]) -> list[Check]:
        return [self._path(obj, path) for path in paths]

    def _path(self, obj: str, path: str) -> Check:
        *hops, last = path.split(".")
        for hop in hops:
            parent = self.org.parent(obj, hop)
            if parent is None:
                return self._check(
                    "relationship",
                    f"{obj}.{hop}",
                    Outcome.MISSING,
                    fix="grant the integration user Read on its lookup field",
                )
            obj = parent
        if self.org.field(obj, last) is None:
            return self._missing_field(f"{obj}.{last}")
        return self._check("field", f"{self.org.name(obj)}.{last}", Outcome.OK)

    def _child(self, obj: str, relationship: str, paths: Iterable[str]) -> list[Check]:
        child = self.org.child(obj, relationship)
        if child is None:
            return [
                self._check(
                    "relationship",
                    f"{obj}.{relationship}",
                    Outcome.MISSING,
                    fix="grant the integration user Read on the child object",
                )
            ]
        return [self._check("relationship", f"{obj}.{relationship}", Outcome.OK), *self._paths(child, paths)]

    def _channel(self, channel: str, mapping: SourceMapping) -> list[Check]:
        if channel.startswith("/event/"):
            event = channel.removeprefix("/event/")
            spec: RecordSpec | None = mapping.platform_events.get(channel)
            paths = _record_paths(spec) if spec is not None else []
            return [self._object(event, "platform event"), *self._paths(event, paths)]
        if channel == "/data/ChangeEvents":
            entities = list(mapping.objects)
        else:
            entity = channel.removeprefix("/data/").removesuffix("ChangeEvent")
            entities = [entity + "c" if entity.endswith("__") else entity]
        return [self._selected(entity) for entity in entities]

    def _selected(self, entity: str) -> Check:
        name = "/data/" + (entity[:-1] if entity.endswith("__c") else entity) + "ChangeEvent"
        selected = self.org.change_events
        if selected is None:
            return self._check(
                "CDC channel",
                name,
                Outcome.UNKNOWN,
                "the integration user may not read the selection (View Setup and Configuration)",
                f"check that Setup > Change Data Capture lists {entity}",
            )
        if entity in selected:
            return self._check("CDC channel", name, Outcome.OK)
        how = f"select {entity} in Setup > Change Data Capture"
        if entity in self.project.change_events:
            how = f"{DEPLOY}, or {how}"
        return self._check("CDC channel", name, Outcome.MISSING, fix=how)

    def _check(self, kind: str, name: str, outcome: Outcome, detail: str = "", fix: str = "") -> Check:
        return Check(kind, name, outcome, detail, fix, (self.component,))


def _is_event(obj: str) -> bool:
    return obj.endswith("__e")


def _record_paths(spec: RecordSpec) -> list[str]:
    paths = [*spec.key, *spec.custom_fields.values()]
    for each in spec.fields.values():
        paths += each.field
    if spec.customer is not None:
        paths += spec.customer.paths()
    correlation = getattr(spec, "correlation", None)
    return list(dict.fromkeys([*paths, *([correlation] if correlation else [])]))


def _differences(spec: CustomField, found: dict[str, Any]) -> list[str]:
    """How the org's field differs from the project's, as a user would put it."""
    out = []
    if found.get("type") != spec.describe_type:
        return [f"a {found.get('type')} field, not {spec.shown()}"]
    length = spec.text_length
    if length is not None and spec.type != "Picklist" and int(found.get("length") or 0) < length:
        out.append(f"holds {found.get('length')} characters, not {length}")
    if spec.values:
        have = {str(v.get("value")) for v in found.get("picklistValues") or [] if v.get("active", True)}
        lacking = [v for v in spec.values if v not in have]
        if lacking:
            out.append(f"lacks the values {', '.join(lacking)}")
    if spec.external_id and not found.get("externalId"):
        out.append("is not an external ID")
    if spec.unique and not found.get("unique"):
        out.append("is not unique")
    return out
