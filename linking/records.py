"""The records the linker compares, made from canonical customer.v1 and item.v1 records.

What it owns: `Party` (an Account or a Sage customer) and `Article` (a Product2 or a CI_Item),
each with its identity, the key its record was published under, the link it names already
(Account ExternalID__c, Sage UDF_SALESFORCE_ID, Product2 Sage_Item_Code__c) and its values in
normal form (linking/normalise.py); `party()` and `article()` build them from a canonical record,
or return None for a record that is no candidate (deleted, not of either side).

Conventions read from the topics (topics.yaml): a Salesforce customer record carries
ar_division_no/customer_no when the Account's ExternalID__c names a Sage customer, and is keyed
by that key then, else by the Account ID; a Sage customer record carries salesforce_account_id
when its UDF names an Account. A Product2 record carries the Product2 ID; its item_code is
Sage_Item_Code__c when that is set, else the Product2 ID (its key until it is linked).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from linking import normalise

__all__ = ["SAGE", "SALESFORCE", "Article", "Party", "article", "party"]

SALESFORCE, SAGE = "SALESFORCE", "SAGE100"


@dataclass(frozen=True)
class Party:
    """An Account (side SALESFORCE, id: the Account ID) or a Sage customer (SAGE100, id:
    ARDivisionNo-CustomerNo)."""

    side: str
    id: str
    topic_key: str | None
    name: str
    linked_to: str | None  # the other side's id this record names already
    name_key: str
    phone: str
    street: str
    postal_code: str


@dataclass(frozen=True)
class Article:
    """A Product2 (side SALESFORCE, id = Product2 ID) or a CI_Item (SAGE100, id = ItemCode)."""

    side: str
    id: str
    topic_key: str | None
    name: str
    code: str  # ProductCode or ItemCode as written
    linked_to: str | None
    code_key: str
    description_key: str
    price: Decimal | None


def _source(record: Mapping[str, Any]) -> str | None:
    source = (record.get("envelope") or {}).get("source_system")
    return str(source) if source in (SALESFORCE, SAGE) else None


def party(record: Mapping[str, Any], key: str | None = None) -> Party | None:
    """The Party of a customer.v1 record (None: deleted, or of neither side)."""
    side = _source(record)
    if side is None or record.get("deleted"):
        return None
    account = record.get("salesforce_account_id")
    division, number = record.get("ar_division_no"), record.get("customer_no")
    sage_key = f"{division}-{number}" if division and number else None
    if side == SALESFORCE:
        if not account:
            return None
        own, other = str(account), sage_key
    else:
        if not sage_key:
            return None
        own, other = sage_key, (str(account) if account else None)
    address = record.get("billing_address") or {}
    name = str(record.get("name") or "")
    return Party(
        side=side,
        id=own,
        topic_key=key,
        name=name,
        linked_to=other,
        name_key=normalise.company_name(name),
        phone=normalise.phone(record.get("telephone_no")),
        street=normalise.street(address.get("line1"), address.get("line2")),
        postal_code=normalise.postal_code(address.get("postal_code")),
    )


def article(record: Mapping[str, Any], key: str | None = None) -> Article | None:
    """The Article of an item.v1 record (None: deleted, or of neither side)."""
    side = _source(record)
    if side is None or record.get("deleted"):
        return None
    item_code = str(record.get("item_code") or "")
    product = record.get("salesforce_product_id")
    if side == SALESFORCE:
        if not product:
            return None
        own, code = str(product), str(record.get("product_code") or "")
        # item_code is Sage_Item_Code__c, else the ProductCode (the source mapping's fallback): a
        # ProductCode names no Sage item, it is what the matcher compares
        other = item_code if item_code and item_code not in (own, code) else None
    else:
        if not item_code:
            return None
        own, code, other = item_code, item_code, (str(product) if product else None)
    name = str(record.get("description") or "")
    return Article(
        side=side,
        id=own,
        topic_key=key,
        name=name,
        code=code,
        linked_to=other,
        code_key=normalise.item_code(code),
        description_key=normalise.item_description(name),
        price=_price(record.get("standard_unit_price")),
    )


def _price(value: Any) -> Decimal | None:
    try:
        price = Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None
    return price if price is not None and price > 0 else None
