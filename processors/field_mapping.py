"""What the mappings make of a customer or an item for the other system, as pure functions.

What it owns: the one place customers.yaml and products.yaml are applied to a record. The live
sync (processors/customers.py, customer_directory.py, orders.py `on_item`), reconciliation
(processors/reconcile.py) and the console's preview and shadow mode call these; they read the
mappings only (no tables, no state), so the same record always maps the same way:
- `customer_to_sage(mappings, customer)` -> (AR_Customer columns, changes): an Account's
  Customer as the columns an UpsertCustomer carries (`customer_for_sage` + `customer_columns`);
- `customer_to_salesforce(mappings, customer)` -> Account fields of a Sage customer;
- `item_to_salesforce(mappings, item)` -> Product2 fields of a Sage item;
- `item_to_sage(mappings, item)` -> CI_Item columns of a Product2 (its custom fields).
Custom fields convert by their type through processors/field_types.py. A value a map or a type
refuses raises Permanent naming the field.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from processors import commands
from processors.addresses import standardise
from processors.code_page import for_sage
from processors.field_types import to_sage, to_salesforce
from processors.mapping_model import CustomField, Mappings, SalesforceFieldRef, ValueMap
from processors.sync_message import Changes
from sagesf.errors import Permanent

__all__ = [
    "customer_columns",
    "customer_for_sage",
    "customer_to_sage",
    "customer_to_salesforce",
    "item_to_sage",
    "item_to_salesforce",
    "put_column",
    "sage_text",
    "salesforce_value",
]

# Customer fields an UpsertCustomer carries whatever the mapping says (identity, status, addresses)
_CUSTOMER_STRUCTURE = frozenset(
    {"salesforce_account_id", "name", "status", "billing_address", "shipping_address", "deleted"}
)
# Customer fields that are no text for Sage, or that were made ready for it already
_NOT_SAGE_TEXT = frozenset({"envelope", "salesforce_account_id", "billing_address", "shipping_address"})
Maps = tuple[Mapping[str, ValueMap], Mapping[str, ValueMap]]


def salesforce_value(value: Any) -> Any:
    """A canonical value as the SalesforceCommand field map carries it (null/bool/long/double/string)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def sage_text(value: Any) -> str | None:
    """A mapped value as the text a command's columns carry: numbers as plain decimals, dates
    YYYY-MM-DD (a datetime by its date: Sage keeps no time with a date), checkboxes Y/N; None
    (and blank text) for nothing to write."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return text if text.strip() else None


def put_column(columns: dict[str, str], column: str, value: Any) -> None:
    """Set `column` to `value` as `sage_text` writes it, unless that is nothing."""
    text = sage_text(value)
    if text is not None:
        columns[column] = text


# --- customers -------------------------------------------------------------------------------


def customer_to_sage(mappings: Mappings, customer: Mapping[str, Any]) -> tuple[dict[str, str], Changes]:
    """The AR_Customer columns the mappings make of an Account's `customer`, and what their rules
    changed on the way (folded, cut, standardised)."""
    changes = Changes()
    record = customer_for_sage(mappings, customer, str(customer.get("salesforce_account_id") or ""), changes)
    return customer_columns(mappings, record), changes


def customer_for_sage(
    mappings: Mappings, customer: Mapping[str, Any], account: str, changes: Changes | None = None
) -> dict[str, Any]:
    """The Customer of an UpsertCustomer: the fields customers.yaml `salesforce_to_sage` lists
    (mapped), the addresses (standardised), status, contacts and the custom fields going to Sage
    (by UDF column, converted by type), every text in Sage's code page. A plain field the map
    does not list (credit_limit, current_balance, ...) is not sent: Sage keeps its own. What the
    rules changed is noted in `changes`."""
    changes = changes if changes is not None else Changes()
    mapping = mappings.customers
    out: dict[str, Any] = {
        k: copy.deepcopy(v)
        for k, v in customer.items()
        if k not in ("envelope", "ar_division_no", "customer_no", "custom_fields", "contacts")
        and (k in mapping.salesforce_to_sage.fields or k in _CUSTOMER_STRUCTURE)
    }
    out["envelope"] = commands.envelope(account, None)
    out["salesforce_account_id"] = account
    out["ar_division_no"] = None
    out["customer_no"] = None
    out.setdefault("status", "ACTIVE")
    out["contacts"] = list(customer.get("contacts") or [])
    for name, spec in mapping.salesforce_to_sage.fields.items():
        out[name] = mappings.sage_value(
            out.get(name), spec, mapping.picklists, "AR_Customer", f"customer.{name}", changes
        )
    if not out.get("name"):
        raise Permanent("the customer has no name, which Sage requires (CustomerName)", field="customer.name")
    for key in ("billing_address", "shipping_address"):
        out[key] = standardise(out.get(key), mappings.addresses, f"customer.{key}", changes)
    maps = (mapping.picklists, mapping.lookups)
    out["custom_fields"] = _customs_to_sage(
        mappings, "AR_Customer", mapping.custom_fields, maps, customer.get("custom_fields") or {}, "customer"
    )
    folded: dict[str, Any] = mappings.text_for_sage(out, "customer", changes, _NOT_SAGE_TEXT)
    return folded


def customer_columns(mappings: Mappings, record: Mapping[str, Any]) -> dict[str, str]:
    """The AR_Customer columns of a Customer `customer_for_sage` made: each `salesforce_to_sage`
    field at its `sage:` column, each address part at its column (`salesforce_to_sage.addresses`),
    the custom fields at their UDF columns. Empty values are left out (Sage keeps its value)."""
    to_sage_spec = mappings.customers.salesforce_to_sage
    columns: dict[str, str] = {}
    for name, spec in to_sage_spec.fields.items():
        put_column(columns, spec.sage, record.get(name))
    for key, parts in to_sage_spec.addresses.items():
        address = record.get(key) or {}
        for part, column in parts.items():
            put_column(columns, column, address.get(part))
    for column, value in (record.get("custom_fields") or {}).items():
        put_column(columns, column, value)
    return columns


def customer_to_salesforce(mappings: Mappings, customer: Mapping[str, Any]) -> dict[str, Any]:
    """The Account fields a Sage customer maps to (`sage_to_salesforce`, custom fields going to
    Salesforce, converted by type); empty values left out (Sage never blanks a Salesforce field)."""
    mapping = mappings.customers
    fields = _to_salesforce(mapping.sage_to_salesforce.fields, mapping.picklists, customer, "customer")
    maps = (mapping.picklists, mapping.lookups)
    fields.update(_customs_to_salesforce(mapping.custom_fields, maps, customer.get("custom_fields") or {}))
    return fields


# --- items -----------------------------------------------------------------------------------


def item_to_salesforce(mappings: Mappings, item: Mapping[str, Any]) -> dict[str, Any]:
    """The Product2 fields of a Sage item: products.yaml `item_fields` (through their maps) and
    the custom fields going to Salesforce; empty values left out."""
    products = mappings.products
    fields = _to_salesforce(products.item_fields, products.picklists, item, "item")
    maps = (products.picklists, products.lookups)
    fields.update(_customs_to_salesforce(products.custom_fields, maps, item.get("custom_fields") or {}))
    return fields


def item_to_sage(mappings: Mappings, item: Mapping[str, Any]) -> dict[str, str]:
    """The CI_Item columns of a Product2 (the Salesforce source's Item): its custom fields going
    to Sage, at their UDF columns, converted by type; empty ones left out."""
    products = mappings.products
    maps = (products.picklists, products.lookups)
    customs = _customs_to_sage(
        mappings, "CI_Item", products.custom_fields, maps, item.get("custom_fields") or {}, "item"
    )
    columns: dict[str, str] = {}
    for column, value in customs.items():
        put_column(columns, column, for_sage(value, mappings.code_page, f"item.{column}"))
    return columns


def _to_salesforce(
    targets: Mapping[str, SalesforceFieldRef],
    picklists: Mapping[str, ValueMap],
    record: Mapping[str, Any],
    entity: str,
) -> dict[str, Any]:
    """Salesforce field -> value of each canonical field of `record` a target names (through its
    map); empty values and values a map turns into null left out."""
    fields: dict[str, Any] = {}
    for name, target in targets.items():
        value = record.get(name)
        if target.map is not None:
            value = picklists[target.map].apply(value, name=target.map, where=f"{entity}.{name}")
        if value is not None and value != "":
            fields[target.salesforce] = salesforce_value(value)
    return fields


# --- custom fields ---------------------------------------------------------------------------


def _customs_to_sage(
    mappings: Mappings,
    table: str,
    specs: Mapping[str, CustomField],
    maps: Maps,
    values: Mapping[str, Any],
    record: str,
) -> dict[str, str]:
    """UDF column -> text of each custom field going to Sage (the sources key custom values by
    the canonical name); a field without a value gets its `default`, else is left out."""
    out: dict[str, str] = {}
    for name, spec in specs.items():
        if not spec.to_sage or spec.sage is None:
            continue
        column = mappings.sage.column(table, spec.sage) if mappings.sage else None
        where = f"{record}.custom_fields.{name}"
        text = to_sage(spec, values.get(name), column, values=spec.value_map(*maps), where=where)
        if text is not None:
            out[spec.sage] = text
    return out


def _customs_to_salesforce(
    specs: Mapping[str, CustomField], maps: Maps, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Salesforce field -> value of each custom field going to Salesforce (the Sage source keys
    a UDF by its column); empty ones left out."""
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        if not spec.to_salesforce or spec.sage is None or spec.salesforce is None:
            continue
        where = f"custom_fields.{name}"
        value = to_salesforce(spec, values.get(spec.sage), values=spec.value_map(*maps), where=where)
        if value is not None:
            out[spec.salesforce] = value
    return out
