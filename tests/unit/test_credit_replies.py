"""Sage's credit answers on their way to Salesforce (processors/credit.py, no Kafka): the figures go
to a Credit_Check__c record the requester owns, the broadcast Credit_Check_Reply__e names only the
correlation ID and that record, and an answer past its deadline is never an approval. The whole
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
REPLY_ORIGIN = Origin("credit.replies.v1", 1, 5, b"k", b"v")
RESULT_ORIGIN = Origin("salesforce.results.v1", 0, 9, b"k", b"v")
REP = "005000000000002AAA"  # the requester: the sales rep who fired the request
ACCOUNT = "001000000000007AAA"
RECORD = "a0C000000000001AAA"
FIGURE_FIELDS = (
    "Approved__c",
    "Credit_Limit__c",
    "Current_Balance__c",
    "Open_Order_Total__c",
    "Available_Credit__c",
)


def reply(decision: str, deadline: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "envelope": {"event_time": NOW},
        "correlation_id": "corr-7",
        "customer": {"salesforce_account_id": ACCOUNT, "ar_division_no": "01", "customer_no": "ABF"},
        "decision": decision,
        "credit_limit": Decimal("10000.00"),
        "current_balance": Decimal("2500.00"),
        "open_order_total": Decimal("500.00"),
        "available_credit": Decimal("7000.00"),
        "currency_code": "USD",
        "deadline": deadline,
        "message": None,
        "requester_id": REP,
        **extra,
    }


def result(outcome: str, sobject: str = "Credit_Check__c", **extra: Any) -> dict[str, Any]:
    return {
        "envelope": {"event_time": NOW, "correlation_id": "corr-7"},
        "command_id": "c-1",
        "correlation_id": "corr-7",
        "sobject": sobject,
        "operation": "UPSERT",
        "outcome": outcome,
        "record_id": RECORD if outcome != "REJECTED" else None,
        "external_id_field": "Correlation_Id__c",
        "external_id": "corr-7",
        "created": outcome == "CREATED",
        **extra,
    }


def replies(mappings: Mappings) -> CreditReplies:
    return CreditReplies(MappingsRef(mappings), now=lambda: NOW)


def stored(mappings: Mappings, value: dict[str, Any]) -> dict[str, Any]:
    """The one command Sage's answer becomes: the requester's Credit_Check__c record, upserted."""
    [command] = replies(mappings).on_reply("corr-7", value, REPLY_ORIGIN).outbound
    assert command.topic == "salesforce.commands.v1"
    return dict(command.value)


def announced(mappings: Mappings, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Credit_Check_Reply__e published once Salesforce answered the record's write."""
    [command] = (
        replies(mappings).on_salesforce_result("Credit_Check__c/corr-7", value, RESULT_ORIGIN).outbound
    )
    assert command.topic == "salesforce.commands.v1"
    assert (command.value["operation"], command.value["sobject"]) == ("INSERT", "Credit_Check_Reply__e")
    return command.key, command.value["fields"]


def test_the_figures_go_to_a_credit_check_record_owned_by_the_requester(base_mappings: Mappings) -> None:
    command = stored(base_mappings, reply("APPROVED", NOW + timedelta(seconds=20)))
    assert (command["operation"], command["sobject"]) == ("UPSERT", "Credit_Check__c")
    assert (command["external_id_field"], command["external_id"]) == ("Correlation_Id__c", "corr-7")
    assert command["fields"] == {
        "OwnerId": REP,
        "Account_Id__c": ACCOUNT,
        "Approved__c": True,
        "Decision__c": "APPROVED",
        "Credit_Limit__c": 10000.0,
        "Current_Balance__c": 2500.0,
        "Open_Order_Total__c": 500.0,
        "Available_Credit__c": 7000.0,
        "Message__c": "APPROVED",
    }


def test_the_reply_event_carries_only_the_correlation_id_and_the_record_id(base_mappings: Mappings) -> None:
    for outcome in ("CREATED", "UPDATED"):  # UPDATED: a redelivered answer, the same record
        key, fields = announced(base_mappings, result(outcome))
        assert key == "Credit_Check_Reply__e/corr-7"
        assert fields == {"Correlation_Id__c": "corr-7", "Credit_Check_Id__c": RECORD}


def test_a_record_salesforce_refused_is_still_answered_on_the_event_without_figures(
    base_mappings: Mappings,
) -> None:
    refused = result("REJECTED", error={"status_code": "INVALID_CROSS_REFERENCE_KEY", "message": "owner"})
    _, fields = announced(base_mappings, refused)
    assert fields["Correlation_Id__c"] == "corr-7"
    assert "Credit_Check_Id__c" not in fields
    assert "INVALID_CROSS_REFERENCE_KEY" in fields["Message__c"]
    assert not set(FIGURE_FIELDS) & set(fields)


def test_results_of_other_salesforce_writes_are_not_credit_replies(base_mappings: Mappings) -> None:
    step = replies(base_mappings).on_salesforce_result(
        "k", result("UPDATED", sobject="Account"), RESULT_ORIGIN
    )
    assert step.outbound == []


def test_an_answer_without_a_requester_is_announced_without_figures(base_mappings: Mappings) -> None:
    """A reply no one owns (a responder older than the requester field) must not broadcast figures."""
    step = replies(base_mappings).on_reply(
        "corr-7", reply("APPROVED", NOW + timedelta(seconds=20), requester_id=None), REPLY_ORIGIN
    )
    [command] = step.outbound
    assert command.value["sobject"] == "Credit_Check_Reply__e"
    assert set(command.value["fields"]) == {"Correlation_Id__c", "Message__c"}


def test_a_refusal_says_why(base_mappings: Mappings) -> None:
    fields = stored(
        base_mappings, reply("OVER_LIMIT", NOW + timedelta(seconds=20), message="order 9000.00 > 7000.00")
    )["fields"]
    assert (fields["Approved__c"], fields["Decision__c"]) == (False, "OVER_LIMIT")
    assert fields["Message__c"] == "order 9000.00 > 7000.00"


def test_an_approval_after_the_deadline_is_stored_as_expired_without_figures(base_mappings: Mappings) -> None:
    fields = stored(base_mappings, reply("APPROVED", NOW - timedelta(seconds=1)))["fields"]
    assert (fields["Approved__c"], fields["Decision__c"]) == (False, "EXPIRED")
    assert fields["Message__c"].startswith("expired: Sage's answer (APPROVED) came after the deadline")
    assert "Available_Credit__c" not in fields
    assert "Credit_Limit__c" not in fields


def test_without_a_credit_reply_mapping_replies_stay_in_kafka(base_mappings: Mappings) -> None:
    customers = base_mappings.customers.model_copy(update={"credit_reply": None})
    mappings = Mappings(**{**base_mappings.__dict__, "customers": customers})
    step = CreditReplies(MappingsRef(mappings)).on_reply("corr-7", reply("APPROVED", NOW), REPLY_ORIGIN)
    assert step.outbound == []
    step = CreditReplies(MappingsRef(mappings)).on_salesforce_result("k", result("CREATED"), RESULT_ORIGIN)
    assert step.outbound == []
