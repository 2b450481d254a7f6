"""The credit check's way back: Sage's answers (credit.replies.v1) delivered to the requester only.

What it owns: `CreditReplies`, the handlers of the two credit agents. Salesforce asks with a
Credit_Check_Request__e (the Salesforce source puts it on credit.requests.v1, with the requester);
the Sage sink's responder answers on credit.replies.v1 (connectors/sage100/credit.py). A platform
event reaches every subscriber whatever the sharing, so the answer goes back in two steps
(customers.yaml `credit_reply`):
1. `on_reply`: the figures go to a Credit_Check__c record, upserted by its correlation ID with
   OwnerId = the requester (an UPSERT command on salesforce.commands.v1). With the object's
   sharing private, only the requester (and users above it in the role hierarchy or with View
   All) can read it.
2. `on_salesforce_result`: once the Salesforce sink answered that write (salesforce.results.v1),
   a Credit_Check_Reply__e carries the correlation ID and the record's ID, nothing else. If
   Salesforce refused the record, the event says so in a message of our own (its status code, no
   figures), so the requester still gets a definite answer.

The deadline is the requester's: an answer that reaches the processors after it is delivered
anyway, as not approved with decision EXPIRED, a message saying so and no figures, never as a late
approval. `approved` is true only for APPROVED. A reply with no requester (from a responder older
than the field) is announced on the event with a message and no figures: nobody could read its
record.

Limits: a redelivered reply writes the same record again (the upsert is idempotent) and publishes
the event again with the same correlation ID and record ID; requesters keep the first. Amounts go
to Salesforce as numbers (double). Every Salesforce result passes through `on_salesforce_result`
and all but the credit record's are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from processors import commands
from processors.commands import Outbound, command_id
from processors.mapping_model import CreditReply, Mappings
from processors.state import MappingsRef, Origin, Step
from sagesf.errors import Permanent

__all__ = ["CreditReplies"]

NO_REQUESTER = "Sage answered, but the request named no requester to deliver the figures to; ask again"
_WRITTEN = frozenset({"CREATED", "UPDATED"})


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
        """Sage's answer -> the requester's Credit_Check__c record (step 1 of the module doc)."""
        spec = self.mappings.customers.credit_reply
        if spec is None:
            return Step("skipped")
        correlation = str(reply.get("correlation_id") or key or "")
        if not correlation:
            raise Permanent("the reply has no correlation_id to answer with", field="correlation_id")
        event_time = (reply.get("envelope") or {}).get("event_time")
        requester = reply.get("requester_id")
        if not requester:
            event = self._event(spec, correlation, origin, event_time, message=NO_REQUESTER)
            return Step("unowned", [event])
        values = self._values(reply)
        fields: dict[str, Any] = {
            name: values[value] for value, name in spec.fields.items() if values[value] is not None
        }
        text_field = spec.fields.get("message")
        if text_field and isinstance(fields.get(text_field), str):
            fields[text_field] = self.mappings.salesforce_text(fields[text_field], spec.record, text_field)
        fields["OwnerId"] = str(requester)
        record = commands.salesforce_upsert(
            spec.record,
            spec.external_id,
            correlation,
            fields,
            cid=command_id("CreditCheck", correlation, *origin.position()),
            correlation_id=correlation,
            source_record_id=correlation,
            event_time=event_time,
        )
        return Step("replied" if values["decision"] != "EXPIRED" else "expired", [record])

    def on_salesforce_result(self, key: str | None, result: Mapping[str, Any], origin: Origin) -> Step:
        """The credit record written (or refused) -> the reply event (step 2 of the module doc)."""
        spec = self.mappings.customers.credit_reply
        if spec is None or str(result.get("sobject") or "").lower() != spec.record.lower():
            return Step("skipped")
        correlation = result.get("external_id") or result.get("correlation_id")
        if not correlation:
            raise Permanent("the credit record's result names no correlation ID", field="external_id")
        event_time = (result.get("envelope") or {}).get("event_time")
        outcome, record_id = result.get("outcome"), result.get("record_id")
        if outcome in _WRITTEN and record_id:
            return Step(
                "announced", [self._event(spec, str(correlation), origin, event_time, record_id=record_id)]
            )
        if outcome == "REJECTED":
            code = (result.get("error") or {}).get("status_code") or "refused by the Salesforce sink"
            message = f"Sage answered, but Salesforce did not store the answer for you ({code}); ask again"
            return Step(
                "undelivered", [self._event(spec, str(correlation), origin, event_time, message=message)]
            )
        return Step("skipped")

    def _values(self, reply: Mapping[str, Any]) -> dict[str, Any]:
        """The reply values a record field can take; no figures for an expired answer."""
        decision = str(reply.get("decision") or "ERROR")
        message = reply.get("message")
        deadline = reply.get("deadline")
        expired = isinstance(deadline, datetime) and self.now() > deadline
        if expired:
            message = f"expired: Sage's answer ({decision}) came after the deadline {deadline:%H:%M:%S} UTC"
            decision = "EXPIRED"

        def figure(name: str) -> float | None:
            return None if expired else _number(reply.get(name))

        return {
            "account_id": (reply.get("customer") or {}).get("salesforce_account_id"),
            "approved": decision == "APPROVED",
            "decision": decision,
            "credit_limit": figure("credit_limit"),
            "current_balance": figure("current_balance"),
            "open_order_total": figure("open_order_total"),
            "available_credit": figure("available_credit"),
            "message": message or decision,
        }

    def _event(
        self,
        spec: CreditReply,
        correlation: str,
        origin: Origin,
        event_time: datetime | None,
        *,
        record_id: str | None = None,
        message: str | None = None,
    ) -> Outbound:
        """The Credit_Check_Reply__e: the correlation ID and the record ID, or our own message."""
        text_field = spec.event_fields.get("message")
        if message is not None and text_field:
            message = self.mappings.salesforce_text(message, spec.event, text_field)
        values = {"correlation_id": correlation, "record_id": record_id, "message": message}
        fields = {
            name: values[value] for value, name in spec.event_fields.items() if values[value] is not None
        }
        return commands.salesforce_insert(
            spec.event,
            fields,
            cid=command_id("CreditReply", correlation, *origin.position()),
            key=correlation,
            correlation_id=correlation,
            event_time=event_time,
        )
