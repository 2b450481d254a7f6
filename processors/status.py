"""The status processor's logic: a Sage 100 order status change -> the Opportunity / Order.

What it owns: `StatusPipeline.on_status_change`, for each OrderStatusChange on orderstatus.v1
(keyed by SalesOrderNo): find the Salesforce records the Sage order came from (the IDs the Sage
source read from the order's Salesforce-ID UDF, plus those the orders processor remembered from
Sage's result: an Order made from an Opportunity gets both updated), map the status through
orders.yaml `order_status` (Sage code N/O/H/C and history A/C/X/Z first, then the canonical
status), and command an UPDATE of Sage_Order_Status__c (plus the `extra_fields` for that value
and object, and the header UDFs orders.yaml `custom_fields` maps toward Salesforce, converted by
type) on each record. The Sage source publishes a UDF change as such a record too, its status
unchanged. The record's `lines` carry the order's SO_SalesOrderDetail UDFs by LineKey: each line
the orders processor learnt from Sage's result (LineKey -> OpportunityLineItem / OrderItem ID)
gets an UPDATE of the `line_custom_fields` orders.yaml maps toward Salesforce; a line Sage added
itself has no Salesforce line and is skipped (logged at DEBUG).

How it works: the command ID is a UUIDv5 of the record and the change event's ID, so a
redelivered change is the same command; `source_event_time` is Sage's change time, so the
Salesforce sink keeps the latest status when it coalesces several.
A status the map does not know is `Permanent` (dlq.status.v1) with `unknown: error`, or skipped
with `unknown: skip`. A Sage order that did not come from Salesforce is skipped (no record to
update), which is normal for orders entered in Sage.

Limits: only orders whose Salesforce ID is known are followed; an order created in Sage for an
Opportunity by hand (without the UDF) stays invisible to Salesforce.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from processors import commands
from processors.commands import Outbound, command_id, sobject_for
from processors.field_types import to_salesforce
from processors.mapping_model import CustomField
from processors.orders import OrderPipeline
from processors.state import Step
from sagesf.errors import Permanent

log = logging.getLogger(__name__)

__all__ = ["StatusPipeline"]


class StatusPipeline:
    def __init__(self, orders: OrderPipeline) -> None:
        self.orders = orders  # shares its mappings, tables and status map

    def on_status_change(self, key: str | None, change: Mapping[str, Any]) -> Step:
        number = change.get("sales_order_no") or key
        records = [
            r for r in (change.get("salesforce_opportunity_id"), change.get("salesforce_order_id")) if r
        ]
        known = self.orders.tables.order_numbers.get(str(number)) if number else None
        records += [r for r in (known or {}).get("records", []) if r not in records]
        if not records:
            return Step("skipped")
        code, status = change.get("source_status"), change.get("status")
        envelope = change.get("envelope") or {}
        step = Step("updated")
        objects = self.orders.mappings.orders.write_back.objects
        for record in records:
            obj = sobject_for(str(record))
            if obj not in objects:
                continue
            fields = self.orders.status_fields(obj, code, status)
            if fields is not None:
                fields.update(self._custom_fields(change, str(number)))
            if fields is None:
                if self.orders.mappings.orders.order_status.unknown == "skip":
                    return Step("skipped")
                raise Permanent(
                    f"Sage order {number}: status {code or status!r} has no Salesforce value in orders.yaml "
                    "order_status",
                    field="source_status",
                    value=code or status,
                )
            step.outbound.append(
                commands.salesforce_update(
                    obj,
                    str(record),
                    fields,
                    cid=command_id("OrderStatus", str(record), str(envelope.get("event_id") or number)),
                    correlation_id=envelope.get("correlation_id"),
                    source_record_id=str(number),
                    event_time=envelope.get("event_time"),
                )
            )
        step.outbound += self._line_updates(change, str(number), (known or {}).get("lines") or {})
        return step if step.outbound else Step("skipped")

    def _line_updates(
        self, change: Mapping[str, Any], number: str, line_ids: Mapping[str, str]
    ) -> list[Outbound]:
        """An UPDATE of each known Salesforce line with the line UDFs mapped toward Salesforce."""
        envelope = change.get("envelope") or {}
        out: list[Outbound] = []
        specs = self.orders.mappings.orders.line_custom_fields
        for line in change.get("lines") or []:
            key = str(line.get("line_key"))
            where = f"Sage order {number} line {key}"
            line_id = line_ids.get(key)
            sobject = sobject_for(line_id) if line_id else None
            if line_id is None or sobject is None:  # issue 15: lines added in Sage
                log.debug("%s has no known Salesforce line (added in Sage?): skipped", where)
                continue
            fields = self._mapped(specs, line, where, "line_custom_fields")
            if not fields:
                continue
            event = str(envelope.get("event_id") or number)
            out.append(
                commands.salesforce_update(
                    sobject,
                    line_id,
                    fields,
                    cid=command_id("OrderLineFields", line_id, event),
                    correlation_id=envelope.get("correlation_id"),
                    source_record_id=number,
                    event_time=envelope.get("event_time"),
                )
            )
        return out

    def _custom_fields(self, change: Mapping[str, Any], number: str) -> dict[str, Any]:
        return self._mapped(
            self.orders.mappings.orders.custom_fields, change, f"Sage order {number}", "custom_fields"
        )

    def _mapped(
        self, specs: Mapping[str, CustomField], record: Mapping[str, Any], where: str, section: str
    ) -> dict[str, Any]:
        """The UDFs of `record` (a header or a line) orders.yaml sends to Salesforce (direction
        both or sage_to_salesforce), converted by type; an empty UDF is left out (Sage never
        blanks a Salesforce field)."""
        orders = self.orders.mappings.orders
        udfs = record.get("custom_fields") or {}
        out: dict[str, Any] = {}
        for name, spec in specs.items():
            if not spec.to_salesforce or spec.sage not in udfs:
                continue
            assert spec.salesforce is not None
            maps = spec.value_map(orders.picklists, orders.lookups)
            value = to_salesforce(
                spec, udfs[spec.sage], values=maps, where=f"{where} {spec.sage} ({section}.{name})"
            )
            if value is not None:
                out[spec.salesforce] = value
        return out
