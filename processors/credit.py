"""The credit check's way back: Sage's answers (credit.replies.v1) published to Salesforce.

What it owns: `CreditReplies.on_reply`, the handler of the credit agent. Salesforce asks with a
Credit_Check_Request__e (the Salesforce source puts it on credit.requests.v1); the Sage sink's
responder answers on credit.replies.v1 (connectors/sage100/credit.py); this turns each answer
into a platform event for the requester (customers.yaml `credit_reply`: the event and which reply
value goes to which of its fields), sent as an INSERT command on salesforce.commands.v1, which the
Salesforce sink publishes through sObject Collections.

The deadline is the requester's: an answer that reaches the processors after it is sent anyway,
so the requester is not left waiting, but as not approved with decision EXPIRED and a message
saying so, never as a late approval. `approved` is true only for APPROVED.

Limits: a redelivered reply (crash before the offset commit) publishes the event again with the
same correlation ID; requesters keep the first reply per correlation ID, as the Sage side
documents. Amounts go to Salesforce as numbers (double).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from processors import commands
from processors.commands import command_id
from processors.mapping_model import Mappings
from processors.state import MappingsRef, Origin, Step
from sagesf.errors import Permanent

__all__ = ["CreditReplies"]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, Decimal | int | float) else None


class CreditReplies:
    """See the module doc."""

    def __init__(self, mappings: MappingsRef, now: Callable[[], datetime] | None = None) -> None:
        self.mappings_ref = mappings
        self.now = now or (lambda: datetime.now(UTC))

    @property
    def mappings(self) -> Mappings:
        return self.mappings_ref.current

    def on_reply(self, key: str | None, reply: Mapping[str, Any], origin: Origin) -> Step:
        spec = self.mappings.customers.credit_reply
        if spec is None:
            return Step("skipped")
        correlation = reply.get("correlation_id") or key
        if not correlation:
            raise Permanent("the reply has no correlation_id to answer with", field="correlation_id")
        decision = str(reply.get("decision") or "ERROR")
        message = reply.get("message")
        deadline = reply.get("deadline")
        if isinstance(deadline, datetime) and self.now() > deadline:
            message = f"expired: Sage's answer ({decision}) came after the deadline {deadline:%H:%M:%S} UTC"
            decision = "EXPIRED"
        values: dict[str, Any] = {
            "correlation_id": str(correlation),
            "approved": decision == "APPROVED",
            "decision": decision,
            "credit_limit": _number(reply.get("credit_limit")),
            "current_balance": _number(reply.get("current_balance")),
            "open_order_total": _number(reply.get("open_order_total")),
            "available_credit": _number(reply.get("available_credit")),
            "message": message or decision,
        }
        fields = {name: values[value] for value, name in spec.fields.items() if values[value] is not None}
        text_field = spec.fields.get("message")
        if text_field and isinstance(fields.get(text_field), str):
            fields[text_field] = self.mappings.salesforce_text(fields[text_field], spec.event, text_field)
        cid = command_id("CreditReply", str(correlation), *origin.position())
        event = commands.salesforce_insert(
            spec.event,
            fields,
            cid=cid,
            key=str(correlation),
            correlation_id=str(correlation),
            event_time=(reply.get("envelope") or {}).get("event_time"),
        )
        return Step("replied" if decision != "EXPIRED" else "expired", [event])
