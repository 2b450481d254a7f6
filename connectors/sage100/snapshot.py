"""What a Sage 100 company holds now, for reconciliation: `SageSnapshot`, the sage-source's
snapshot hook (sagesf.reconcile `SnapshotReader`).

One ODBC scan per table, mapped by the source's own streams (connectors/sage100/streams.py), so
an entity is exactly what the source would publish for its row: customers with their contacts,
items with their warehouse levels attached, and the orders that carry a Salesforce ID, open
(SO_SalesOrderHeader) or in history (SO_SalesOrderHistoryHeader, where the UDF is configured).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from connectors.sage100.config import Sage100Settings
from connectors.sage100.odbc import Q, Row, SageOdbc
from connectors.sage100.streams import MappingContext, Stream, build_streams
from connectors.sage100.tables import TABLES
from connectors.sage100.values import text_value
from sagesf.errors import Permanent
from sagesf.reconcile import SAGE, Entity, Snapshot, SnapshotRequest

__all__ = ["SCANNED", "SageSnapshot"]

log = logging.getLogger(__name__)

SCANNED = (
    "AR_Customer",
    "CI_Item",
    "IM_ItemWarehouse",
    "SO_SalesOrderHeader",
)  # contacts: joined to customers
HISTORY = "SO_SalesOrderHistoryHeader"


class SageSnapshot:
    """Scans the company's tables once each (see the module doc).

    Entities: `customer` keyed `ARDivisionNo-CustomerNo` (links `sage:<key>` and, when its UDF
    holds one, `salesforce:<Account Id>`); `item` keyed ItemCode (link `item:<ItemCode>`), its
    record carrying `inventory_levels`, every warehouse's InventoryLevel; `order` keyed
    SalesOrderNo with `sales_order_no`, `salesforce_id`, `source_status` (Sage's status code) and
    `table` (link `salesforce:<ID>`). An order without a Salesforce ID is no linked order and is
    left out. A row the source could not map is left out too (it is in the source's dead letters).
    """

    system = SAGE

    def __init__(self, settings: Sage100Settings, odbc: SageOdbc) -> None:
        self.settings = settings
        self.odbc = odbc
        self.tables = settings.tables()
        ctx = MappingContext(
            settings.zone, settings.salesforce_id_udf, {}, integration_user=settings.integration_user_key
        )
        # orders are compared by header: one scan per table, no line query per order
        headers_only = {**self.tables, "SO_SalesOrderDetail": TABLES["SO_SalesOrderDetail"]}
        self.streams = build_streams(headers_only, SCANNED, ctx)

    def read(self, request: SnapshotRequest) -> Snapshot:
        started = datetime.now(UTC)
        entities: list[Entity] = []
        levels: dict[str, list[dict[str, Any]]] = {}
        for value in self._values("IM_ItemWarehouse"):
            levels.setdefault(str(value["item_code"]), []).append(value)
        for value in self._values("CI_Item"):
            code = str(value["item_code"])
            record = {**value, "inventory_levels": levels.get(code, [])}
            entities.append(Entity("item", code, record, (f"item:{code}",), _changed(value)))
        for value in self._values("AR_Customer"):
            key = f"{value['ar_division_no']}-{value['customer_no']}"
            account = value.get("salesforce_account_id")
            links = (f"sage:{key}", *([f"salesforce:{account}"] if account else []))
            entities.append(Entity("customer", key, value, links, _changed(value)))
        for order, changed in self._orders():
            entities.append(
                Entity(
                    "order",
                    order["sales_order_no"],
                    order,
                    (f"salesforce:{order['salesforce_id']}",),
                    changed,
                )
            )
        queries = len(SCANNED) + int(self._history_query() is not None)
        return Snapshot(SAGE, [replace(e, read_at=started) for e in entities], queries)

    def _values(self, table: str) -> Iterator[dict[str, Any]]:
        """The canonical values of every row of `table`, from one scan through its stream."""
        stream = self.streams[table]
        for group in stream.groups(self._scan(stream)):
            try:
                for record in stream.map(group, self.odbc):
                    if record.value is not None:
                        yield record.value
            except Permanent as exc:
                log.warning("reconciliation leaves %s %s out: %s", table, "-".join(map(str, group.key)), exc)

    def _scan(self, stream: Stream) -> list[Row]:
        order = [c for c in stream.order_by() if not c.endswith((".DateUpdated", ".TimeUpdated"))]
        sql = f"SELECT {stream.select_list()} FROM {stream.from_clause()} ORDER BY {', '.join(order)}"  # noqa: S608 - layout names only
        return [row for chunk in self.odbc.rows(sql) for row in chunk]

    def _orders(self) -> Iterator[tuple[dict[str, Any], datetime | None]]:
        """Open orders, then those only history holds (an open order is in history too, as A)."""
        numbers = set()
        for value in self._values("SO_SalesOrderHeader"):
            numbers.add(value["sales_order_no"])
            found = value.get("salesforce_opportunity_id") or value.get("salesforce_order_id")
            if found:
                yield (
                    _order(value["sales_order_no"], found, value.get("source_status"), "SO_SalesOrderHeader"),
                    _changed(value),
                )
        query = self._history_query()
        for number, status, found in self.odbc.fetchall(query) if query is not None else []:
            if text_value(found) and text_value(number) not in numbers:
                yield _order(text_value(number), text_value(found), text_value(status), HISTORY), None

    def _history_query(self) -> str | None:
        history, udf = self.tables.get(HISTORY), self.settings.salesforce_id_udf
        if history is None or not history.has(udf):
            return None
        return Q(history).select(["SalesOrderNo", "OrderStatus", udf], order_by=["SalesOrderNo"])


def _order(number: Any, salesforce_id: Any, status: Any, table: str) -> dict[str, Any]:
    return {
        "sales_order_no": str(number),
        "salesforce_id": str(salesforce_id),
        "source_status": status,
        "table": table,
    }


def _changed(value: Mapping[str, Any]) -> datetime | None:
    when = (value.get("envelope") or {}).get("event_time")
    return when if isinstance(when, datetime) else None
