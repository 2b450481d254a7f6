"""The Sage sink's command and result records in Python: reading SageCommand, building SageResult.

Owns the mapping between the Avro records on sage.commands.v1 / sage.results.v1
(schemas/SageCommand.avsc, schemas/SageResult.avsc) and what the sink works with: `SageCommand`
(the command's ID, correlation ID, kind and source event time, with the canonical SalesOrder and
Customer records it carries, as decoded dicts) and `result_record(...)` (the SageResult dict to
encode, with `Stale` when a newer change in Sage kept the command from writing).

How it works: the serde decodes a SageCommand into plain dicts; the `command` union is told apart
by its fields (a CreateSalesOrder has `order`, an UpsertCustomer `customer`, an UpdateItem
`item_code`), or by name when
the decoder returns `(name, record)` pairs. A command that is not shaped like either is
`Permanent`. The Salesforce record ID an order is idempotent on is the Opportunity ID, else the
Order ID.

Limits: the canonical records stay dicts (fastavro's decoded form); the sink's validation reads
the fields it needs and names them in its errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from connectors.sage100.writes import OrderTotals, WrittenCustomer, WrittenOrder
from sagesf.errors import Permanent
from sagesf.logs import redact
from sagesf.stale import Stale

__all__ = [
    "SAGE_ORDER_STATUS",
    "CommandKind",
    "Outcome",
    "SageCommand",
    "parse_command",
    "result_record",
]

# Sage OrderStatus -> canonical OrderStatus: SO_SalesOrderHeader N O H C, and the codes only
# SO_SalesOrderHistoryHeader has (A active, X deleted order, Z deleted quote; C there is completed)
SAGE_ORDER_STATUS = {
    "N": "NEW",
    "O": "OPEN",
    "H": "HOLD",
    "C": "CLOSED",
    "A": "OPEN",
    "X": "DELETED",
    "Z": "DELETED",
}


class CommandKind(StrEnum):
    CREATE_SALES_ORDER = "CREATE_SALES_ORDER"
    UPSERT_CUSTOMER = "UPSERT_CUSTOMER"
    UPDATE_ITEM = "UPDATE_ITEM"
    UNKNOWN = "UNKNOWN"


class Outcome(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    EXISTING = "EXISTING"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class SageCommand:
    """One decoded command. `order` is a canonical SalesOrder, `customer` a canonical Customer."""

    command_id: str
    correlation_id: str | None
    kind: CommandKind
    order: Mapping[str, Any] | None = None
    customer: Mapping[str, Any] | None = None
    source_event_time: datetime | None = None  # when the change happened in its source (UTC)
    # the Sage columns to write (UpsertCustomer.columns, CreateSalesOrder.customer_columns,
    # UpdateItem.columns); None: a command written before processors computed them
    columns: Mapping[str, str] | None = None
    item_code: str | None = None  # UpdateItem

    @property
    def salesforce_record_id(self) -> str | None:
        """The record to write back to: the order's Opportunity/Order ID, or the customer's Account
        ID (an UpdateItem: none; its result names the item by source_record_id)."""
        if self.order is not None:
            sf_id = self.order.get("salesforce_opportunity_id") or self.order.get("salesforce_order_id")
            return str(sf_id) if sf_id else None
        if self.customer is not None:
            account = self.customer.get("salesforce_account_id")
            return str(account) if account else None
        return None


def parse_command(value: Any) -> SageCommand:
    """The SageCommand in a decoded record; Permanent when it is not one."""
    if not isinstance(value, Mapping):
        raise Permanent(f"a SageCommand record was expected, got {type(value).__name__}", field="value")
    command_id = value.get("command_id")
    if not command_id:
        raise Permanent("the command has no command_id", field="command_id", value=command_id)
    envelope = value.get("envelope") or {}
    correlation = envelope.get("correlation_id") if isinstance(envelope, Mapping) else None
    body = value.get("command")
    name = None
    if isinstance(body, tuple) and len(body) == 2:
        name, body = body
    if not isinstance(body, Mapping):
        raise Permanent(
            "the command has no CreateSalesOrder, UpsertCustomer or UpdateItem", field="command", value=body
        )
    when = value.get("source_event_time")
    when = when if isinstance(when, datetime) else None
    if (name or "").endswith("CreateSalesOrder") or (name is None and "order" in body):
        order = body.get("order")
        if not isinstance(order, Mapping):
            raise Permanent("CreateSalesOrder has no order", field="order")
        customer = body.get("customer")
        return SageCommand(
            str(command_id),
            correlation,
            CommandKind.CREATE_SALES_ORDER,
            order=order,
            customer=customer if isinstance(customer, Mapping) else None,
            source_event_time=when,
            columns=_columns(body.get("customer_columns")),
        )
    if (name or "").endswith("UpsertCustomer") or (name is None and "customer" in body):
        customer = body.get("customer")
        if not isinstance(customer, Mapping):
            raise Permanent("UpsertCustomer has no customer", field="customer")
        kind = CommandKind.UPSERT_CUSTOMER
        columns = _columns(body.get("columns"))
        return SageCommand(
            str(command_id), correlation, kind, customer=customer, source_event_time=when, columns=columns
        )
    if (name or "").endswith("UpdateItem") or (name is None and "item_code" in body):
        code, columns = body.get("item_code"), _columns(body.get("columns"))
        if not code or columns is None:
            raise Permanent("UpdateItem needs item_code and columns", field="item_code", value=code)
        kind = CommandKind.UPDATE_ITEM
        return SageCommand(
            str(command_id), correlation, kind, source_event_time=when, columns=columns, item_code=str(code)
        )
    raise Permanent(f"unknown command kind {name or sorted(body)}", field="command", value=name)


def _columns(value: Any) -> Mapping[str, str] | None:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else None


def result_record(
    *,
    command_id: str,
    correlation_id: str | None,
    salesforce_record_id: str | None,
    kind: CommandKind,
    outcome: Outcome,
    order: WrittenOrder | None = None,
    customer: WrittenCustomer | None = None,
    salesforce_account_id: str | None = None,
    customer_created: bool = False,
    error: Permanent | None = None,
    stale: Stale | None = None,
    now: datetime | None = None,
    item_code: str | None = None,
) -> dict[str, Any]:
    """The SageResult record for one answered command (`item_code`: an UpdateItem's item)."""
    ref_division = order.ar_division_no if order else customer.ar_division_no if customer else None
    ref_number = order.customer_no if order else customer.customer_no if customer else None
    totals = order.totals if order else None
    record: dict[str, Any] = {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_time": now or datetime.now(UTC),
            "source_system": "SAGE100",
            "source_record_id": _source_record_id(order, customer, command_id, item_code),
            "correlation_id": correlation_id,
        },
        "command_id": command_id,
        "correlation_id": correlation_id,
        "salesforce_record_id": salesforce_record_id,
        "kind": kind.value,
        "outcome": outcome.value,
        "sales_order_no": order.sales_order_no if order else None,
        "order_status": SAGE_ORDER_STATUS.get(order.order_status, "UNKNOWN") if order else None,
        "source_status": order.order_status if order else None,
        "customer": (
            {
                "salesforce_account_id": salesforce_account_id,
                "ar_division_no": ref_division,
                "customer_no": ref_number,
                "name": None,
            }
            if ref_number
            else None
        ),
        "customer_created": customer_created,
        "lines": [
            {
                "line_no": line.line_no,
                "line_key": line.line_key,
                "salesforce_line_id": line.salesforce_line_id,
                "item_code": line.item_code,
                "extension_amount": line.extension_amt,
            }
            for line in (order.lines if order else ())
        ],
        **_totals(totals),
        "error": (
            {
                "reason": redact(error.reason),  # it reaches a Salesforce field
                "field": error.field,
                "value": None if error.value is None else redact(str(error.value))[:500],
                "error_class": f"{type(error).__module__}.{type(error).__qualname__}",
            }
            if error is not None
            else None
        ),
        "stale": stale.record() if stale is not None else None,
    }
    return record


def _totals(totals: OrderTotals | None) -> dict[str, Decimal | None]:
    if totals is None:
        names = ("taxable", "non_taxable", "sales_tax", "freight", "discount", "total")
        return {f"{n}_amount": None for n in names}
    return {
        "taxable_amount": totals.taxable_amt,
        "non_taxable_amount": totals.non_taxable_amt,
        "sales_tax_amount": totals.sales_tax_amt,
        "freight_amount": totals.freight_amt,
        "discount_amount": totals.discount_amt,
        "total_amount": totals.total,
    }


def _source_record_id(
    order: WrittenOrder | None, customer: WrittenCustomer | None, command_id: str, item_code: str | None
) -> str:
    if order is not None:
        return order.sales_order_no
    if customer is not None:
        return f"{customer.ar_division_no}-{customer.customer_no}"
    return item_code or command_id
