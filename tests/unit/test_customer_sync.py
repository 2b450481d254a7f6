"""The customer sync's decisions without Kafka (processors/customers.py over in-memory tables):
which Account changes reach Sage and how, which Sage changes reach which Account, what a bad
value does, and that an unchanged, already linked customer writes nothing back. The running
sync, both ways, is in tests/e2e/test_order_automation.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from processors.customers import CustomerSync
from processors.mapping_model import Mappings
from processors.orders import OrderPipeline
from processors.state import MappingsRef, Origin, Step
from sagesf.source import WRITTEN_BY_HEADER, WRITTEN_BY_INTEGRATION
from tests.unit.test_processor_logic import (
    ACCOUNT,
    OPP,
    OPP2,
    ORIGIN,
    base_mappings,
    customer_created,
    order,
    pipeline,
)

__all__ = ["base_mappings"]  # the module fixture, shared

SAGE_ORIGIN = Origin("customer.v1", 2, 40, b"k", b"sage")
WRITTEN_BY = ((WRITTEN_BY_HEADER, WRITTEN_BY_INTEGRATION),)


def customer(source: str, **values: Any) -> dict[str, Any]:
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "source_system": source,
            "source_record_id": "x",
            "correlation_id": None,
        },
        "salesforce_account_id": None,
        "ar_division_no": None,
        "customer_no": None,
        "name": "Acme",
        "status": "ACTIVE",
        "deleted": False,
        **values,
    }


def sync(mappings: Mappings, orders: dict[bytes, dict[str, Any]] | None = None) -> CustomerSync:
    p: OrderPipeline = pipeline(mappings, orders)
    return CustomerSync(MappingsRef(mappings), p.customer_directory)


def sage_commands(step: Step) -> list[dict[str, Any]]:
    return [o.value["command"][1]["customer"] for o in step.outbound if o.topic == "sage.commands.v1"]


def salesforce_commands(step: Step) -> list[tuple[str, dict[str, Any]]]:
    return [(o.key, o.value) for o in step.outbound if o.topic == "salesforce.commands.v1"]


def test_an_account_change_updates_its_linked_sage_customer(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    edited = customer(
        "SALESFORCE",
        salesforce_account_id=ACCOUNT,
        ar_division_no="01",
        customer_no="ABF",
        name="American Business Futures",
        terms_code="30",
        telephone_no="(414) 555-4787",
    )
    step = s.on_customer("01-ABF", edited, ORIGIN)
    [data] = sage_commands(step)
    assert (data["ar_division_no"], data["customer_no"]) == ("01", "ABF")  # an update, not a create
    assert data["salesforce_account_id"] == ACCOUNT
    assert data["terms_code"] == "01"  # customers.yaml terms_code_to_sage: 30 -> 01
    assert data["telephone_no"] == "(414) 555-4787"
    # the Account's change time travels along: the Sage sink never lets it overwrite a newer edit
    [command] = [o.value for o in step.outbound if o.topic == "sage.commands.v1"]
    assert command["source_event_time"] == edited["envelope"]["event_time"]
    again = s.on_customer("01-ABF", edited, ORIGIN)  # redelivered: the same command
    assert [o.value["command_id"] for o in again.outbound] == [o.value["command_id"] for o in step.outbound]


def test_an_account_sage_does_not_know_is_not_created_by_the_sync(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    step = s.on_customer(ACCOUNT, customer("SALESFORCE", salesforce_account_id=ACCOUNT), ORIGIN)
    assert step.outbound == []
    assert s.customer_directory.tables.accounts[ACCOUNT]  # remembered for its first order
    # once linked (the cross-reference learned it from a Sage result), changes flow
    s.customer_directory.tables.customers[ACCOUNT] = {"ar_division_no": "01", "customer_no": "NEW01"}
    [data] = sage_commands(
        s.on_customer(ACCOUNT, customer("SALESFORCE", salesforce_account_id=ACCOUNT), ORIGIN)
    )
    assert (data["ar_division_no"], data["customer_no"]) == ("01", "NEW01")


def test_a_sage_customer_change_updates_its_account_without_blanking_fields(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    changed = customer(
        "SAGE100",
        salesforce_account_id=ACCOUNT,
        ar_division_no="01",
        customer_no="ABF",
        name="American Business Futures",
        credit_limit=Decimal("25000.00"),
        terms_code="05",
        customer_type="ZZZ",  # not in customer_type_to_salesforce (unknown: null): left out
        telephone_no="",  # empty in Sage: left out
    )
    [(key, command)] = salesforce_commands(s.on_customer("01-ABF", changed, SAGE_ORIGIN))
    assert key == ACCOUNT
    assert (command["operation"], command["record_id"]) == ("UPDATE", ACCOUNT)
    assert command["fields"] == {
        "Name": "American Business Futures",
        "Credit_Limit__c": 25000.0,
        "Payment_Terms__c": "Net 60",
        "ExternalID__c": "01-ABF",
    }


def test_an_account_on_net_15_goes_to_sage_and_comes_back_on_net_15(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    # the Salesforce source sends Payment_Terms__c "Net 15" as the canonical "15"
    # (salesforce_source.yaml payment_terms)
    account = customer(
        "SALESFORCE", salesforce_account_id=ACCOUNT, ar_division_no="01", customer_no="ABF", terms_code="15"
    )
    [data] = sage_commands(s.on_customer("01-ABF", account, ORIGIN))
    changed_in_sage = customer(
        "SAGE100",
        salesforce_account_id=ACCOUNT,
        ar_division_no="01",
        customer_no="ABF",
        name="Acme Corporation",  # a user's edit in Sage; the terms are what the sync wrote
        terms_code=data["terms_code"],
    )
    [(_, command)] = salesforce_commands(s.on_customer("01-ABF", changed_in_sage, SAGE_ORIGIN))
    assert command["fields"]["Payment_Terms__c"] == "Net 15"


def test_a_sage_customer_without_an_account_gets_one_by_external_id(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    new = customer("SAGE100", ar_division_no="02", customer_no="ORANGE", name="Orange Door")
    [(key, command)] = salesforce_commands(s.on_customer("02-ORANGE", new, SAGE_ORIGIN))
    assert key == "Account/02-ORANGE"
    assert command["operation"] == "UPSERT"
    assert (command["external_id_field"], command["external_id"]) == ("ExternalID__c", "02-ORANGE")
    assert command["fields"] == {"Name": "Orange Door"}

    inactive = {**new, "status": "INACTIVE"}
    assert s.on_customer("02-ORANGE", inactive, SAGE_ORIGIN).outbound == []  # not pushed into the CRM

    spec = base_mappings.customers.sage_to_salesforce.model_copy(update={"create_accounts": False})
    customers = base_mappings.customers.model_copy(update={"sage_to_salesforce": spec})
    quiet = sync(Mappings(**{**base_mappings.__dict__, "customers": customers}))
    assert quiet.on_customer("02-ORANGE", new, SAGE_ORIGIN).outbound == []


def test_a_bad_value_dead_letters_the_sync_but_still_releases_held_orders(base_mappings: Mappings) -> None:
    strict = base_mappings.customers.picklists["terms_code_to_sage"].model_copy(update={"unknown": "error"})
    customers = base_mappings.customers.model_copy(
        update={"picklists": {**base_mappings.customers.picklists, "terms_code_to_sage": strict}}
    )
    mappings = Mappings(**{**base_mappings.__dict__, "customers": customers})
    raw = {b"value": order(("HRDW-1000", "1", "12.50"), external=None, opp=OPP2)}
    p = pipeline(mappings, raw)
    s = CustomerSync(MappingsRef(mappings), p.customer_directory)
    first = order(("HRDW-1000", "1", "12.50"), external=None)
    assert p.on_sales_order(OPP, first, Origin("salesorder.v1", 0, 6, None, b"first")).outcome == "commanded"
    assert p.on_sales_order(OPP2, raw[b"value"], ORIGIN).outcome == "held"  # behind the first
    linked = customer(
        "SALESFORCE", salesforce_account_id=ACCOUNT, ar_division_no="01", customer_no="NEW01", terms_code="99"
    )
    step = s.on_customer("01-NEW01", linked, Origin("customer.v1", 0, 9, None, b"c"))
    [(_, error)] = step.dead_letters
    assert "'99'" in str(error)
    assert "terms_code_to_sage" in str(error)
    kinds = [o.value["command"][0].rsplit(".", 1)[1] for o in step.outbound if o.topic == "sage.commands.v1"]
    assert kinds == ["CreateSalesOrder"]  # the held order went out all the same
    [(key, account_error)] = salesforce_commands(step)[-1:]
    assert key == ACCOUNT
    assert account_error["fields"]["Sage_Sync_Status__c"] == "Error"


def test_an_unchanged_linked_customer_writes_nothing_back(base_mappings: Mappings) -> None:
    p = pipeline(base_mappings)
    result = {
        "kind": "UPSERT_CUSTOMER",
        "outcome": "UPDATED",
        "salesforce_record_id": ACCOUNT,
        "command_id": "c1",
        "customer": {"salesforce_account_id": ACCOUNT, "ar_division_no": "01", "customer_no": "ABF"},
        "envelope": {},
    }
    results = Origin("sage.results.v1", 0, 1, None, b"r")
    [(key, written)] = salesforce_commands(p.on_sage_result(ACCOUNT, result, results))
    assert (key, written["fields"]["ExternalID__c"]) == (ACCOUNT, "01-ABF")
    unchanged = {**result, "outcome": "EXISTING", "command_id": "c2"}
    assert p.on_sage_result(ACCOUNT, unchanged, results).outbound == []


def test_an_account_that_arrives_after_its_order_is_sent_to_sage_with_its_own_data(
    base_mappings: Mappings,
) -> None:
    """The order got there first and brought the customer with the order's data (no terms); the
    account's record, arriving before Sage's answer, goes to the customer once Sage made it."""
    raw = {b"value": order(("HRDW-1000", "1", "12.50"), external=None)}
    account_record = customer(
        "SALESFORCE", salesforce_account_id=ACCOUNT, name="Acme", terms_code="30", telephone_no="555-0100"
    )
    p = OrderPipeline(
        MappingsRef(base_mappings),
        pipeline(base_mappings).tables,
        decode_order=lambda data: raw[data],
        decode_customer=lambda data: account_record,
    )
    s = CustomerSync(MappingsRef(base_mappings), p.customer_directory)
    commanded = p.on_sales_order(OPP, raw[b"value"], ORIGIN)
    [first] = sage_commands(commanded)  # the customer the order brings
    assert first["terms_code"] is None
    step = s.on_customer(ACCOUNT, account_record, Origin("customer.v1", 0, 3, None, b"account"))
    assert sage_commands(step) == []  # not a Sage customer yet
    answered = p.on_sage_result(OPP, customer_created(), ORIGIN)
    [again] = sage_commands(answered)
    assert (again["ar_division_no"], again["customer_no"]) == ("01", "NEW01")  # the customer Sage made
    [update] = [o.value for o in answered.outbound if o.topic == "sage.commands.v1"]
    assert update["source_event_time"] == account_record["envelope"]["event_time"]  # the Account's
    assert [o.value["source_event_time"] for o in commanded.outbound if o.topic == "sage.commands.v1"] == [
        raw[b"value"]["envelope"]["event_time"]  # the order's
    ]
    assert (again["terms_code"], again["telephone_no"]) == ("01", "555-0100")


def test_fields_the_map_does_not_send_to_sage_stay_sages(base_mappings: Mappings) -> None:
    """customers.yaml sends no credit_limit to Sage (credit control sets it there): an Account's
    Credit_Limit__c, a copy of Sage's, must not overwrite it."""
    s = sync(base_mappings)
    edited = customer(
        "SALESFORCE",
        salesforce_account_id=ACCOUNT,
        ar_division_no="01",
        customer_no="ABF",
        credit_limit=Decimal("999999.00"),
        current_balance=Decimal("1.00"),
        telephone_no="555-0101",
    )
    [data] = sage_commands(s.on_customer("01-ABF", edited, ORIGIN))
    assert data.get("credit_limit") is None
    assert data.get("current_balance") is None
    assert data["telephone_no"] == "555-0101"


def marked(origin: Origin) -> Origin:
    """The same record as the Sage source publishes a version the integration user wrote last."""
    return Origin(origin.topic, origin.partition, origin.offset, origin.key, origin.value, WRITTEN_BY)


def test_echoes_of_our_writes_send_nothing_and_a_users_edit_alone_is_sent(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    linked = {"salesforce_account_id": ACCOUNT, "ar_division_no": "01", "customer_no": "ABF"}
    sage = customer("SAGE100", **linked, credit_limit=Decimal("1000.00"), telephone_no="555-0100")
    s.on_customer("01-ABF", sage, SAGE_ORIGIN)  # what Sage holds, as the Account has it
    for phone in ("555-0101", "555-0102"):  # two Account edits, each an UpsertCustomer to Sage
        s.on_customer("01-ABF", customer("SALESFORCE", **linked, telephone_no=phone), ORIGIN)
    # Sage after the first write only (polled between the two): an echo, not a user's edit
    first = {**sage, "telephone_no": "555-0101"}
    assert salesforce_commands(s.on_customer("01-ABF", first, marked(SAGE_ORIGIN))) == []
    # a credit controller raised the limit just before the second write landed
    raced = {**sage, "telephone_no": "555-0102", "credit_limit": Decimal("5000.00")}
    [(_, command)] = salesforce_commands(s.on_customer("01-ABF", raced, marked(SAGE_ORIGIN)))
    assert command["fields"] == {"Credit_Limit__c": 5000.0, "ExternalID__c": "01-ABF"}


def test_a_marked_version_of_a_customer_never_seen_is_its_baseline(base_mappings: Mappings) -> None:
    """A customer the directory created for an order: its first version is our write."""
    s = sync(base_mappings)
    linked = {"salesforce_account_id": ACCOUNT, "ar_division_no": "01", "customer_no": "NEW01"}
    created = customer("SAGE100", **linked, credit_limit=Decimal(0))
    assert salesforce_commands(s.on_customer("01-NEW01", created, marked(SAGE_ORIGIN))) == []
    later = {**created, "credit_limit": Decimal("2500.00"), "name": "Acme"}
    [(_, command)] = salesforce_commands(s.on_customer("01-NEW01", later, marked(SAGE_ORIGIN)))
    assert command["fields"] == {"Credit_Limit__c": 2500.0, "ExternalID__c": "01-NEW01"}
