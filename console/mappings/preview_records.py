"""The newest records of an entity's topic, each mapped by the saved mapping and by the user's
draft (processors.preview.compare), for the editor's preview. Reads Kafka; writes nothing.

How it works: the last `count * 4` records of each partition of the topic are read (sagesf
topic_scan, no consumer group) and decoded through the registry; the newest `count` that travel
in the direction asked for are compared. Records whose value is not a decodable record
(tombstones, bytes the registry cannot explain) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.cluster import Cluster
from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.preview import TOPIC_OF_ENTITY, Comparison, compare

__all__ = ["TOPIC_OF_ENTITY", "PreviewRow", "load_both", "preview"]

_LABELS = (
    "name",
    "description",
    "item_code",
    "salesforce_account_id",
    "customer_no",
    "salesforce_opportunity_id",
    "salesforce_order_id",
)


@dataclass(frozen=True)
class PreviewRow:
    label: str  # a name a person recognises
    position: str  # topic/partition@offset
    comparison: Comparison


def load_both(
    live: Path, draft: Path, salesforce: Path | None, sage: Path | None
) -> tuple[Mappings, Mappings]:
    """The saved and the draft mappings, as the processors would load them (MappingError if not).""" ""
    current = load_mappings(live, salesforce_metadata=salesforce, sage_metadata=sage)
    return current, load_mappings(draft, salesforce_metadata=salesforce, sage_metadata=sage)


def preview(
    kafka: Cluster, entity: str, direction: str, current: Mappings, candidate: Mappings, count: int
) -> list[PreviewRow]:
    """The newest `count` records of `entity`'s topic going `direction`, newest first."""
    topic = TOPIC_OF_ENTITY[entity]
    decoder = kafka.decoder()
    rows: list[tuple[int, PreviewRow]] = []
    with kafka.reader() as reader:
        for record in reader.read(reader.ranges(topic, last=count * 4)):
            decoded = decoder.decode(record.value)
            if decoded.kind != "avro" or not isinstance(decoded.value, dict):
                continue
            found = compare(entity, decoded.value, current, candidate)
            if found is not None and found.direction == direction:
                rows.append((record.timestamp_ms, PreviewRow(_label(decoded.value), record.position, found)))
    rows.sort(key=lambda pair: pair[0], reverse=True)
    return [row for _, row in rows[:count]]


def _label(record: dict[str, Any]) -> str:
    parts = [str(record[k]) for k in _LABELS if record.get(k)]
    division, number = record.get("ar_division_no"), record.get("customer_no")
    if division and number:
        parts.insert(0, f"{division}-{number}")
    customer = record.get("customer")  # an order's
    if isinstance(customer, dict) and customer.get("name"):
        parts.append(str(customer["name"]))
    return " · ".join(dict.fromkeys(parts))
