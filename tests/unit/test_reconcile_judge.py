"""Reconciliation's rules without the systems: how entities pair, and what the mappings' judge
calls drift and which way it repairs it (the repository's own mappings/)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from processors.mapping_files import load_mappings
from processors.reconcile import MappingJudge, ReloadingJudge
from sagesf import topic_names
from sagesf.reconcile import SAGE, SALESFORCE, DriftKind, Entity, Snapshot, pairs

EARLIER = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LATER = EARLIER + timedelta(hours=1)


@pytest.fixture(scope="module")
def judge() -> MappingJudge:
    return MappingJudge(load_mappings("mappings"))


def account(changed: datetime = EARLIER, **fields: Any) -> Entity:
    own: dict[str, Any] = {"Name": "Acme Hardware", "Phone": "(619) 555-4454", "Credit_Limit__c": 5000.0}
    own |= {"Payment_Terms__c": "Net 30", "Type": "Customer - Direct", **fields}
    record = {
        "salesforce_account_id": "001000000000001AAA",
        "ar_division_no": "01",
        "customer_no": "ACME001",
        "name": own["Name"],
        "telephone_no": own["Phone"],
        "customer_type": {"Customer - Direct": "DIR", "Customer - Channel": "CHAN"}[own["Type"]],
        "terms_code": {"Net 30": "30", "Net 60": "60"}[own["Payment_Terms__c"]],
        "status": "ACTIVE",
        "salesforce": own,
    }
    links = ("sage:01-ACME001", "salesforce:001000000000001AAA")
    return Entity("customer", "001000000000001AAA", record, links, changed)


def customer(changed: datetime = EARLIER, **columns: Any) -> Entity:
    record = {
        "salesforce_account_id": "001000000000001AAA",
        "ar_division_no": "01",
        "customer_no": "ACME001",
        "name": "Acme Hardware",
        "telephone_no": "(619) 555-4454",
        "credit_limit": Decimal("5000.00"),
        "terms_code": "01",
        "customer_type": "RETL",
        "status": "ACTIVE",
        **columns,
    }
    return Entity(
        "customer", "01-ACME001", record, ("sage:01-ACME001", "salesforce:001000000000001AAA"), changed
    )


def test_entities_pair_by_a_shared_link_and_the_rest_stand_alone() -> None:
    linked_by_id = Entity("customer", "001B", {}, ("salesforce:001B",))
    sf = Snapshot(SALESFORCE, [account(), linked_by_id, Entity("customer", "001C", {}, ("salesforce:001C",))])
    sage = Snapshot(SAGE, [customer(), Entity("customer", "02-B", {}, ("sage:02-B", "salesforce:001B"))])

    found = {(s.key if s else None, g.key if g else None) for _, s, g in pairs(sf, sage)}

    assert found == {("001000000000001AAA", "01-ACME001"), ("001B", "02-B"), ("001C", None)}


def test_a_pair_as_the_mappings_would_sync_it_is_no_drift(judge: MappingJudge) -> None:
    assert judge.judge("customer", account(), customer()) == []


def test_a_value_the_way_back_leaves_out_is_no_drift(judge: MappingJudge) -> None:
    # Sage's terms 02 have no Salesforce value (customers.yaml leaves it out, so the Account keeps
    # its terms): Sage -> Salesforce has no opinion, and a field mapped both ways needs both
    assert judge.judge("customer", account(), customer(terms_code="02")) == []


def test_a_field_mapped_both_ways_is_repaired_the_way_of_the_newer_change(judge: MappingJudge) -> None:
    (to_sage,) = judge.judge("customer", account(LATER, Phone="(619) 555-0000"), customer(EARLIER))
    (to_salesforce,) = judge.judge("customer", account(EARLIER, Phone="(619) 555-0000"), customer(LATER))

    assert (to_sage.kind, to_sage.field) == (DriftKind.FIELD, "telephone_no")
    assert to_sage.repair is not None
    assert to_sage.repair.value is not None
    assert to_sage.repair.topic == topic_names.SAGE_COMMANDS
    assert to_sage.repair.value["source_event_time"] == LATER
    assert to_salesforce.repair is not None
    assert to_salesforce.repair.value is not None
    assert to_salesforce.repair.topic == topic_names.SALESFORCE_COMMANDS
    assert to_salesforce.repair.value["fields"] == {"Phone": "(619) 555-4454"}
    assert to_salesforce.repair.value["source_event_time"] == LATER


def test_a_repair_towards_salesforce_carries_when_the_sweep_read_sage(judge: MappingJudge) -> None:
    read = replace(customer(EARLIER), read_at=LATER)
    (drift,) = judge.judge("customer", account(EARLIER, Credit_Limit__c=1.0), read)

    assert drift.repair is not None
    assert drift.repair.value is not None
    assert drift.repair.value["source_event_time"] == LATER


def test_a_field_sage_owns_is_repaired_in_salesforce_whichever_is_newer(judge: MappingJudge) -> None:
    (drift,) = judge.judge("customer", account(LATER, Credit_Limit__c=9999.0), customer(EARLIER))

    assert (drift.field, drift.salesforce, drift.sage) == ("credit_limit", 9999.0, Decimal("5000.00"))
    assert drift.repair is not None
    assert drift.repair.value is not None
    assert drift.repair.value["fields"] == {"Credit_Limit__c": 5000.0}


def test_an_unlinked_account_is_no_drift_and_a_linked_one_without_its_customer_is(
    judge: MappingJudge,
) -> None:
    unlinked = Entity("customer", "001X", {"salesforce": {}}, ("salesforce:001X",))

    assert judge.judge("customer", unlinked, None) == []
    (missing,) = judge.judge("customer", account(), None)
    assert (missing.kind, missing.key) == (DriftKind.MISSING_IN_SAGE, "01-ACME001")
    assert missing.repair is not None
    assert missing.repair.value is not None
    assert missing.repair.value["command"][1]["customer"]["customer_no"] == "ACME001"
    (again,) = judge.judge("customer", account(), None)  # the next sweep's repair is the same command
    assert again.repair is not None
    assert again.repair.value is not None
    assert again.repair.value["command_id"] == missing.repair.value["command_id"]


def test_an_order_is_compared_by_its_sage_number_and_mapped_status(judge: MappingJudge) -> None:
    opportunity = Entity(
        "order",
        "006000000000001AAA",
        {
            "id": "006000000000001AAA",
            "object": "Opportunity",
            "salesforce": {"Sage_Order_No__c": "0000123", "Sage_Order_Status__c": "Open"},
        },
        ("salesforce:006000000000001AAA",),
    )
    completed = Entity(
        "order",
        "0000123",
        {"sales_order_no": "0000123", "source_status": "C"},
        ("salesforce:006000000000001AAA",),
        LATER,
    )

    (status,) = judge.judge("order", opportunity, completed)
    (never_sent,) = judge.judge("order", opportunity, None)

    assert (status.kind, status.salesforce, status.sage) == (DriftKind.ORDER_STATUS, "Open", "Completed")
    assert status.repair is not None
    assert status.repair.value is not None
    assert status.repair.value["fields"]["Sage_Order_Status__c"] == "Completed"
    assert never_sent.kind is DriftKind.ORDER_NOT_IN_SAGE
    assert never_sent.repair is None


def test_a_mapping_saved_while_the_reconciler_runs_is_judged_by_from_the_next_sweep(tmp_path) -> None:
    """A console save reaches reconciliation: the next sweep reads and compares the new field, and
    an invalid edit keeps the last good mapping rather than stop the reconciler."""
    mappings = tmp_path / "mappings"
    shutil.copytree("mappings", mappings)
    reloading = ReloadingJudge(lambda: load_mappings(mappings))
    assert "Fax" not in reloading.wanted(SALESFORCE)["Account"]

    customers = mappings / "customers.yaml"
    text = customers.read_text()
    customers.write_text(
        text.replace("    telephone_no: {salesforce: Phone}\n", "    telephone_no: {salesforce: Fax}\n")
    )
    os.utime(customers, (1, 1))  # a different modification time, however fast the test runs
    assert "Fax" in reloading.wanted(SALESFORCE)["Account"]

    customers.write_text(text.replace("version: 1", "version: 99"))
    os.utime(customers, (2, 2))
    assert "Fax" in reloading.wanted(SALESFORCE)["Account"]  # the invalid edit is not used
