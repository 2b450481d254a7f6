"""The inventory processor's logic: Sage stock levels -> Product2 stock fields, coalesced per item.

What it owns: `InventoryPipeline`. `on_level` keeps the latest InventoryLevel of each item and
warehouse (inventory.v1, keyed ItemCode/WarehouseCode) in the `inventory` table, for the
warehouses products.yaml counts (all, or a list), ignoring a level older than the one kept, and
marks the item dirty. `flush`, run by a timer every `inventory_flush_interval` seconds, sums the
dirty items' warehouses into the configured Salesforce fields (Quantity_On_Hand__c,
Quantity_Available__c, Inventory_Updated__c = the latest change) and commands one UPSERT of
Product2 by Sage_Item_Code__c per item whose fields differ from what was last sent
(`inventory_sent`): a burst of 100 changes to one item within the interval is one command.

How it works: the Kafka key is `Product2/<ItemCode>` and the command ID a UUIDv5 of the item and
the fields, so a repeated flush of the same values is the same command. What was sent is
recorded only after Kafka acknowledged the command (`Step.after`), so a crash in between sends it
again rather than never. Dirty items are tracked in memory, fed by the table's change hook (this
worker's writes and other workers' changelog records alike); after a (re)start every item is
compared with `inventory_sent` once, which finds changes that arrived before a crash but were not
flushed.

Limits: the upsert creates the Product2 if no record has that Sage_Item_Code__c; Salesforce then
refuses it for lack of a Name (the Salesforce sink dead-letters it): items are expected to exist
in Salesforce. Quantities are sent as numbers rounded to the field's scale (2 without metadata).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from processors import commands
from processors.commands import command_id
from processors.state import MappingsRef, Step, Tables
from sagesf.errors import Permanent

__all__ = ["QUANTITIES", "InventoryPipeline"]

QUANTITIES = (
    "quantity_on_hand",
    "quantity_on_sales_order",
    "quantity_on_back_order",
    "quantity_on_purchase_order",
    "quantity_available",
)


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value or 0)


class InventoryPipeline:
    def __init__(self, mappings: MappingsRef, tables: Tables) -> None:
        self.mappings_ref = mappings
        self.tables = tables
        self.dirty: set[str] = set()
        # items with stock but no known Salesforce product yet: looked at again on every flush
        self.waiting: set[str] = set()
        self._by_item: dict[str, set[str]] = {}

    def changed(self, key: Any) -> None:
        """A level changed (table hook): remember which item to flush."""
        item, sep, _ = str(key).rpartition("/")
        if not sep:
            return
        self._by_item.setdefault(item, set()).add(str(key))
        self.dirty.add(item)

    def rebuild(self) -> None:
        """After recovery: index every level and compare every item with what was sent."""
        self._by_item.clear()
        for key in list(self.tables.inventory.keys()):
            self.changed(key)

    def on_level(self, key: str | None, level: Mapping[str, Any]) -> Step:
        inventory = self.mappings_ref.current.products.inventory
        item, warehouse = level.get("item_code"), level.get("warehouse_code")
        if not item or not warehouse:
            raise Permanent("the inventory level has no item_code or warehouse_code", field="item_code")
        if not inventory.counts(str(warehouse)):
            return Step("skipped")
        row_key = f"{item}/{warehouse}"
        when = _millis((level.get("envelope") or {}).get("event_time"))
        previous = self.tables.inventory.get(row_key)
        if previous is not None and int(previous.get("event_time") or 0) > when:
            return Step("stale")
        row: dict[str, Any] = {"event_time": when}
        for name in QUANTITIES:
            value = level.get(name)
            row[name] = None if value is None else str(value)
        if previous != row:
            self.tables.inventory[row_key] = row
        self.changed(row_key)
        return Step("buffered")

    def _scale(self, field: str) -> int:
        mappings = self.mappings_ref.current
        inventory = mappings.products.inventory
        sobject = mappings.salesforce.object(inventory.sobject) if mappings.salesforce else None
        found = sobject.field(field) if sobject else None
        return found.scale if found is not None and found.scale is not None else 2

    def fields_for(self, item: str) -> tuple[dict[str, Any], int] | None:
        """The Salesforce stock fields of `item` and its latest change (epoch ms); None without levels."""
        inventory = self.mappings_ref.current.products.inventory
        rows = []
        for key in sorted(self._by_item.get(item, ())):
            row = self.tables.inventory.get(key)
            if row is not None and inventory.counts(key.rpartition("/")[2]):
                rows.append(row)
        if not rows:
            return None
        latest = max(int(r.get("event_time") or 0) for r in rows)
        fields: dict[str, Any] = {}
        for target, source in inventory.fields.items():
            if source == "event_time":
                moment = datetime.fromtimestamp(latest / 1000, UTC)
                fields[target] = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
                continue
            total = Decimal(0)
            for row in rows:
                try:
                    total += Decimal(row.get(source) or 0)
                except InvalidOperation:
                    continue
            fields[target] = float(round(total, self._scale(target)))
        return fields, latest

    def flush(self) -> Step:
        """One UPSERT per dirty item whose stock fields differ from what was last sent."""
        inventory = self.mappings_ref.current.products.inventory
        items, self.dirty = sorted(self.dirty | self.waiting), set()
        step = Step("flushed")
        sent: dict[str, str] = {}
        for item in items:
            product = (self.tables.items.get(item) or {}).get("salesforce_product_id")
            if inventory.only_known_products and not product:
                self.waiting.add(item)
                continue
            self.waiting.discard(item)
            found = self.fields_for(item)
            if found is None:
                continue
            fields, latest = found
            fingerprint = json.dumps(fields, sort_keys=True)
            if self.tables.inventory_sent.get(item) == fingerprint:
                continue
            step.outbound.append(
                commands.salesforce_upsert(
                    inventory.sobject,
                    inventory.external_id_field,
                    item,
                    fields,
                    cid=command_id("Inventory", item, fingerprint),
                    correlation_id=None,
                    source_record_id=item,
                    event_time=datetime.fromtimestamp(latest / 1000, UTC),
                )
            )
            sent[item] = fingerprint

        def record_sent() -> None:
            for item, fingerprint in sent.items():
                self.tables.inventory_sent[item] = fingerprint

        step.after = record_sent
        return step
