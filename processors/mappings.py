"""The mapping configuration (mappings/*.yaml): loading, validating and applying value maps.

What it owns: the five mapping files the processors use, as pydantic models -
customers.yaml (`CustomersMapping`), orders.yaml (`OrdersMapping`), products.yaml
(`ProductsMapping`), pricing.yaml (`PricingMapping`) and addresses.yaml (`AddressesMapping`) -
and `load_mappings()`, which reads them and checks them, before any record is processed,
against:
- the canonical schemas (sagesf.schemas): every canonical field named exists in its record,
  order types and statuses are symbols of their enums, inventory sources are quantities;
- the Salesforce metadata, when given: objects and fields exist (and are updateable where the
  processor writes them), picklist values named are values of the picklist, external-ID fields
  are external IDs, numbers go to number fields;
- the Sage 100 column definitions, when given: columns exist, UDFs are `UDF_` columns of the
  table, values and lengths fit the columns (S30, N15.6).
Every problem is reported at once, each as `<file>:<line>: <entry>: <reason>`, e.g.
`mappings/products.yaml:31: lookup.WIDGET-9: ItemCode 'X...' is 31 characters; CI_Item.ItemCode
holds 30`, in a `MappingError`. The other files in mappings/ (salesforce_source.yaml belongs to
the Salesforce connector, metadata/ is data) are not read here.

How it works: each file is composed with PyYAML keeping the line of every key (duplicate keys,
which PyYAML would silently merge, are errors), validated with pydantic (`extra="forbid"`: a
misspelt key is an error naming it), then cross-checked (processors/mapping_checks.py), each
problem placed at the line of its entry. `Mappings.changed()` tells whether a
file was edited since loading, so a running worker can reload (processors/app.py).

Limits: the metadata files describe what the checks need (see processors/metadata.py); without
them only the canonical schemas are checked and truncation to a Sage column length happens only
for fields whose length is known. The section products.yaml marks "checked here, used by the
item sync" (`item_fields`) is validated but not yet used: the item sync is not part of the
processors yet.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from processors.mapping_checks import check_mappings
from processors.metadata import (
    MetadataError,
    SageMetadata,
    SalesforceMetadata,
    load_sage_metadata,
    load_salesforce_metadata,
)
from sagesf.errors import Permanent

__all__ = [
    "FILES",
    "AddressesMapping",
    "CustomersMapping",
    "MappingError",
    "Mappings",
    "OrdersMapping",
    "PricingMapping",
    "ProductsMapping",
    "SageField",
    "ValueMap",
    "load_mappings",
]

Unknown = Literal["error", "keep", "null"]
Overflow = Literal["error", "truncate"]
Path_ = tuple[str | int, ...]


class MappingError(ValueError):
    """The mapping files are invalid; `problems` has one `<file>:<line>: <entry>: <reason>` each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid mappings:\n  " + "\n  ".join(self.problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- building blocks -------------------------------------------------------------------------


class ValueMap(_Model):
    """One picklist value map: `values` from -> to; `unknown` says what an unlisted value becomes."""

    values: dict[str, str]
    unknown: Unknown = "error"

    @field_validator("unknown", mode="before")
    @classmethod
    def _null(cls, value: Any) -> Any:
        return "null" if value is None else value

    def apply(self, value: Any, *, name: str, where: str) -> str | None:
        """The mapped value; Permanent (naming `where` and the map) for an unknown one with `error`."""
        if value is None:
            return None
        text = str(value)
        if text in self.values:
            return self.values[text]
        if self.unknown == "keep":
            return text
        if self.unknown == "null":
            return None
        known = ", ".join(sorted(self.values)) or "none"
        raise Permanent(
            f"{where}: value {text!r} is not in the picklist map {name!r} (known: {known})",
            field=where,
            value=text,
        )


class SageField(_Model):
    """A canonical field on its way to a Sage column: value map, default, overflow rule."""

    sage: str
    map: str | None = None
    default: str | None = None
    overflow: Overflow = "error"
    length: int | None = Field(default=None, gt=0)  # overrides the length from the Sage metadata


class SalesforceFieldRef(_Model):
    salesforce: str
    map: str | None = None


class CustomField(_Model):
    salesforce: str | None = None
    sage: str | None = None
    direction: Literal["both", "salesforce_to_sage", "sage_to_salesforce"] = "both"


class SyncStatus(_Model):
    field: str
    synced: str
    error: str
    pending: str


# --- customers.yaml --------------------------------------------------------------------------


class CustomerIdentity(_Model):
    salesforce: str = "Id"
    sage: str


class CustomerToSage(_Model):
    sync: bool = True  # an Account change updates its (already linked) Sage customer
    fields: dict[str, SageField] = Field(default_factory=dict)


class CustomerToSalesforce(_Model):
    sync: bool = True  # an AR_Customer change updates its Account
    create_accounts: bool = True  # an active Sage customer with no Account gets one
    fields: dict[str, SalesforceFieldRef] = Field(default_factory=dict)


class CustomerWriteBack(_Model):
    sync_status: SyncStatus
    message_field: str | None = None


CreditReplyValue = Literal[
    "correlation_id",
    "approved",
    "decision",
    "credit_limit",
    "current_balance",
    "open_order_total",
    "available_credit",
    "message",
]


class CreditReply(_Model):
    """Sage's answer to a credit check, published to Salesforce as a platform event."""

    event: str  # the platform event, e.g. Credit_Check_Reply__e
    fields: dict[CreditReplyValue, str]  # reply value -> the event's field

    @field_validator("fields")
    @classmethod
    def _correlated(cls, value: dict[str, str]) -> dict[str, str]:
        if "correlation_id" not in value:
            raise ValueError("correlation_id must be sent: the requester matches the reply by it")
        return value


class CustomersMapping(_Model):
    version: Literal[1]
    identity: CustomerIdentity
    external_id: str
    picklists: dict[str, ValueMap] = Field(default_factory=dict)
    salesforce_to_sage: CustomerToSage = CustomerToSage()
    sage_to_salesforce: CustomerToSalesforce = CustomerToSalesforce()
    custom_fields: dict[str, CustomField] = Field(default_factory=dict)
    write_back: CustomerWriteBack
    credit_reply: CreditReply | None = None  # None: credit replies stay in Kafka

    @property
    def sage_table(self) -> str:
        return "AR_Customer"

    @property
    def salesforce_object(self) -> str:
        return "Account"


# --- orders.yaml -----------------------------------------------------------------------------


class OrderStart(_Model):
    order_type: str = "STANDARD"


class OrderIdentity(_Model):
    sage: str


class OrderWriteBack(_Model):
    objects: list[str] = Field(min_length=1)
    order_number: str
    order_status: str
    sync_status: SyncStatus
    message_field: str | None = None


FieldValue = str | bool | int | float | None


class OrderStatusMap(_Model):
    sage_codes: dict[str, str] = Field(default_factory=dict)
    canonical: dict[str, str] = Field(default_factory=dict)
    extra_fields: dict[str, dict[str, dict[str, FieldValue]]] = Field(default_factory=dict)
    unknown: Literal["error", "skip"] = "error"

    def value_for(self, code: str | None, status: str | None) -> str | None:
        """The picklist value for a Sage status code, else for the canonical status; None if neither."""
        if code and code in self.sage_codes:
            return self.sage_codes[code]
        if status and status in self.canonical:
            return self.canonical[status]
        return None


class OrdersMapping(_Model):
    version: Literal[1]
    start: dict[str, OrderStart] = Field(min_length=1)
    identity: OrderIdentity
    picklists: dict[str, ValueMap] = Field(default_factory=dict)
    header: dict[str, SageField] = Field(default_factory=dict)
    lines: dict[str, SageField] = Field(default_factory=dict)
    custom_fields: dict[str, CustomField] = Field(default_factory=dict)
    write_back: OrderWriteBack
    order_status: OrderStatusMap


# --- products.yaml ---------------------------------------------------------------------------


class InventoryMapping(_Model):
    sobject: str = "Product2"
    external_id_field: str
    warehouses: Literal["all"] | list[str] = "all"
    fields: dict[str, str] = Field(min_length=1)
    # send stock only for items a Salesforce Product2 is known for (seen on item.v1 with its Id);
    # false: upsert every item, which creates nothing but dead letters where no product exists
    only_known_products: bool = True

    def counts(self, warehouse: str) -> bool:
        return self.warehouses == "all" or warehouse in self.warehouses


class ProductsMapping(_Model):
    version: Literal[1]
    lookup: dict[str, str] = Field(default_factory=dict)
    require_known_item: bool = False
    reject_inactive_items: bool = True
    picklists: dict[str, ValueMap] = Field(default_factory=dict)
    item_fields: dict[str, SalesforceFieldRef] = Field(default_factory=dict)
    inventory: InventoryMapping


# --- pricing.yaml ----------------------------------------------------------------------------


class PricingMapping(_Model):
    version: Literal[1]
    home_currency: str
    rates: dict[str, Decimal] = Field(default_factory=dict)
    rates_as_of: date | None = None
    unit_price_decimals: int = Field(default=2, ge=0, le=6)
    rounding: Literal["half_up", "half_even"] = "half_up"
    zero_price: Literal["keep", "sage_standard", "error"] = "keep"
    max_discount_percent: Decimal | None = Field(default=None, ge=0, le=100)

    def rate(self, currency: str) -> Decimal | None:
        """Home-currency units per unit of `currency` (1 for the home currency); None if unknown."""
        if currency == self.home_currency:
            return Decimal(1)
        return self.rates.get(currency)


# --- addresses.yaml --------------------------------------------------------------------------

AddressField = Literal["name", "line1", "line2", "line3", "city", "state", "postal_code"]


class LengthRule(_Model):
    length: int = Field(gt=0)
    overflow: Overflow = "error"


class LinesRule(_Model):
    length: int = Field(default=30, gt=0)
    count: int = Field(default=3, ge=1, le=3)
    overflow: Overflow = "error"


class AddressesMapping(_Model):
    version: Literal[1]
    code_page: str = "cp1252"
    case: dict[AddressField, Literal["upper", "title", "keep"]] = Field(default_factory=dict)
    lines: LinesRule = LinesRule()
    lengths: dict[Literal["name", "city", "postal_code"], LengthRule] = Field(default_factory=dict)
    unknown_country: Literal["error", "keep"] = "error"
    other_states: Literal["drop", "error"] = "drop"  # too long, in a country without a `states` list
    countries: dict[str, str] = Field(default_factory=dict)
    names: dict[str, str] = Field(default_factory=dict)
    states: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("code_page")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown code page {value!r} (Python codec names: cp1252, latin-1)") from None
        return value

    @functools.cached_property
    def names_folded(self) -> dict[str, str]:
        return {k.casefold(): v for k, v in self.names.items()}

    @functools.cached_property
    def states_folded(self) -> dict[str, dict[str, str]]:
        return {c: {k.casefold(): v for k, v in m.items()} for c, m in self.states.items()}


# --- the whole configuration -----------------------------------------------------------------

FILES: dict[str, tuple[str, type[_Model]]] = {
    "customers": ("customers.yaml", CustomersMapping),
    "orders": ("orders.yaml", OrdersMapping),
    "products": ("products.yaml", ProductsMapping),
    "pricing": ("pricing.yaml", PricingMapping),
    "addresses": ("addresses.yaml", AddressesMapping),
}


@dataclass(frozen=True)
class Mappings:
    """Every mapping file, validated; what it was checked against; when the files were read."""

    directory: Path
    customers: CustomersMapping
    orders: OrdersMapping
    products: ProductsMapping
    pricing: PricingMapping
    addresses: AddressesMapping
    sage: SageMetadata | None = None
    salesforce: SalesforceMetadata | None = None
    mtimes: dict[Path, float] = field(default_factory=dict)

    def changed(self) -> bool:
        """True when a mapping file was edited, added or removed since these were loaded."""
        for path, mtime in self.mtimes.items():
            try:
                if path.stat().st_mtime != mtime:
                    return True
            except OSError:
                return True
        return False

    def sage_length(self, table: str, column: str, explicit: int | None = None) -> int | None:
        """The length a text value may have in `table.column` (explicit, else from the metadata)."""
        if explicit is not None:
            return explicit
        col = self.sage.column(table, column) if self.sage else None
        return col.length if col is not None and col.kind == "text" else None

    def salesforce_text(self, text: str, obj: str, field_name: str) -> str:
        """`text` cut to what `obj.field_name` holds (its length in the metadata, else 255 like a
        Text(255) field), ending in an ellipsis when cut."""
        sobject = self.salesforce.object(obj) if self.salesforce else None
        found = sobject.field(field_name) if sobject else None
        length = found.length if found is not None and found.length else 255
        return text if len(text) <= length else text[: length - 1] + "…"

    def checked_against(self) -> list[str]:
        out = ["canonical schemas"]
        out.append(f"Salesforce metadata {self.salesforce.source}" if self.salesforce else "")
        out.append(f"Sage 100 columns {self.sage.source}" if self.sage else "")
        return [o for o in out if o]


# --- loading ---------------------------------------------------------------------------------


@dataclass
class _Doc:
    """One YAML file: its data and the line of every key path."""

    path: Path
    data: Any = None
    lines: dict[Path_, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return _display(self.path)

    def line(self, path: Path_) -> int:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _entry(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(file)"


def _index(node: yaml.Node, path: Path_, doc: _Doc, problems: list[str]) -> None:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    f"{doc.name}:{line}: {_entry((*path, key))}: key repeats the one on line {seen[key]}"
                )
            seen[key] = line
            doc.lines[(*path, key)] = line
            _index(value_node, (*path, key), doc, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            doc.lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), doc, problems)


def _read(path: Path, problems: list[str]) -> _Doc | None:
    doc = _Doc(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{doc.name}:1: (file): mapping file not found")
        return None
    except OSError as exc:
        problems.append(f"{doc.name}:1: (file): cannot read: {exc.strerror}")
        return None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            problems.append(f"{doc.name}:1: (file): the file is empty")
            return None
        _index(node, (), doc, problems)
        doc.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        problems.append(f"{doc.name}:{mark.line + 1 if mark else 1}: (file): not valid YAML: {exc.problem}")
        return None
    finally:
        loader.dispose()
    return doc


def _pydantic_problems(doc: _Doc, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # a tagged union (Literal["all"] | list) adds its member name to the location
        loc = tuple(p for p in loc if p not in {"literal['all']", "list[str]"})
        msg = err["msg"]
        if err["type"] == "string_type" and isinstance(err.get("input"), int | float | bool):
            msg += f" (got {err['input']!r}: quote it in YAML)"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt, or not supported here)"
        out.append(f"{doc.name}:{doc.line(loc)}: {_entry(loc)}: {msg}")
    return out


def load_mappings(
    directory: Path | str,
    *,
    salesforce_metadata: Path | str | None = None,
    sage_metadata: Path | str | None = None,
) -> Mappings:
    """Read and check every mapping file in `directory`; MappingError lists every problem."""
    directory = Path(directory)
    problems: list[str] = []
    docs: dict[str, _Doc] = {}
    models: dict[str, Any] = {}
    mtimes: dict[Path, float] = {}
    for key, (filename, model) in FILES.items():
        path = directory / filename
        try:
            mtimes[path] = path.stat().st_mtime
        except OSError:
            mtimes[path] = -1.0
        doc = _read(path, problems)
        if doc is None:
            continue
        docs[key] = doc
        if not isinstance(doc.data, dict):
            problems.append(f"{doc.name}:1: (file): expected a mapping of keys (version: 1, ...)")
            continue
        try:
            models[key] = model.model_validate(doc.data)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(doc, exc))
    sf: SalesforceMetadata | None = None
    sage: SageMetadata | None = None
    try:
        sf = load_salesforce_metadata(salesforce_metadata) if salesforce_metadata else None
    except MetadataError as exc:
        problems.append(str(exc))
    try:
        sage = load_sage_metadata(sage_metadata) if sage_metadata else None
    except MetadataError as exc:
        problems.append(str(exc))
    if len(models) == len(FILES):

        def report(file: str, path: Path_, reason: str) -> None:
            doc = docs[file]
            problems.append(f"{doc.name}:{doc.line(path)}: {_entry(path)}: {reason}")

        check_mappings(models, sf, sage, report)
    if problems:
        raise MappingError(problems)
    return Mappings(directory=directory, sage=sage, salesforce=sf, mtimes=mtimes, **models)
