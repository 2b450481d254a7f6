"""Sage's credit answers on their way to Salesforce (processors/credit.py, no Kafka): which event
fields the requester gets, and that an answer past its deadline is never an approval. The whole
request/reply over the running sandbox is in tests/e2e/test_order_automation.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from processors.credit import CreditReplies
from processors.mapping_model import Mappings
from processors.state import MappingsRef, Origin
from tests.unit.test_processor_logic import base_mappings

__all__ = ["base_mappings"]  # the module fixture, shared

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ORIGIN = Origin("credit.replies.v1", 1, 5, b"k", b"v")


def reply(decision: str, deadline: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "envelope": {"event_time": NOW},
        "correlation_id": "corr-7",
        "customer": {"ar_division_no": "01", "customer_no": "ABF"},
        "decision": decision,
        "credit_limit": Decimal("10000.00"),
        "current_balance": Decimal("2500.00"),
        "open_order_total": Decimal("500.00"),
        "available_credit": Decimal("7000.00"),
        "currency_code": "USD",
        "deadline": deadline,
        "message": None,
        **extra,
    }


def published(mappings: Mappings, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    step = CreditReplies(MappingsRef(mappings), now=lambda: NOW).on_reply("corr-7", value, ORIGIN)
    [command] = step.outbound
    assert command.topic == "salesforce.commands.v1"
    assert command.value["operation"] == "INSERT"
    assert command.value["sobject"] == "Credit_Check_Reply__e"
    return command.key, command.value["fields"]


def test_an_approval_in_time_is_published_with_the_available_credit(base_mappings: Mappings) -> None:
    key, fields = published(base_mappings, reply("APPROVED", NOW + timedelta(seconds=20)))
    assert key == "Credit_Check_Reply__e/corr-7"
    assert fields == {
        "Correlation_Id__c": "corr-7",
        "Approved__c": True,
        "Available_Credit__c": 7000.0,
        "Message__c": "APPROVED",
    }


def test_a_refusal_says_why(base_mappings: Mappings) -> None:
    _, fields = published(
        base_mappings, reply("OVER_LIMIT", NOW + timedelta(seconds=20), message="order 9000.00 > 7000.00")
    )
    assert fields["Approved__c"] is False
    assert fields["Message__c"] == "order 9000.00 > 7000.00"


def test_an_approval_after_the_deadline_is_sent_as_expired_not_approved(base_mappings: Mappings) -> None:
    _, fields = published(base_mappings, reply("APPROVED", NOW - timedelta(seconds=1)))
    assert fields["Approved__c"] is False
    assert fields["Message__c"].startswith("expired: Sage's answer (APPROVED) came after the deadline")


def test_without_a_credit_reply_mapping_replies_stay_in_kafka(base_mappings: Mappings) -> None:
    customers = base_mappings.customers.model_copy(update={"credit_reply": None})
    mappings = Mappings(**{**base_mappings.__dict__, "customers": customers})
    step = CreditReplies(MappingsRef(mappings)).on_reply("corr-7", reply("APPROVED", NOW), ORIGIN)
    assert step.outbound == []
