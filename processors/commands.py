"""The records the processors send: Sage commands, Salesforce commands, and their deterministic IDs.

What it owns: building SageCommand (CreateSalesOrder, with its customer when Sage does not know
it yet; UpsertCustomer) and SalesforceCommand (UPDATE by record ID, UPSERT by external ID, INSERT
of a platform event) records as the serde encodes them, the Kafka key of each (topics.yaml: the
Salesforce record ID, or `<SObject>/<external ID>` for an upsert, `<Event>/<correlation ID>` for an
insert), and `command_id()` (sagesf/command_ids.py): a UUIDv5 of what the command is about, so
the same input always yields the same command ID and redelivered or replayed inputs are
recognisably the same command downstream.

How it works: `Outbound` pairs a topic (by its topics.yaml name), a key, a schema name and the
record. The CreateSalesOrder/UpsertCustomer union branch is chosen explicitly with fastavro's
`(name, record)` tuple, so the encoder never guesses. `sobject_for()` names the Salesforce
object of a record ID by its key prefix (006 Opportunity, 801 Order, 001 Account, 01t Product2).

Limits: command IDs identify the command, not its content: a changed order re-sent for the
same Opportunity keeps its command ID, and the Sage sink answers it with the order it already
created (it is idempotent on the Salesforce ID).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sagesf import topic_names
from sagesf.command_ids import NAMESPACE, command_id

__all__ = [
    "NAMESPACE",
    "Outbound",
    "command_id",
    "create_sales_order",
    "envelope",
    "salesforce_insert",
    "salesforce_update",
    "salesforce_upsert",
    "sobject_for",
    "update_item",
    "upsert_customer",
]

_PREFIXES = {
    "006": "Opportunity",
    "801": "Order",
    "001": "Account",
    "01t": "Product2",
    "00k": "OpportunityLineItem",
    "802": "OrderItem",
}
_CANONICAL = "io.sagesf.canonical."


@dataclass(frozen=True)
class Outbound:
    """One record to produce: topic (topics.yaml name), key, schema of the value, the value."""

    topic: str
    key: str
    schema: str
    value: dict[str, Any]


def sobject_for(record_id: str) -> str | None:
    """The Salesforce object of a record ID, by its three-character key prefix."""
    return _PREFIXES.get(record_id[:3])


def envelope(
    source_record_id: str, correlation_id: str | None, now: datetime | None = None
) -> dict[str, Any]:
    """A fresh envelope for a record the integration itself produces (source SAGESF)."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": now or datetime.now(UTC),
        "source_system": "SAGESF",
        "source_record_id": source_record_id,
        "correlation_id": correlation_id,
    }


def create_sales_order(
    order: Mapping[str, Any],
    cid: str,
    key: str,
    correlation_id: str | None,
    customer: Mapping[str, Any] | None = None,
    *,
    event_time: datetime | None,
    customer_columns: Mapping[str, str] | None = None,
    header_columns: Mapping[str, str],
    line_columns: list[dict[str, str]],
) -> Outbound:
    """The order; with `customer` and its AR_Customer `customer_columns` when Sage does not know
    it yet (the sink creates it with the order). `event_time`: when the order changed in
    Salesforce (the order record's envelope.event_time). `header_columns` / `line_columns`: the
    Sage columns orders.yaml maps the order to (processors/order_mapping.py), one map per line of
    `order`."""
    new_customer = dict(customer) if customer is not None else None
    body = {
        "order": dict(order),
        "customer": new_customer,
        "customer_columns": dict(customer_columns) if customer_columns is not None else None,
        "header_columns": dict(header_columns),
        "line_columns": [dict(line) for line in line_columns],
    }
    value = {
        "envelope": envelope(key, correlation_id),
        "command_id": cid,
        "command": (_CANONICAL + "CreateSalesOrder", body),
        "source_event_time": event_time,
    }
    return Outbound(topic_names.SAGE_COMMANDS, key, "SageCommand", value)


def upsert_customer(
    customer: Mapping[str, Any],
    cid: str,
    key: str,
    correlation_id: str | None,
    *,
    columns: Mapping[str, str],
    event_time: datetime | None,
) -> Outbound:
    """Create or update the customer: the sink writes exactly `columns` (AR_Customer column ->
    text, processors/field_mapping.py `customer_columns`). `event_time`: when the Account changed
    (the customer record's envelope.event_time); the Sage sink does not let it overwrite a newer
    edit made in Sage."""
    value = {
        "envelope": envelope(key, correlation_id),
        "command_id": cid,
        "command": (_CANONICAL + "UpsertCustomer", {"customer": dict(customer), "columns": dict(columns)}),
        "source_event_time": event_time,
    }
    return Outbound(topic_names.SAGE_COMMANDS, key, "SageCommand", value)


def update_item(
    item_code: str, columns: Mapping[str, str], cid: str, key: str, *, event_time: datetime | None
) -> Outbound:
    """Set `columns` (CI_Item column -> text) of the existing Sage item `item_code`."""
    value = {
        "envelope": envelope(item_code, cid),
        "command_id": cid,
        "command": (_CANONICAL + "UpdateItem", {"item_code": item_code, "columns": dict(columns)}),
        "source_event_time": event_time,
    }
    return Outbound(topic_names.SAGE_COMMANDS, key, "SageCommand", value)


def _salesforce_command(
    operation: str,
    key: str,
    sobject: str,
    fields: Mapping[str, Any],
    *,
    cid: str,
    correlation_id: str | None,
    source_record_id: str,
    event_time: datetime | None,
    record_id: str | None = None,
    external_id_field: str | None = None,
    external_id: str | None = None,
) -> Outbound:
    value = {
        "envelope": envelope(source_record_id, correlation_id),
        "command_id": cid,
        "operation": operation,
        "sobject": sobject,
        "record_id": record_id,
        "external_id_field": external_id_field,
        "external_id": external_id,
        "fields": dict(fields),
        "source_event_time": event_time,
    }
    return Outbound(topic_names.SALESFORCE_COMMANDS, key, "SalesforceCommand", value)


def salesforce_update(
    sobject: str,
    record_id: str,
    fields: Mapping[str, Any],
    *,
    cid: str,
    correlation_id: str | None,
    source_record_id: str,
    event_time: datetime | None,
) -> Outbound:
    """Set `fields` on the record with ID `record_id` (Kafka key: the record ID)."""
    return _salesforce_command(
        "UPDATE",
        record_id,
        sobject,
        fields,
        cid=cid,
        correlation_id=correlation_id,
        source_record_id=source_record_id,
        event_time=event_time,
        record_id=record_id,
    )


def salesforce_upsert(
    sobject: str,
    external_id_field: str,
    external_id: str,
    fields: Mapping[str, Any],
    *,
    cid: str,
    correlation_id: str | None,
    source_record_id: str,
    event_time: datetime | None,
) -> Outbound:
    """Set `fields` on the record whose `external_id_field` is `external_id` (key `<SObject>/<value>`)."""
    return _salesforce_command(
        "UPSERT",
        f"{sobject}/{external_id}",
        sobject,
        fields,
        cid=cid,
        correlation_id=correlation_id,
        source_record_id=source_record_id,
        event_time=event_time,
        external_id_field=external_id_field,
        external_id=external_id,
    )


def salesforce_insert(
    sobject: str,
    fields: Mapping[str, Any],
    *,
    cid: str,
    key: str,
    correlation_id: str | None,
    event_time: datetime | None,
) -> Outbound:
    """Create a record from `fields` (how a platform event is published); Kafka key `<SObject>/<key>`."""
    return _salesforce_command(
        "INSERT",
        f"{sobject}/{key}",
        sobject,
        fields,
        cid=cid,
        correlation_id=correlation_id,
        source_record_id=key,
        event_time=event_time,
    )
