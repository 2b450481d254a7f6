"""What two mappings make of one record, side by side: the console's preview on live records and
the processors' shadow mode both call `compare` (they differ only in where records come from).

What it owns: which pure mapping function applies to a record of a topic and direction
(processors/field_mapping.py: a Salesforce customer goes to Sage as AR_Customer columns, a Sage
customer to Salesforce as Account fields; items likewise), and `Comparison`, the two outcomes
(values, or the reason the record would fail) and whether they differ. Nothing is written.

Limits: orders are not compared yet (their mapping function belongs to the orders processor's
branch of this work); a record of another kind, or a Salesforce customer without an Account ID,
has no comparison (None).
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
from sagesf import topic_names
from sagesf.errors import Permanent

__all__ = ["ENTITY_OF_TOPIC", "Comparison", "Outcome", "compare", "direction_of"]

ENTITY_OF_TOPIC = {topic_names.CUSTOMERS: "customers", topic_names.ITEMS: "items"}
Mapper = Callable[[Mappings, Mapping[str, Any]], Mapping[str, Any]]


def _customer_to_sage(mappings: Mappings, customer: Mapping[str, Any]) -> Mapping[str, Any]:
    return customer_to_sage(mappings, customer)[0]


# (entity, direction) -> (the system and table or object that would receive it, the function)
_MAPPERS: dict[tuple[str, str], tuple[str, Mapper]] = {
    ("customers", "to_sage"): ("Sage AR_Customer", _customer_to_sage),
    ("customers", "to_salesforce"): ("Salesforce Account", customer_to_salesforce),
    ("items", "to_sage"): ("Sage CI_Item", item_to_sage),
    ("items", "to_salesforce"): ("Salesforce Product2", item_to_salesforce),
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
    topic: str, record: Mapping[str, Any], current: Mappings, candidate: Mappings
) -> Comparison | None:
    """Both mappings applied to `record` of `topic` (a topics.yaml name), or None when no mapping
    function applies to it."""
    entity, direction = ENTITY_OF_TOPIC.get(topic), direction_of(record)
    if entity is None or direction is None:
        return None
    receiver, mapper = _MAPPERS[(entity, direction)]
    return Comparison(
        entity, direction, receiver, _outcome(mapper, current, record), _outcome(mapper, candidate, record)
    )
