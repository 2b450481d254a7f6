"""What the mapping editor edits, per entity: its mapping file, the Salesforce object and Sage
table on each side, where its pairs live in the file (per direction), and where the Salesforce
source reads the object's custom fields (salesforce_source.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DIRECTIONS", "ENTITIES", "Direction", "Entity", "FieldsSection", "entity"]

Direction = Literal["to_sage", "to_salesforce"]
DIRECTIONS: dict[Direction, str] = {"to_sage": "Salesforce → Sage", "to_salesforce": "Sage → Salesforce"}


@dataclass(frozen=True)
class FieldsSection:
    """A section of plain fields: canonical field -> {sage: column, ...} or {salesforce: field, ...}."""

    path: tuple[str, ...]
    target: Literal["sage", "salesforce"]


@dataclass(frozen=True)
class Entity:
    key: str
    title: str
    file: str  # in the mappings directory
    salesforce_object: str
    sage_table: str
    custom_fields: tuple[str, ...]  # where its custom fields live in `file`
    lookups: tuple[str, ...]  # where `type: lookup` tables live in `file`
    sections: dict[Direction, FieldsSection]
    source_object: str | None  # salesforce_source.yaml objects.<this> reads the custom fields
    code_lookup: bool = False  # products.yaml `lookup` (ProductCode -> ItemCode) edited here

    @property
    def picklists(self) -> tuple[str, ...]:
        return ("picklists",)

    def custom_path(self, name: str) -> tuple[str, ...]:
        return (*self.custom_fields, name)


ENTITIES: dict[str, Entity] = {
    e.key: e
    for e in (
        Entity(
            "customers",
            "Customers",
            "customers.yaml",
            "Account",
            "AR_Customer",
            ("custom_fields",),
            ("lookups",),
            {
                "to_sage": FieldsSection(("salesforce_to_sage", "fields"), "sage"),
                "to_salesforce": FieldsSection(("sage_to_salesforce", "fields"), "salesforce"),
            },
            "Account",
        ),
        Entity(
            "order-header",
            "Order header",
            "orders.yaml",
            "Opportunity",
            "SO_SalesOrderHeader",
            ("custom_fields",),
            ("lookups",),
            {"to_sage": FieldsSection(("header",), "sage")},
            "Opportunity",
        ),
        Entity(
            "order-lines",
            "Order lines",
            "orders.yaml",
            "OpportunityLineItem",
            "SO_SalesOrderDetail",
            ("line_custom_fields",),
            ("lookups",),
            {"to_sage": FieldsSection(("lines",), "sage")},
            None,  # the source reads line custom fields from no spec of its own yet
        ),
        Entity(
            "items",
            "Items",
            "products.yaml",
            "Product2",
            "CI_Item",
            ("custom_fields",),
            ("lookups",),
            {"to_salesforce": FieldsSection(("item_fields",), "salesforce")},
            "Product2",
            code_lookup=True,
        ),
    )
}


def entity(key: str) -> Entity | None:
    return ENTITIES.get(key)
