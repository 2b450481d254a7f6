"""What a link (or an unlink) writes: the commands to both systems, the tombstone of the record
published under the Salesforce ID, and the pair's new state.

What it owns: `Outbound` (a record to produce: Avro by schema name, JSON for link.state.v1, or a
tombstone) and `LinkFields` (which Salesforce fields hold the link), and `linked()` /
`unlinked()`, the records one pair's change writes.

A customer link: UPDATE Account.ExternalID__c = ARDivisionNo-CustomerNo (salesforce.commands.v1,
keyed by the Account ID like every Account command), an UpsertCustomer naming the Account and
the customer and nothing else (sage.commands.v1: the Sage sink links an unlinked customer,
writing UDF_SALESFORCE_ID, and refuses one linked to another Account; a blank name leaves
Sage's), and a tombstone for the customer.v1 record keyed by the Account ID, since the record's
key becomes the Sage key. An item link: UPDATE Product2.Sage_Item_Code__c = ItemCode and the
tombstone of the item.v1 record keyed by the Product2 ID; CI_Item has no Salesforce column.
An unlink clears the Salesforce field; Sage's UDF cannot be cleared through the sink (the link is
its authority), so `unlinked` says so and an operator clears it in Sage.

Command IDs are UUIDv5 of what the command is about (sagesf/command_ids.py, as the processors'), so
a repeated link is recognisably the same command; every write is idempotent downstream anyway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sagesf import topic_names
from sagesf.command_ids import command_id
from sagesf.link_state import CUSTOMER, PairState

__all__ = ["LinkFields", "Outbound", "linked", "unlinked"]

_CANONICAL = "io.sagesf.canonical."
SAGE_UDF_NOTE = (
    "Sage 100 keeps UDF_SALESFORCE_ID of customer {sage} (the link's authority there): clear it in "
    "Customer Maintenance; until then the pipeline refuses the customer's changes (a dead letter, "
    "Error on Account {account}) rather than link the two again"
)


@dataclass(frozen=True)
class Outbound:
    """A record to produce: `schema` names its Avro value schema; None with a value: JSON
    (link.state.v1); a None value: a tombstone."""

    topic: str
    key: str
    schema: str | None
    value: Any


@dataclass(frozen=True)
class LinkFields:
    """The Salesforce fields that hold a link (mappings: customers.yaml external_id, products.yaml
    inventory.external_id_field)."""

    account: str = "ExternalID__c"
    product: str = "Sage_Item_Code__c"


def _envelope(source_record_id: str, correlation_id: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": "SAGESF",
        "source_record_id": source_record_id,
        "correlation_id": correlation_id,
    }


def _salesforce_update(
    sobject: str, record_id: str, fields: dict[str, Any], cid: str, about: str
) -> Outbound:
    value = {
        "envelope": _envelope(about, cid),
        "command_id": cid,
        "operation": "UPDATE",
        "sobject": sobject,
        "record_id": record_id,
        "external_id_field": None,
        "external_id": None,
        "fields": fields,
        "source_event_time": datetime.now(UTC),
    }
    return Outbound(topic_names.SALESFORCE_COMMANDS, record_id, "SalesforceCommand", value)


def _link_customer_in_sage(pair: PairState, cid: str) -> Outbound:
    division, _, number = pair.sage_id.partition("-")
    customer = {
        "envelope": _envelope(pair.salesforce_id, cid),
        "salesforce_account_id": pair.salesforce_id,
        "ar_division_no": division,
        "customer_no": number,
        "name": "",  # blank: Sage's name stays
        "status": "UNKNOWN",  # not written
    }
    value = {
        "envelope": _envelope(pair.salesforce_id, cid),
        "command_id": cid,
        # no columns: the link (the Salesforce ID UDF) is all it writes
        "command": (_CANONICAL + "UpsertCustomer", {"customer": customer, "columns": {}}),
    }
    return Outbound(topic_names.SAGE_COMMANDS, pair.salesforce_id, "SageCommand", value)


def _tombstone(pair: PairState) -> list[Outbound]:
    key = pair.salesforce_key
    if not key or key == pair.sage_id:
        return []
    topic = topic_names.CUSTOMERS if pair.kind == CUSTOMER else topic_names.ITEMS
    return [Outbound(topic, key, None, None)]


def state(pair: PairState) -> Outbound:
    return Outbound(topic_names.LINK_STATE, pair.key, None, pair)


def linked(pair: PairState, fields: LinkFields) -> list[Outbound]:
    """The commands and tombstone of a pair just linked (its state record not included)."""
    cid = command_id("Link", pair.kind, pair.salesforce_id, pair.sage_id)
    if pair.kind == CUSTOMER:
        return [
            _salesforce_update(
                "Account", pair.salesforce_id, {fields.account: pair.sage_id}, cid, pair.sage_id
            ),
            _link_customer_in_sage(pair, cid),
            *_tombstone(pair),
        ]
    update = _salesforce_update(
        "Product2", pair.salesforce_id, {fields.product: pair.sage_id}, cid, pair.sage_id
    )
    return [update, *_tombstone(pair)]


def unlinked(pair: PairState, fields: LinkFields) -> tuple[list[Outbound], str | None]:
    """The commands of a pair just unlinked, and what an operator must still do (customers)."""
    cid = command_id("Unlink", pair.kind, pair.salesforce_id, pair.sage_id, pair.at)
    if pair.kind == CUSTOMER:
        update = _salesforce_update("Account", pair.salesforce_id, {fields.account: None}, cid, pair.sage_id)
        return [update], SAGE_UDF_NOTE.format(sage=pair.sage_id, account=pair.salesforce_id)
    return [
        _salesforce_update("Product2", pair.salesforce_id, {fields.product: None}, cid, pair.sage_id)
    ], None
