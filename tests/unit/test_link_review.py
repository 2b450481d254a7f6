"""The processors and record linking (processors/link_review.py over in-memory tables): nothing is
created on the other side for a record waiting for review, and a link decided by the linker is
the cross-reference at once."""

from __future__ import annotations

import json
from typing import Any

from processors.customer_directory import CustomerDirectory
from processors.link_review import LinkReview
from processors.mapping_model import Mappings
from processors.state import Origin
from sagesf.link_state import CUSTOMER, ITEM, LINKED, REJECTED, SUGGESTED, UNLINKED, PairState
from tests.unit.test_customer_sync import customer, salesforce_commands, sync
from tests.unit.test_processor_logic import ACCOUNT, ORIGIN, base_mappings, order, pipeline

__all__ = ["base_mappings"]  # the module fixture, shared

LINK_ORIGIN = Origin("link.state.v1", 0, 3, b"k", b"{}")
SAGE_CUSTOMER = customer("SAGE100", ar_division_no="01", customer_no="ACME0001", name="ACME CORP.")


def pair(
    state: str, account: str = ACCOUNT, sage: str = "01-ACME0001", kind: str = CUSTOMER
) -> dict[str, Any]:
    return json_of(PairState(kind=kind, salesforce_id=account, sage_id=sage, state=state, how="automatic"))


def decide(directory: CustomerDirectory, *pairs: dict[str, Any]) -> None:
    """The processors read these pair states from link.state.v1, in order."""
    review = LinkReview(directory.tables, directory)
    for state in pairs:
        review.on_link_state(None, state, LINK_ORIGIN)


def json_of(p: PairState) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(p.to_json())
    return found


def test_a_sage_customer_waiting_for_review_gets_no_account(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    decide(s.customer_directory, pair(SUGGESTED))
    assert salesforce_commands(s.on_customer("01-ACME0001", SAGE_CUSTOMER, ORIGIN)) == []
    decide(s.customer_directory, pair(REJECTED))  # decided: two companies
    [(key, command)] = salesforce_commands(s.on_customer("01-ACME0001", SAGE_CUSTOMER, ORIGIN))
    assert (key, command["operation"]) == ("Account/01-ACME0001", "UPSERT")


def test_a_sage_customer_linked_by_the_linker_updates_its_account_before_sage_has_the_udf(
    base_mappings: Mappings,
) -> None:
    s = sync(base_mappings)
    decide(s.customer_directory, pair(LINKED))
    [(key, command)] = salesforce_commands(s.on_customer("01-ACME0001", SAGE_CUSTOMER, ORIGIN))
    assert (key, command["operation"], command["record_id"]) == (ACCOUNT, "UPDATE", ACCOUNT)
    decide(s.customer_directory, pair(UNLINKED))
    assert s.customer_directory.linked_customer(ACCOUNT) is None


def test_an_unlinked_pair_is_not_linked_again_by_the_udf_sage_still_holds(base_mappings: Mappings) -> None:
    s = sync(base_mappings)
    decide(s.customer_directory, pair(LINKED), pair(UNLINKED))
    on_customer = s.customer_directory.guarded(s.on_customer)
    still_named = {**SAGE_CUSTOMER, "salesforce_account_id": ACCOUNT}  # UDF_SALESFORCE_ID not cleared
    step = on_customer("01-ACME0001", still_named, ORIGIN)
    [(_, error)] = step.dead_letters
    assert "an operator unlinked them" in str(error)
    assert s.customer_directory.linked_customer(ACCOUNT) is None
    assert [c["fields"]["Sage_Sync_Status__c"] for _, c in salesforce_commands(step)] == ["Error"]
    decide(s.customer_directory, pair(LINKED))  # linked again: the record is welcome
    assert not on_customer("01-ACME0001", still_named, ORIGIN).dead_letters


def test_an_order_of_an_account_waiting_for_review_fails_saying_so_and_creates_no_customer(
    base_mappings: Mappings,
) -> None:
    p = pipeline(base_mappings)
    decide(p.customer_directory, pair(SUGGESTED))
    step = p.on_sales_order("006X", order(("HRDW-1000", "1", "12.50"), external=None), ORIGIN)
    assert [o for o in step.outbound if o.topic == "sage.commands.v1"] == []
    [(_, error)] = step.dead_letters
    assert "waits for link review" in str(error)
    decide(p.customer_directory, pair(REJECTED))  # replayed after the decision: made once
    again = p.on_sales_order("006X", order(("HRDW-1000", "1", "12.50"), external=None), ORIGIN)
    [command] = [o for o in again.outbound if o.topic == "sage.commands.v1"]
    assert command.value["command"][1]["customer"] is not None  # it brings its new customer


def test_a_linked_item_gets_its_product_so_stock_reaches_it(base_mappings: Mappings) -> None:
    p = pipeline(base_mappings)
    decide(p.customer_directory, pair(LINKED, "01t000000000PPPAAA", "HRDW-1000", ITEM))
    assert p.tables.items["HRDW-1000"]["salesforce_product_id"] == "01t000000000PPPAAA"
    assert p.tables.items["HRDW-1000"]["standard_unit_price"] == "12.50"  # the rest kept
