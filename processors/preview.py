"""What two mappings make of one record, side by side: the console's preview on live records
(`compare`, per editor tab) and the processors' shadow mode (`comparisons`, per topic) differ only
in where records come from.

What it owns: which entities a topic's records are compared as (the mapping editor's tabs: a
sales order is an order header and its lines), which pure mapping function applies to a record
of an entity and direction (processors/field_mapping.py: a Salesforce customer goes to Sage as
AR_Customer columns, a Sage customer to Salesforce as Account fields; items likewise;
processors/order_mapping.py: a Salesforce order to SO_SalesOrderHeader and SO_SalesOrderDetail
columns), and `Comparison`, the two outcomes (values, or the reason the record would fail) and
whether they differ. Nothing is written.

Limits: only the mapped columns are compared, not what the processors build themselves (keys,
items, quantities, prices); orders go to Sage only, so a Sage order has no comparison (None), nor
has a record of another kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.field_mapping import (
    customer_to_sage,
    customer_to_salesforce,
    item_to_sage,
    item_to_salesforce,
)
from processors.mapping_model import Mappings
from processors.order_mapping import order_to_sage
from sagesf import topic_names
from sagesf.errors import Permanent

__all__ = [
    "ENTITIES_OF_TOPIC",
    "TOPIC_OF_ENTITY",
    "Comparison",
    "Outcome",
    "compare",
    "comparisons",
    "direction_of",
]

# topics.yaml topic -> the entities its records are compared as (the console's entity keys)
ENTITIES_OF_TOPIC = {
    topic_names.CUSTOMERS: ("customers",),
    topic_names.ITEMS: ("items",),
    topic_names.SALES_ORDERS: ("order-header", "order-lines"),
}
TOPIC_OF_ENTITY = {entity: topic for topic, entities in ENTITIES_OF_TOPIC.items() for entity in entities}
Mapper = Callable[[Mappings, Mapping[str, Any]], Mapping[str, Any]]


def _customer_to_sage(mappings: Mappings, customer: Mapping[str, Any]) -> Mapping[str, Any]:
    return customer_to_sage(mappings, customer)[0]


def _order_header(mappings: Mappings, order: Mapping[str, Any]) -> Mapping[str, Any]:
    return order_to_sage(mappings, order)[0]


def _order_lines(mappings: Mappings, order: Mapping[str, Any]) -> Mapping[str, Any]:
    """Every line's detail columns in one row of values, each named `line <line_no> <column>`."""
    lines = order_to_sage(mappings, order)[1]
    numbers = [line.get("line_no") or n for n, line in enumerate(order.get("lines") or [], start=1)]
    return {
        f"line {number} {column}": value
        for number, columns in zip(numbers, lines, strict=True)
        for column, value in columns.items()
    }


# (entity, direction) -> (the system and table or object that would receive it, the function)
_MAPPERS: dict[tuple[str, str], tuple[str, Mapper]] = {
    ("customers", "to_sage"): ("Sage AR_Customer", _customer_to_sage),
    ("customers", "to_salesforce"): ("Salesforce Account", customer_to_salesforce),
    ("items", "to_sage"): ("Sage CI_Item", item_to_sage),
    ("items", "to_salesforce"): ("Salesforce Product2", item_to_salesforce),
    ("order-header", "to_sage"): ("Sage SO_SalesOrderHeader", _order_header),
    ("order-lines", "to_sage"): ("Sage SO_SalesOrderDetail", _order_lines),
}


@dataclass(frozen=True)
class Outcome:
    values: dict[str, Any] | None  # what the system would receive
    error: str | None = None  # why the record would fail (dead letter) instead


@dataclass(frozen=True)
class Comparison:
    entity: str
    direction: str  # to_sage | to_salesforce
    receiver: str  # e.g. "Sage AR_Customer"
    current: Outcome
    candidate: Outcome

    @property
    def differs(self) -> bool:
        return self.current != self.candidate

    @property
    def changed_fields(self) -> list[str]:
        """The fields whose value differs (all of them when one side failed)."""
        old, new = self.current.values or {}, self.candidate.values or {}
        return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def direction_of(record: Mapping[str, Any]) -> str | None:
    """to_sage for a record Salesforce published, to_salesforce for one Sage did."""
    system = (record.get("envelope") or {}).get("source_system")
    return {"SALESFORCE": "to_sage", "SAGE100": "to_salesforce"}.get(str(system))


def _outcome(mapper: Mapper, mappings: Mappings, record: Mapping[str, Any]) -> Outcome:
    try:
        return Outcome(dict(mapper(mappings, record)))
    except (Permanent, ValueError, KeyError) as exc:
        return Outcome(None, str(exc))


def compare(
    entity: str, record: Mapping[str, Any], current: Mappings, candidate: Mappings
) -> Comparison | None:
    """Both mappings applied to `record` as `entity` (a TOPIC_OF_ENTITY key), or None when no
    mapping function applies to it."""
    direction = direction_of(record)
    found = _MAPPERS.get((entity, direction)) if direction is not None else None
    if found is None or direction is None:
        return None
    receiver, mapper = found
    return Comparison(
        entity, direction, receiver, _outcome(mapper, current, record), _outcome(mapper, candidate, record)
    )


def comparisons(
    topic: str, record: Mapping[str, Any], current: Mappings, candidate: Mappings
) -> list[Comparison]:
    """`record` of `topic` (a topics.yaml name) compared as each entity the topic carries."""
    found = (compare(e, record, current, candidate) for e in ENTITIES_OF_TOPIC.get(topic, ()))
    return [c for c in found if c is not None]
