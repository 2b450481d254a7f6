"""The mapping configuration (mappings/*.yaml) as validated models, and the value maps they apply.

What it owns: one pydantic model per mapping file the processors use - customers.yaml
(`CustomersMapping`), orders.yaml (`OrdersMapping`), products.yaml (`ProductsMapping`),
pricing.yaml (`PricingMapping`), addresses.yaml (`AddressesMapping`) - their building blocks
(`ValueMap`, `SageField`, ...) and `Mappings`, all five together with the metadata they were
checked against. Every model forbids unknown keys (`extra="forbid"`), so a misspelt key is an
error naming it. Reading the files is processors/mapping_files.py.

What the mappings make of a record is processors/field_mapping.py; custom values convert by
type in processors/field_types.py.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors.code_page import for_sage
from processors.metadata import SageMetadata, SalesforceMetadata
from processors.sync_message import Changes
from sagesf.errors import Permanent

__all__ = [
    "AddressesMapping",
    "CustomField",
    "CustomersMapping",
    "Mappings",
    "OrdersMapping",
    "PricingMapping",
    "ProductsMapping",
    "SageField",
    "ValueMap",
]

Unknown = Literal["error", "keep", "null"]
Overflow = Literal["error", "truncate"]
# text Sage's code page cannot store: folded to its closest form (the change is reported), or refused
OutsideCodePage = Literal["fold", "error"]


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

    @functools.cached_property
    def inverse(self) -> ValueMap:
        """The map the other way ({to: from}, same `unknown` rule); the load refuses a two-way map
        whose values meet, so no entry is lost here."""
        return ValueMap(values={v: k for k, v in self.values.items()}, unknown=self.unknown)

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
    outside_code_page: OutsideCodePage = "fold"


class SalesforceFieldRef(_Model):
    salesforce: str
    map: str | None = None


CustomType = Literal["text", "number", "date", "datetime", "checkbox", "picklist", "lookup"]
Direction = Literal["both", "salesforce_to_sage", "sage_to_salesforce"]


class CustomField(_Model):
    """A custom field carried between a Salesforce field and a Sage `UDF_` column, typed: its
    values are converted both ways by processors/field_types.py. `map` (type picklist) names a
    `picklists` entry and `lookup` (type lookup, a Salesforce reference such as OwnerId) a
    `lookups` entry of the same file, each {Salesforce value: Sage value}; Sage -> Salesforce uses
    its inverse. `default` is the Sage value written when the value is empty (toward Sage)."""

    salesforce: str | None = None
    sage: str | None = None
    type: CustomType = "text"
    map: str | None = None
    lookup: str | None = None
    default: str | None = None
    direction: Direction = "both"

    @model_validator(mode="after")
    def _map_for_its_type(self) -> CustomField:
        if self.type == "picklist" and self.map is None:
            raise ValueError("a picklist custom field names its value map (map: <picklists entry>)")
        if self.type == "lookup" and self.lookup is None:
            raise ValueError("a lookup custom field names its table (lookup: <lookups entry>)")
        if self.map is not None and self.type != "picklist":
            raise ValueError(f"map applies to type picklist, not {self.type}")
        if self.lookup is not None and self.type != "lookup":
            raise ValueError(f"lookup applies to type lookup, not {self.type}")
        return self

    @property
    def to_sage(self) -> bool:
        return self.sage is not None and self.direction != "sage_to_salesforce"

    @property
    def to_salesforce(self) -> bool:
        return self.salesforce is not None and self.direction != "salesforce_to_sage"

    def value_map(
        self, picklists: Mapping[str, ValueMap], lookups: Mapping[str, ValueMap]
    ) -> ValueMap | None:
        """The {Salesforce value: Sage value} map of a picklist or lookup field; None for the others."""
        if self.map is not None:
            return picklists[self.map]
        if self.lookup is not None:
            return lookups[self.lookup]
        return None


class SyncStatus(_Model):
    field: str
    synced: str
    error: str
    pending: str


# --- customers.yaml --------------------------------------------------------------------------


class CustomerIdentity(_Model):
    salesforce: str = "Id"
    sage: str


AddressColumn = Literal["name", "line1", "line2", "line3", "city", "state", "postal_code", "country_code"]


class CustomerToSage(_Model):
    sync: bool = True  # an Account change updates its (already linked) Sage customer
    fields: dict[str, SageField] = Field(default_factory=dict)
    # canonical address (billing_address, shipping_address) -> {Address field: AR_Customer column}
    addresses: dict[Literal["billing_address", "shipping_address"], dict[AddressColumn, str]] = Field(
        default_factory=dict
    )


class CustomerToSalesforce(_Model):
    sync: bool = True  # an AR_Customer change updates its Account
    create_accounts: bool = True  # an active Sage customer with no Account gets one
    fields: dict[str, SalesforceFieldRef] = Field(default_factory=dict)


class CustomerWriteBack(_Model):
    sync_status: SyncStatus
    message_field: str | None = None


CreditReplyValue = Literal[
    "account_id",
    "approved",
    "decision",
    "credit_limit",
    "current_balance",
    "open_order_total",
    "available_credit",
    "message",
]
CreditEventValue = Literal["correlation_id", "record_id", "message"]


class CreditReply(_Model):
    """Sage's answer to a credit check, for the requester only (processors/credit.py): the figures
    on a `record` the requester owns (upserted by `external_id` = the correlation ID, OwnerId =
    the requester), then a platform `event` naming that record, which every subscriber receives,
    so it can carry no figure: `event_fields` take only the correlation ID, the record ID and a
    message of the integration's own (when no record could be written)."""

    record: str  # e.g. Credit_Check__c, private sharing
    external_id: str  # its external-ID field that holds the correlation ID
    fields: dict[CreditReplyValue, str]  # reply value -> the record's field
    event: str  # the platform event, e.g. Credit_Check_Reply__e
    event_fields: dict[CreditEventValue, str]  # event value -> the event's field

    @field_validator("event_fields")
    @classmethod
    def _names_the_record(cls, value: dict[str, str]) -> dict[str, str]:
        missing = {"correlation_id", "record_id"} - set(value)
        if missing:
            raise ValueError(
                f"{' and '.join(sorted(missing))} must be sent: the requester finds its reply by the "
                "correlation ID and reads the figures from the record"
            )
        return value


class CustomersMapping(_Model):
    version: Literal[1]
    identity: CustomerIdentity
    external_id: str
    picklists: dict[str, ValueMap] = Field(default_factory=dict)
    lookups: dict[str, ValueMap] = Field(default_factory=dict)
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


# a part of a canonical Address (ShipToCode: `code`) an order header column is written from
OrderAddressPart = Literal[
    "code", "name", "line1", "line2", "line3", "city", "state", "postal_code", "country_code"
]


class OrdersMapping(_Model):
    version: Literal[1]
    start: dict[str, OrderStart] = Field(min_length=1)
    identity: OrderIdentity
    picklists: dict[str, ValueMap] = Field(default_factory=dict)
    header: dict[str, SageField] = Field(default_factory=dict)
    # bill_to / ship_to: address part -> SO_SalesOrderHeader column
    addresses: dict[Literal["bill_to", "ship_to"], dict[OrderAddressPart, str]] = Field(default_factory=dict)
    lines: dict[str, SageField] = Field(default_factory=dict)
    custom_fields: dict[str, CustomField] = Field(default_factory=dict)
    line_custom_fields: dict[str, CustomField] = Field(default_factory=dict)  # SO_SalesOrderDetail UDFs
    lookups: dict[str, ValueMap] = Field(default_factory=dict)
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
    # a ProductCode known nowhere maps to the one ItemCode (or lookup entry) it equals once
    # trimmed and case-folded; two candidates are an error naming both
    match_loosely: bool = True
    picklists: dict[str, ValueMap] = Field(default_factory=dict)
    item_fields: dict[str, SalesforceFieldRef] = Field(default_factory=dict)
    custom_fields: dict[str, CustomField] = Field(default_factory=dict)  # Product2 <-> CI_Item UDF_
    lookups: dict[str, ValueMap] = Field(default_factory=dict)
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
    outside_code_page: dict[AddressField, OutsideCodePage] = Field(default_factory=dict)  # else fold
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

    def mark_seen(self) -> None:
        """Take the files as they are now as seen, so an edit that failed to load is reported
        once, not at every check."""
        for path in self.mtimes:
            try:
                self.mtimes[path] = path.stat().st_mtime
            except OSError:
                self.mtimes[path] = -1.0

    def sage_length(self, table: str, column: str, explicit: int | None = None) -> int | None:
        """The length a text value may have in `table.column` (explicit, else from the metadata)."""
        if explicit is not None:
            return explicit
        col = self.sage.column(table, column) if self.sage else None
        return col.length if col is not None and col.kind == "text" else None

    @property
    def code_page(self) -> str:
        """Sage's code page (addresses.yaml `code_page`): every text is folded into it."""
        return self.addresses.code_page

    def sage_value(
        self,
        value: Any,
        spec: SageField,
        maps: Mapping[str, ValueMap],
        table: str,
        where: str,
        changes: Changes | None = None,
    ) -> Any:
        """`value` on its way to Sage column `table`.`spec.sage`: through its value map, the default
        when empty, folded into Sage's code page (or refused: `outside_code_page: error`), and cut
        (`overflow: truncate`) or refused (Permanent) when longer than the column. What was folded
        or cut is noted in `changes`."""
        if spec.map is not None:
            value = maps[spec.map].apply(value, name=spec.map, where=where)
        if (value is None or value == "") and spec.default is not None:
            value = spec.default
        if isinstance(value, str):
            refuse = spec.outside_code_page == "error"
            value = for_sage(value, self.code_page, where, refuse=refuse, changes=changes)
            length = self.sage_length(table, spec.sage, spec.length)
            if length is not None and len(value) > length:
                if spec.overflow == "truncate":
                    value = value[:length].rstrip()
                    if changes is not None:
                        changes.cut(where, length)
                else:
                    raise Permanent(
                        f"{where} {value!r} is {len(value)} characters; {table}.{spec.sage} holds {length}",
                        field=where,
                        value=value,
                    )
        return value

    def text_for_sage(self, value: Any, where: str, changes: Changes, skip: frozenset[str]) -> Any:
        """`value` (a record, list or text) with every text folded into Sage's code page, except
        under the keys in `skip`: the rule for text no mapping lists (comments, custom fields)."""
        if isinstance(value, str):
            return for_sage(value, self.code_page, where, changes=changes)
        if isinstance(value, dict):
            return {
                k: v if k in skip else self.text_for_sage(v, f"{where}.{k}" if where else k, changes, skip)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.text_for_sage(v, f"{where}[{i}]", changes, skip) for i, v in enumerate(value, 1)]
        return value

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
