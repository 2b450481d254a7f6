"""Links are authority: an Account linked to a Sage customer keeps it, and a customer linked to an
Account keeps it. A claim that contradicts an existing link (an Account's ExternalID__c naming
another Account's customer; a Sage customer whose UDF_SALESFORCE_ID names an Account linked to
another customer; a Sage answer pairing them so) is refused with the reason on the Accounts
concerned and in a dead letter; nothing is renamed or ordered on the other customer, and the
cross-reference is not changed by the attempt."""

from __future__ import annotations

from typing import Any

from processors.customers import CustomerSync
from processors.mapping_model import Mappings
from processors.orders import OrderPipeline
from processors.state import MappingsRef, Origin, Step
from tests.unit.test_customer_sync import SAGE_ORIGIN, customer
from tests.unit.test_processor_logic import (
    ACCOUNT,
    OPP,
    OPP2,
    ORIGIN,
    base_mappings,
    order,
    order_result,
    pipeline,
)

__all__ = ["base_mappings"]  # the module fixture, shared

OWNER = "001" + "C" * 15  # the Account Sage customer 01-ACME belongs to
RESULTS = Origin("sage.results.v1", 0, 5, b"k", b"result")


def linked_pipeline(mappings: Mappings, orders: dict[bytes, dict[str, Any]] | None = None) -> OrderPipeline:
    """A pipeline that has seen Sage customer 01-ACME with UDF_SALESFORCE_ID = OWNER."""
    p = pipeline(mappings, orders)
    acme = customer("SAGE100", salesforce_account_id=OWNER, ar_division_no="01", customer_no="ACME")
    p.customer_directory.on_customer("01-ACME", acme, SAGE_ORIGIN)
    assert p.tables.customers[OWNER] == {"ar_division_no": "01", "customer_no": "ACME"}
    return p


def customer_handler(p: OrderPipeline, mappings: Mappings) -> Any:
    """What the customers agent runs for a customer.v1 record (processors/app.py)."""
    return p.customer_directory.guarded(CustomerSync(MappingsRef(mappings), p.customer_directory).on_customer)


def sage_kinds(step: Step) -> list[str]:
    return [o.value["command"][0].rsplit(".", 1)[1] for o in step.outbound if o.topic == "sage.commands.v1"]


def salesforce_fields(step: Step) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for o in step.outbound:
        if o.topic == "salesforce.commands.v1":
            out.setdefault(o.key, []).append(o.value["fields"])
    return out


def assert_refused_on(step: Step, *records: str, naming: str) -> None:
    fields = salesforce_fields(step)
    assert sorted(fields) == sorted(records)
    for record in records:
        [written] = fields[record]
        assert written["Sage_Sync_Status__c"] == "Error"
        assert naming in written["Sage_Sync_Message__c"]


def test_an_order_of_an_account_naming_another_accounts_customer_is_refused(base_mappings: Mappings) -> None:
    p = linked_pipeline(base_mappings)
    hijack = order(("HRDW-1000", "1", "12.50"), external="01-ACME")  # ACCOUNT's ExternalID__c: 01-ACME

    step = p.on_sales_order(OPP, hijack, ORIGIN)

    assert step.outcome == "failed"
    assert sage_kinds(step) == []  # nothing ordered on the other customer's account
    [(origin, error)] = step.dead_letters
    assert origin == ORIGIN
    assert "01-ACME" in str(error)
    assert OWNER in str(error)
    assert_refused_on(step, OPP, ACCOUNT, OWNER, naming="01-ACME")
    assert ACCOUNT not in p.tables.customers  # the cross-reference is not changed by the attempt
    assert p.tables.customers[OWNER] == {"ar_division_no": "01", "customer_no": "ACME"}


def test_an_account_naming_another_accounts_customer_renames_nothing(base_mappings: Mappings) -> None:
    p = linked_pipeline(base_mappings)
    claim = customer(
        "SALESFORCE",
        salesforce_account_id=ACCOUNT,
        ar_division_no="01",
        customer_no="ACME",
        name="Hijack Ltd",
    )

    step = customer_handler(p, base_mappings)("01-ACME", claim, ORIGIN)

    assert sage_kinds(step) == []  # no UpsertCustomer: 01-ACME is not renamed to Hijack Ltd
    [(origin, error)] = step.dead_letters
    assert origin == ORIGIN
    assert OWNER in str(error)
    assert_refused_on(step, ACCOUNT, OWNER, naming="01-ACME")
    assert ACCOUNT not in p.tables.customers


def test_a_sage_customer_naming_an_account_linked_elsewhere_renames_nothing(base_mappings: Mappings) -> None:
    raw = {b"value": order(("HRDW-1000", "1", "12.50"), external=None)}
    p = linked_pipeline(base_mappings, raw)
    # a second Sage customer whose UDF_SALESFORCE_ID names OWNER, already linked to 01-ACME
    evil = customer(
        "SAGE100", salesforce_account_id=OWNER, ar_division_no="01", customer_no="EVIL", name="Evil"
    )

    step = customer_handler(p, base_mappings)("01-EVIL", evil, SAGE_ORIGIN)

    [(origin, error)] = step.dead_letters
    assert origin == SAGE_ORIGIN
    assert "01-EVIL" in str(error)
    assert "01-ACME" in str(error)
    # OWNER is told, and not renamed: no Name, no ExternalID__c 01-EVIL
    assert_refused_on(step, OWNER, naming="01-EVIL")
    assert p.tables.customers[OWNER] == {"ar_division_no": "01", "customer_no": "ACME"}
    # OWNER's orders still go to its own customer
    mine = order(("HRDW-1000", "1", "12.50"), external=None)
    mine["customer"]["salesforce_account_id"] = OWNER
    commanded = p.on_sales_order(OPP, mine, ORIGIN)
    [create] = [o for o in commanded.outbound if o.topic == "sage.commands.v1"]
    assert create.value["command"][1]["order"]["customer"]["customer_no"] == "ACME"


def test_a_sage_answer_pairing_an_account_with_another_accounts_customer_is_refused(
    base_mappings: Mappings,
) -> None:
    """The Sage sink answers the order that brings ACCOUNT's new customer with 01-ACME (say its UDF
    was edited to name ACCOUNT): the order held behind it is not released onto OWNER's customer."""
    raw = {
        b"first": order(("HRDW-1000", "1", "12.50"), external=None),
        b"second": order(("HRDW-1000", "2", "12.50"), external=None, opp=OPP2),
    }
    p = linked_pipeline(base_mappings, raw)
    first = Origin("salesorder.v1", 0, 6, b"key", b"first")
    assert p.on_sales_order(OPP, raw[b"first"], first).outcome == "commanded"
    assert p.on_sales_order(OPP2, raw[b"second"], ORIGIN).outcome == "held"
    acme = {"salesforce_account_id": ACCOUNT, "ar_division_no": "01", "customer_no": "ACME", "name": None}
    answer = order_result("CREATED", "c1", sales_order_no="0000042", customer=acme)

    step = p.on_sage_result(OPP, answer, RESULTS)

    assert sage_kinds(step) == []  # the held order is not ordered on 01-ACME
    assert [origin for origin, _ in step.dead_letters] == [RESULTS, ORIGIN]
    fields = salesforce_fields(step)
    assert all("ExternalID__c" not in f for written in fields.values() for f in written)
    errors = {record for record, written in fields.items() if written[-1]["Sage_Sync_Status__c"] == "Error"}
    assert errors == {ACCOUNT, OWNER, OPP2}
    assert fields[OPP][0]["Sage_Order_No__c"] == "0000042"  # Sage has that order all the same
    assert ACCOUNT not in p.tables.customers
    assert p.customer_directory.held_count() == 0


def test_links_that_agree_pass(base_mappings: Mappings) -> None:
    p = linked_pipeline(base_mappings)
    mine = order(("HRDW-1000", "1", "12.50"), external="01-ACME")
    mine["customer"]["salesforce_account_id"] = OWNER
    assert p.on_sales_order(OPP, mine, ORIGIN).outcome == "commanded"
    same = customer("SALESFORCE", salesforce_account_id=OWNER, ar_division_no="01", customer_no="ACME")
    step = customer_handler(p, base_mappings)("01-ACME", same, ORIGIN)
    assert step.dead_letters == []
    assert sage_kinds(step) == ["UpsertCustomer"]
