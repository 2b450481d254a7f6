"""The processors' logic without Kafka: pricing rules, failures shown on the opportunity, held
orders, orders commanded again when Sage's result does not come, status mapping choices,
inventory coalescing, and the shared table ignoring its own echo."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import faust
import pytest
from prometheus_client import REGISTRY

from processors.inventory import InventoryPipeline
from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.order_mapping import order_to_sage
from processors.orders import OrderPipeline
from processors.state import MappingsRef, Origin, Tables
from processors.status import StatusPipeline
from processors.tables import SharedTable, shared_table
from sagesf.errors import Permanent
from sagesf.load import HISTORY_BEFORE_GO_LIVE, HISTORY_HEADER

REPO = Path(__file__).resolve().parents[2]
OPP = "006" + "A" * 15
ACCOUNT = "001" + "B" * 15


@pytest.fixture(scope="module")
def base_mappings() -> Mappings:
    return load_mappings(
        REPO / "mappings",
        salesforce_metadata=REPO / "mappings/metadata/salesforce.yaml",
        sage_metadata=REPO / "mappings/metadata/sage100.yaml",
    )


def pipeline(mappings: Mappings, orders: dict[bytes, dict[str, Any]] | None = None) -> OrderPipeline:
    store = orders if orders is not None else {}
    tables = Tables.in_memory()
    tables.items.update(
        {
            "HRDW-1000": {
                "active": True,
                "deleted": False,
                "product_code": None,
                "standard_unit_price": "12.50",
            },
            "OLD-1": {"active": False, "deleted": False, "product_code": None, "standard_unit_price": None},
        }
    )
    return OrderPipeline(
        MappingsRef(mappings),
        tables,
        decode_order=lambda raw: copy.deepcopy(store[raw]),
        decode_customer=lambda raw: {},
    )


def order(
    *lines: tuple[str, str, str], currency: str = "USD", external: str | None = "01-ACME", opp: str = OPP
) -> dict[str, Any]:
    division, _, number = (external or "").partition("-")
    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "source_system": "SALESFORCE",
            "source_record_id": opp,
            "correlation_id": None,
        },
        "salesforce_opportunity_id": opp,
        "customer": {
            "salesforce_account_id": ACCOUNT,
            "ar_division_no": division or None,
            "customer_no": number or None,
            "name": "Acme",
        },
        "status": "NEW",
        "source_status": "Closed Won",
        "order_date": date(2026, 11, 1),
        "currency_code": currency,
        "total_amount": Decimal("0"),
        "lines": [
            {
                "line_no": i,
                "product_code": code,
                "quantity_ordered": Decimal(qty),
                "unit_price": Decimal(price),
                "extension_amount": Decimal("0"),
            }
            for i, (code, qty, price) in enumerate(lines, start=1)
        ],
    }


ORIGIN = Origin("salesorder.v1", 0, 7, b"key", b"value")


def order_result(outcome: str, command_id: str = "c", opp: str = OPP, **fields: Any) -> dict[str, Any]:
    """The Sage sink's SageResult for the CreateSalesOrder of `opp`."""
    return {
        "kind": "CREATE_SALES_ORDER",
        "outcome": outcome,
        "salesforce_record_id": opp,
        "command_id": command_id,
        "envelope": {},
        **fields,
    }


def test_an_order_of_an_unknown_currency_fails_visibly(base_mappings: Mappings) -> None:
    step = pipeline(base_mappings).on_sales_order(
        OPP, order(("HRDW-1000", "1", "10"), currency="JPY"), ORIGIN
    )
    assert step.outcome == "failed"
    [(origin, error)] = step.dead_letters
    assert origin == ORIGIN
    assert "JPY" in str(error)
    [update] = step.outbound
    assert update.key == OPP
    assert update.value["fields"]["Sage_Sync_Status__c"] == "Error"
    assert "no exchange rate from JPY to USD" in update.value["fields"]["Sage_Sync_Message__c"]


def test_an_inactive_item_fails_before_sage_is_asked(base_mappings: Mappings) -> None:
    step = pipeline(base_mappings).on_sales_order(OPP, order(("OLD-1", "1", "10")), ORIGIN)
    assert step.outcome == "failed"
    assert "'OLD-1' is inactive" in str(step.dead_letters[0][1])


def test_salesforce_products_link_codes_but_only_sage_says_what_is_active(base_mappings: Mappings) -> None:
    p = pipeline(base_mappings)
    origin = Origin("item.v1", 0, 1, None, b"i")
    product = {
        "item_code": "OLD-1",
        "product_code": "RETRO-WIDGET",
        "active": True,
        "envelope": {"source_system": "SALESFORCE"},
    }
    p.on_item("OLD-1", product, origin)
    assert p.item_code_for("RETRO-WIDGET", None, "lines[1]") == "OLD-1"
    assert p.tables.items["OLD-1"]["active"] is False  # Product2.IsActive does not revive a Sage item
    p.on_item(
        "OLD-1",
        {
            "item_code": "OLD-1",
            "active": True,
            "standard_unit_price": Decimal("3"),
            "envelope": {"source_system": "SAGE100"},
        },
        origin,
    )
    assert p.tables.items["OLD-1"]["active"] is True
    assert p.tables.items["OLD-1"]["product_code"] == "RETRO-WIDGET"


def test_pricing_rules_from_the_mapping(base_mappings: Mappings) -> None:
    strict = base_mappings.pricing.model_copy(
        update={"max_discount_percent": Decimal(40), "zero_price": "error", "rounding": "half_even"}
    )
    mappings = Mappings(**{**base_mappings.__dict__, "pricing": strict})
    p = pipeline(mappings)
    # 12.50 is Sage's standard price: 7.49 is more than 40% below it, 7.50 is not
    refused = p.on_sales_order(OPP, order(("HRDW-1000", "1", "7.49")), ORIGIN)
    assert refused.outcome == "failed"
    assert "more than 40% below" in str(refused.dead_letters[0][1])
    ok = p.on_sales_order(OPP, order(("HRDW-1000", "1", "7.50")), ORIGIN)
    assert ok.outcome == "commanded"
    zero = p.on_sales_order(OPP, order(("HRDW-1000", "1", "0")), ORIGIN)
    assert zero.outcome == "failed"
    assert "unit price 0" in str(zero.dead_letters[0][1])
    # unit prices are rounded with the configured mode (half even here), then converted lines too
    even = p.on_sales_order(OPP, order(("HRDW-1000", "1", "10.125")), ORIGIN)
    assert even.outbound[0].value["command"][1]["order"]["lines"][0]["unit_price"] == Decimal("10.12")
    eur = p.on_sales_order(OPP, order(("HRDW-1000", "2", "10.025"), currency="EUR"), ORIGIN)
    line = eur.outbound[0].value["command"][1]["order"]["lines"][0]
    assert line["unit_price"] == Decimal("10.83")  # 10.827 at 1.08
    assert line["extension_amount"] == Decimal("21.66")


def _sage_commands(step: Any) -> list[tuple[str, str, str]]:
    return [
        (o.key, o.value["command_id"], o.value["command"][0].rsplit(".", 1)[1])
        for o in step.outbound
        if o.topic == "sage.commands.v1"
    ]


def test_an_order_without_a_sage_result_is_commanded_again_until_one_arrives(
    base_mappings: Mappings,
) -> None:
    raw = {b"value": order(("HRDW-1000", "2", "12.50"))}
    p = pipeline(base_mappings, raw)
    first = p.on_sales_order(OPP, raw[b"value"], ORIGIN)
    [(key, cid, kind)] = _sage_commands(first)
    assert (key, kind) == (OPP, "CreateSalesOrder")
    assert _sage_commands(p.sweep()) == []  # not waited long enough yet
    p.tables.orders[OPP] = {**p.tables.orders[OPP], "at": p.tables.orders[OPP]["at"] - p.resend_after_ms}
    resent = REGISTRY.get_sample_value("sagesf_processor_orders_resent_total") or 0.0
    again = p.sweep()
    assert _sage_commands(again) == [(OPP, cid, "CreateSalesOrder")]  # the same command: idempotent
    assert REGISTRY.get_sample_value("sagesf_processor_orders_resent_total") == resent + 1  # alerted on
    assert again.dead_letters == []
    assert _sage_commands(p.sweep()) == []  # its clock restarted
    result = order_result("EXISTING", cid, sales_order_no="0000042", order_status="OPEN")
    synced = p.on_sage_result(OPP, result, Origin("sage.results.v1", 0, 3, None, b"r"))
    [update] = synced.outbound
    assert update.value["fields"]["Sage_Order_No__c"] == "0000042"
    assert OPP not in p.tables.orders  # confirmed: nothing left to resend
    assert _sage_commands(p.sweep()) == []


def test_an_order_won_before_go_live_is_kept_as_history_and_never_ordered(base_mappings: Mappings) -> None:
    """The initial load marks it; Sage has it already, entered by hand without the Salesforce ID."""
    loaded = Origin("salesorder.v1", 0, 8, b"key", b"value", ((HISTORY_HEADER, HISTORY_BEFORE_GO_LIVE),))
    p = pipeline(base_mappings)
    kept = p.on_sales_order(OPP, order(("HRDW-1000", "2", "12.50")), loaded)
    assert (kept.outcome, kept.outbound, kept.dead_letters) == ("history", [], [])
    # edited later, or moved out of Closed Won and back: the live source publishes it unmarked
    edited = p.on_sales_order(OPP, order(("HRDW-1000", "3", "12.50")), ORIGIN)
    assert (edited.outcome, edited.outbound) == ("history", [])
    p.tables.orders[OPP] = {**p.tables.orders[OPP], "at": 0}
    assert _sage_commands(p.sweep()) == []  # nothing to re-send either
    p._prune(10**15)  # kept past any retention
    assert p.tables.orders[OPP]["state"] == "history"
    # an order this pipeline commanded before the load came keeps its command
    other = "006" + "C" * 15
    assert (
        p.on_sales_order(other, order(("HRDW-1000", "1", "12.50"), opp=other), ORIGIN).outcome == "commanded"
    )
    assert p.on_sales_order(other, order(("HRDW-1000", "1", "12.50"), opp=other), loaded).outcome == "skipped"
    assert p.tables.orders[other]["state"] == "commanded"


def test_an_order_that_no_longer_maps_is_not_failed_by_the_resend(base_mappings: Mappings) -> None:
    """Sage may already have it: the resend is skipped and logged; nothing shows Error."""
    raw = {b"value": order(("HRDW-1000", "2", "12.50"))}
    p = pipeline(base_mappings, raw)
    p.on_sales_order(OPP, raw[b"value"], ORIGIN)
    del p.tables.items["HRDW-1000"]  # the item left item.v1 since
    p.tables.orders[OPP] = {**p.tables.orders[OPP], "at": 1}
    swept = p.sweep()
    assert swept.outbound == []
    assert swept.dead_letters == []
    assert p.tables.orders[OPP]["state"] == "commanded"


# --- the first order of a new account brings its customer ---------------------------------------

OPP2 = "006" + "C" * 15
NEW_CUSTOMER = {
    "salesforce_account_id": ACCOUNT,
    "ar_division_no": "01",
    "customer_no": "NEW01",
    "name": None,
}
FIRST = Origin("salesorder.v1", 0, 7, b"key", b"first")
SECOND = Origin("salesorder.v1", 0, 8, b"key2", b"second")


def customer_created(order_no: str = "0000042") -> dict[str, Any]:
    """Sage's answer to OPP's CreateSalesOrder: written, with the customer NEW01 it created."""
    return order_result("CREATED", sales_order_no=order_no, customer=NEW_CUSTOMER, customer_created=True)


def _commands(step: Any, topic: str, key: str) -> list[dict[str, Any]]:
    return [o.value for o in step.outbound if o.topic == topic and o.key == key]


def _new_account_orders(mappings: Mappings) -> tuple[OrderPipeline, dict[bytes, dict[str, Any]]]:
    """A pipeline with two won opportunities (OPP, OPP2) of ACCOUNT, which Sage does not know yet."""
    raw = {
        b"first": order(("HRDW-1000", "1", "12.50"), external=None),
        b"second": order(("HRDW-1000", "2", "12.50"), external=None, opp=OPP2),
    }
    return pipeline(mappings, raw), raw


def _first_sent_second_held(mappings: Mappings) -> OrderPipeline:
    """OPP commanded with ACCOUNT's new customer, OPP2 held behind it."""
    p, raw = _new_account_orders(mappings)
    assert p.on_sales_order(OPP, raw[b"first"], FIRST).outcome == "commanded"
    assert p.on_sales_order(OPP2, raw[b"second"], SECOND).outcome == "held"
    return p


def test_a_new_accounts_order_brings_its_customer_and_only_sages_answer_links_it(
    base_mappings: Mappings,
) -> None:
    p, raw = _new_account_orders(base_mappings)

    commanded = p.on_sales_order(OPP, raw[b"first"], FIRST)

    assert commanded.outcome == "commanded"
    [create] = _commands(commanded, "sage.commands.v1", OPP)
    kind, command = create["command"]
    assert kind.endswith("CreateSalesOrder")
    assert command["order"]["customer"]["salesforce_account_id"] == ACCOUNT
    assert command["customer"]["salesforce_account_id"] == ACCOUNT  # Sage creates it with the order
    assert command["customer"]["name"] == "Acme"
    assert _commands(commanded, "sage.commands.v1", ACCOUNT) == []  # no customer of its own first
    assert _commands(commanded, "salesforce.commands.v1", ACCOUNT) == []
    assert ACCOUNT not in p.tables.customers

    # Sage refuses the order (a line it will not take): no customer, so nothing to link
    error = {"reason": "Sage 100 refused the write: a database rule (constraint) failed", "field": None}
    refused = p.on_sage_result(OPP, order_result("REJECTED", error=error), ORIGIN)
    assert refused.outcome == "order_rejected"
    assert [origin for origin, _ in refused.dead_letters] == [FIRST]
    [error_update] = _commands(refused, "salesforce.commands.v1", OPP)
    assert error_update["fields"]["Sage_Sync_Status__c"] == "Error"
    # the reason says once that Sage refused
    assert error_update["fields"]["Sage_Sync_Message__c"].lower().count("refused") == 1
    assert _commands(refused, "salesforce.commands.v1", ACCOUNT) == []
    assert ACCOUNT not in p.tables.customers

    # replayed after the fix: Sage creates customer and order together, and says so
    again = p.on_sales_order(OPP, raw[b"first"], FIRST)
    assert _commands(again, "sage.commands.v1", OPP)[0]["command"][1]["customer"] is not None
    synced = p.on_sage_result(OPP, customer_created(), ORIGIN)

    [account] = _commands(synced, "salesforce.commands.v1", ACCOUNT)
    assert account["fields"]["ExternalID__c"] == "01-NEW01"
    assert account["fields"]["Sage_Sync_Status__c"] == "Synced"
    [opportunity] = _commands(synced, "salesforce.commands.v1", OPP)
    assert opportunity["fields"]["Sage_Order_No__c"] == "0000042"
    assert p.tables.customers[ACCOUNT] == {"ar_division_no": "01", "customer_no": "NEW01"}


def test_the_next_orders_of_a_new_account_wait_for_the_first_and_take_its_customer(
    base_mappings: Mappings,
) -> None:
    """Commands are keyed by opportunity, so two orders carrying one new customer could reach Sage
    side by side and make it twice; the second waits for the first one's answer instead."""
    p, raw = _new_account_orders(base_mappings)
    p.on_sales_order(OPP, raw[b"first"], FIRST)

    held = p.on_sales_order(OPP2, raw[b"second"], SECOND)

    assert held.outcome == "held"
    assert _commands(held, "sage.commands.v1", OPP2) == []
    [pending] = _commands(held, "salesforce.commands.v1", OPP2)
    assert pending["fields"]["Sage_Sync_Status__c"] == "Pending"
    assert p.customer_directory.held_count() == 1

    released = p.on_sage_result(OPP, customer_created(), ORIGIN)

    [create] = _commands(released, "sage.commands.v1", OPP2)
    assert create["command"][1]["order"]["customer"]["customer_no"] == "NEW01"
    assert create["command"][1]["customer"] is None  # Sage has it now
    assert p.customer_directory.held_count() == 0


def test_when_sage_refuses_a_new_accounts_first_order_the_next_one_brings_the_customer(
    base_mappings: Mappings,
) -> None:
    p = _first_sent_second_held(base_mappings)
    error = {"reason": "ItemCode 'HRDW-1000' is inactive", "field": "lines[1].ItemCode"}

    step = p.on_sage_result(OPP, order_result("REJECTED", error=error), ORIGIN)

    assert {(o.key, o.value["fields"]["Sage_Sync_Status__c"]) for o in step.outbound if o.key == OPP} == {
        (OPP, "Error")
    }
    [create] = _commands(step, "sage.commands.v1", OPP2)
    assert create["command"][1]["customer"]["salesforce_account_id"] == ACCOUNT
    assert _commands(step, "salesforce.commands.v1", ACCOUNT) == []
    assert ACCOUNT not in p.tables.customers
    assert p.customer_directory.held_count() == 0


def test_a_held_order_is_released_when_the_customer_arrives_on_customer_v1(base_mappings: Mappings) -> None:
    p = _first_sent_second_held(base_mappings)
    sage_customer = {
        "salesforce_account_id": ACCOUNT,
        "ar_division_no": "01",
        "customer_no": "NEW01",
        "name": "Acme",
    }
    learned = p.customer_directory.on_customer(
        "01-NEW01", sage_customer, Origin("customer.v1", 0, 1, None, b"c")
    )
    [create] = _commands(learned, "sage.commands.v1", OPP2)
    assert create["command"][1]["order"]["customer"]["customer_no"] == "NEW01"
    assert p.customer_directory.held_count() == 0


def test_sages_copy_of_a_new_customer_before_the_orders_answer_loses_nothing(base_mappings: Mappings) -> None:
    """The Sage source may publish the customer the order made (customer.v1, from Sage) before the
    order's SageResult arrives: the held order goes at once, and the answer still links the Account
    and says what Sage holds differently."""
    long_name = "The Extraordinarily Long Company Name Inc"
    first = order(("HRDW-1000", "1", "12.50"), external=None)
    first["customer"]["name"] = long_name
    p, _ = _new_account_orders(base_mappings)
    p.on_sales_order(OPP, first, FIRST)
    p.on_sales_order(OPP2, order(("HRDW-1000", "2", "12.50"), external=None, opp=OPP2), SECOND)
    sage_copy = {
        "envelope": {"source_system": "SAGE100"},
        **NEW_CUSTOMER,
        "name": long_name[:30],
        "status": "ACTIVE",
    }

    learned = p.customer_directory.on_customer("01-NEW01", sage_copy, Origin("customer.v1", 0, 4, None, b"s"))

    [create] = _commands(learned, "sage.commands.v1", OPP2)
    assert create["command"][1]["order"]["customer"]["customer_no"] == "NEW01"
    [account] = _commands(
        p.on_sage_result(OPP, customer_created(), ORIGIN), "salesforce.commands.v1", ACCOUNT
    )
    assert account["fields"]["ExternalID__c"] == "01-NEW01"
    assert "name cut to 30" in account["fields"]["Sage_Sync_Message__c"]
    assert p.tables.held == {}


def test_status_unknown_can_be_skipped(base_mappings: Mappings) -> None:
    skip = base_mappings.orders.model_copy(
        update={"order_status": base_mappings.orders.order_status.model_copy(update={"unknown": "skip"})}
    )
    mappings = Mappings(**{**base_mappings.__dict__, "orders": skip})
    status = StatusPipeline(pipeline(mappings))
    change = {
        "sales_order_no": "0000001",
        "salesforce_opportunity_id": OPP,
        "status": "UNKNOWN",
        "source_status": "Q",
        "envelope": {"event_id": "e"},
    }
    assert status.on_status_change("0000001", change).outcome == "skipped"
    strict = StatusPipeline(pipeline(base_mappings))
    with pytest.raises(Permanent):
        strict.on_status_change("0000001", change)
    # an order entered in Sage (no Salesforce ID, unknown number) is none of Salesforce's business
    assert (
        strict.on_status_change("0000002", {**change, "salesforce_opportunity_id": None}).outcome == "skipped"
    )


def test_a_sage_header_udf_mapped_to_salesforce_reaches_the_opportunity_with_the_status(
    base_mappings: Mappings,
) -> None:
    status = StatusPipeline(pipeline(base_mappings))
    change = {
        "sales_order_no": "0000001",
        "salesforce_opportunity_id": OPP,
        "status": "OPEN",
        "source_status": "O",
        "envelope": {"event_id": "e"},
        # UDF_OPPORTUNITY_NAME goes Salesforce -> Sage only: it is not written back
        "custom_fields": {"UDF_ROUTE": "North 7", "UDF_OPPORTUNITY_NAME": "Renamed in Sage"},
    }
    [update] = status.on_status_change("0000001", change).outbound
    assert update.value["fields"] == {"Sage_Order_Status__c": "Open", "Sage_Route__c": "North 7"}
    [blank] = status.on_status_change("0000001", {**change, "custom_fields": {"UDF_ROUTE": None}}).outbound
    assert "Sage_Route__c" not in blank.value["fields"]  # Sage never blanks a Salesforce field


def test_a_sage_line_udf_mapped_to_salesforce_reaches_the_line_sage_wrote_it_from(
    base_mappings: Mappings,
) -> None:
    p = pipeline(base_mappings)
    line_a, line_b = "00k" + "A" * 15, "00k" + "B" * 15
    written = [
        {"line_no": 1, "line_key": "000001", "salesforce_line_id": line_a},
        {"line_no": 2, "line_key": "000002", "salesforce_line_id": line_b},
    ]
    p.on_sage_result(OPP, order_result("CREATED", sales_order_no="0000042", lines=written), ORIGIN)
    change = {
        "sales_order_no": "0000042",
        "salesforce_opportunity_id": OPP,
        "status": "OPEN",
        "source_status": "O",
        "envelope": {"event_id": "e"},
        "lines": [
            # UDF_LINE_NOTE goes Salesforce -> Sage only: it is not written back
            {"line_key": "000001", "custom_fields": {"UDF_LINE_TAG": "Fragile", "UDF_LINE_NOTE": "x"}},
            {"line_key": "000002", "custom_fields": {"UDF_LINE_TAG": None}},  # blank: nothing
            {"line_key": "000003", "custom_fields": {"UDF_LINE_TAG": "Added"}},  # added in Sage: skipped
        ],
    }
    header, line = StatusPipeline(p).on_status_change("0000042", change).outbound
    assert header.value["sobject"] == "Opportunity"
    assert (line.key, line.value["sobject"], line.value["record_id"]) == (
        line_a,
        "OpportunityLineItem",
        line_a,
    )
    assert line.value["fields"] == {"Line_Tag__c": "Fragile"}


def test_inventory_is_sent_once_per_change_and_again_only_after_acknowledgement(
    base_mappings: Mappings,
) -> None:
    tables = Tables.in_memory()
    tables.items["HRDW-1000"] = {"salesforce_product_id": "01t000000000001AAA"}  # a Product2 exists
    inventory = InventoryPipeline(MappingsRef(base_mappings), tables)
    level = {
        "item_code": "HRDW-1000",
        "warehouse_code": "000",
        "quantity_on_hand": Decimal("5"),
        "quantity_available": Decimal("4"),
        "envelope": {"event_time": datetime(2026, 11, 1, tzinfo=UTC)},
    }
    inventory.on_level("HRDW-1000/000", level)
    first = inventory.flush()
    assert len(first.outbound) == 1
    # not acknowledged (after() not run): a restart compares again and sends again
    inventory.rebuild()
    assert len(inventory.flush().outbound) == 1
    again = inventory.flush()
    assert again.outbound == []  # nothing changed since
    inventory.rebuild()
    resent = inventory.flush()
    assert resent.after is not None
    resent.after()
    inventory.rebuild()
    assert inventory.flush().outbound == []  # acknowledged: a restart does not resend
    older = {
        **level,
        "quantity_on_hand": Decimal("1"),
        "envelope": {"event_time": datetime(2026, 10, 1, tzinfo=UTC)},
    }
    assert inventory.on_level("HRDW-1000/000", older).outcome == "stale"


def test_stock_of_an_item_without_a_salesforce_product_waits_until_one_is_known(
    base_mappings: Mappings,
) -> None:
    tables = Tables.in_memory()
    inventory = InventoryPipeline(MappingsRef(base_mappings), tables)
    level = {
        "item_code": "ELEC-1001",
        "warehouse_code": "000",
        "quantity_on_hand": Decimal("7"),
        "quantity_available": Decimal("7"),
        "envelope": {"event_time": datetime(2026, 11, 1, tzinfo=UTC)},
    }
    inventory.on_level("ELEC-1001/000", level)
    assert inventory.flush().outbound == []  # Salesforce would refuse to create the product
    assert inventory.flush().outbound == []
    tables.items["ELEC-1001"] = {"salesforce_product_id": "01t000000000002AAA"}
    sent = inventory.flush().outbound
    assert len(sent) == 1


class FakeSend:
    """Stands in for the changelog producer's future."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.message = NS(partition=0)
        self.offset = -1

    def add_done_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def acknowledge(self, offset: int) -> None:
        self.offset = offset
        for callback in self.callbacks:
            callback(self)

    def cancelled(self) -> bool:
        return False

    def exception(self) -> None:
        return None

    def result(self) -> Any:
        return NS(offset=self.offset)


def test_a_shared_table_ignores_the_echo_of_its_own_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    sends: list[FakeSend] = []

    def fake_send(self: Any, partition: Any, key: Any, value: Any, *args: Any) -> FakeSend:
        sends.append(FakeSend())
        return sends[-1]

    monkeypatch.setattr(faust.tables.base.Collection, "send_changelog", fake_send)
    app = faust.App("echo-test", store="memory://", GlobalTable=SharedTable, autodiscover=False)
    table = shared_table(app, "t", "test")
    heard: list[Any] = []
    table.add_listener(heard.append)

    def record(key: str, value: int, offset: int) -> Any:
        return NS(key=key, value=value, message=NS(offset=offset, partition=0, value=value))

    table["k"] = 1
    table["k"] = 2  # two writes in flight
    table.apply_changelog_batch([record("k", 1, 10)])  # the echo of the first write
    assert table["k"] == 2
    sends[0].acknowledge(10)
    sends[1].acknowledge(11)
    table.apply_changelog_batch([record("k", 2, 11)])
    assert table["k"] == 2
    table.apply_changelog_batch([record("k", 3, 12), record("other", 9, 13)])  # another worker's writes
    assert (table["k"], table["other"]) == (3, 9)
    assert heard == ["k", "k", "k", "other"]


# --- re-sends are bounded ----------------------------------------------------------------------


RESEND_LIMIT = 5  # the default of SAGESF_PROCESSORS__ORDER_RESEND_LIMIT


def _age(p: OrderPipeline, identity: str, by_ms: int) -> None:
    """Pretend the order's last command went out `by_ms` earlier."""
    p.tables.orders[identity] = {**p.tables.orders[identity], "at": p.tables.orders[identity]["at"] - by_ms}


def test_resends_back_off_and_stop_at_the_limit_with_an_error_on_the_opportunity(
    base_mappings: Mappings,
) -> None:
    raw = {b"value": order(("HRDW-1000", "2", "12.50"))}
    p = pipeline(base_mappings, raw)
    p.on_sales_order(OPP, raw[b"value"], ORIGIN)
    wait = p.resend_after_ms
    sent_at = []
    minute = 60_000  # the test's own run time is far below it
    for attempt in range(RESEND_LIMIT):
        _age(p, OPP, wait * 2**attempt - minute)
        assert _sage_commands(p.sweep()) == [], f"re-send {attempt + 1} came before its wait"
        _age(p, OPP, minute)
        sent_at.append(len(_sage_commands(p.sweep())))
    assert sent_at == [1] * RESEND_LIMIT  # each after twice the previous wait
    given_up = REGISTRY.get_sample_value("sagesf_processor_orders_unanswered_total") or 0.0
    _age(p, OPP, wait * 2**RESEND_LIMIT)

    last = p.sweep()

    assert _sage_commands(last) == []  # the limit: not sent again
    assert REGISTRY.get_sample_value("sagesf_processor_orders_unanswered_total") == given_up + 1
    [(origin, error)] = last.dead_letters
    assert origin == ORIGIN  # the original order, for `sagesf dlq replay`
    assert "no answer" in str(error)
    [update] = last.outbound
    assert update.key == OPP
    assert update.value["fields"]["Sage_Sync_Status__c"] == "Error"
    assert "Sage 100 has not answered" in update.value["fields"]["Sage_Sync_Message__c"]
    _age(p, OPP, wait * 2**10)
    assert p.sweep().outbound == []  # given up once, not again


def test_a_new_accounts_order_is_resent_with_its_customer_and_its_followers_give_up_with_it(
    base_mappings: Mappings,
) -> None:
    p = _first_sent_second_held(base_mappings)
    _age(p, OPP, p.resend_after_ms)

    again = p.sweep()

    [resent] = _commands(again, "sage.commands.v1", OPP)
    assert resent["command"][1]["customer"]["salesforce_account_id"] == ACCOUNT
    assert _commands(again, "sage.commands.v1", OPP2) == []
    for attempt in range(1, RESEND_LIMIT):
        _age(p, OPP, p.resend_after_ms * 2**attempt)
        p.sweep()
    given_up = REGISTRY.get_sample_value("sagesf_processor_orders_unanswered_total") or 0.0
    _age(p, OPP, p.resend_after_ms * 2**RESEND_LIMIT)

    last = p.sweep()

    assert sorted(origin.value or b"" for origin, _ in last.dead_letters) == [b"first", b"second"]
    errors = {o.key for o in last.outbound if o.value["fields"].get("Sage_Sync_Status__c") == "Error"}
    assert {OPP, OPP2} <= errors
    assert REGISTRY.get_sample_value("sagesf_processor_orders_unanswered_total") == given_up + 2
    assert p.customer_directory.held_count() == 0
    assert ACCOUNT not in p.tables.customers


# --- short reasons in Salesforce fields ---------------------------------------------------------

DRIVER_ERROR = (
    "('HY000', '[HY000] [unixODBC][SQLite]database is locked (5) (SQLExecDirectW)') "
    "SQLSTATE HY000 while writing SO_SalesOrderHeader"
)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/sagesf/connectors/sage100/sql_writer.py", line 212, in create_sales_order\n'
    "    cursor.execute(sql, values)\n"
    "pyodbc.OperationalError: ('HY000', 'database is locked')"
)


def _refused(reason: str) -> dict[str, Any]:
    error = {"reason": reason, "field": "SO_SalesOrderHeader", "value": None, "error_class": "Permanent"}
    return order_result("REJECTED", error=error)


@pytest.mark.parametrize("reason", [DRIVER_ERROR, TRACEBACK], ids=["driver error", "traceback"])
def test_driver_and_python_text_never_reaches_the_sync_message(base_mappings: Mappings, reason: str) -> None:
    raw = {b"value": order(("HRDW-1000", "2", "12.50"))}
    p = pipeline(base_mappings, raw)
    p.on_sales_order(OPP, raw[b"value"], ORIGIN)

    step = p.on_sage_result(OPP, _refused(reason), Origin("sage.results.v1", 0, 4, None, b"r"))

    [update] = step.outbound
    message = update.value["fields"]["Sage_Sync_Message__c"]
    assert update.value["fields"]["Sage_Sync_Status__c"] == "Error"
    for operator_text in ("unixODBC", "SQLSTATE", "HY000", "SQLExecDirectW", "Traceback", "pyodbc", ".py"):
        assert operator_text not in message
    assert message.startswith("Sage 100 could not save the order")
    assert len(message) <= 120
    [(_, error)] = step.dead_letters
    assert reason in str(error)  # operators get the whole text in the dead letter


def test_a_reason_a_user_can_act_on_is_shown_as_it_is(base_mappings: Mappings) -> None:
    raw = {b"value": order(("HRDW-1000", "2", "12.50"))}
    p = pipeline(base_mappings, raw)
    p.on_sales_order(OPP, raw[b"value"], ORIGIN)
    step = p.on_sage_result(
        OPP, _refused("ItemCode 'HRDW-1000' is inactive"), Origin("sage.results.v1", 0, 4, None, b"r")
    )
    message = step.outbound[0].value["fields"]["Sage_Sync_Message__c"]
    assert message == "Sage 100 refused the order: ItemCode 'HRDW-1000' is inactive"


# --- order data a sales team really types -------------------------------------------------------


def _sent(step: Any) -> dict[str, Any]:
    [create] = [o for o in step.outbound if o.topic == "sage.commands.v1"]
    sent: dict[str, Any] = create.value["command"][1]["order"]
    return sent


def test_one_polish_letter_does_not_block_an_order(base_mappings: Mappings) -> None:
    polish = order(("HRDW-1000", "1", "12.50"))
    polish["customer_po_no"] = "Zamówienie Łódź"
    polish["bill_to"] = {"name": "Spółka Łąka", "city": "Łódź", "country_code": "PL"}
    polish["lines"][0]["description"] = "Zawias mosiężny ł"
    polish["lines"][0]["comment_text"] = "Dostawa do magazynu w Łodzi"

    step = pipeline(base_mappings).on_sales_order(OPP, polish, ORIGIN)

    assert step.outcome == "commanded", step.dead_letters
    [create] = [o for o in step.outbound if o.topic == "sage.commands.v1"]
    header, [line] = create.value["command"][1]["header_columns"], create.value["command"][1]["line_columns"]
    assert header["CustomerPONo"] == "Zamówienie Lódz"  # ó is Windows-1252: kept
    assert (header["BillToName"], header["BillToCity"]) == ("Spólka Laka", "Lódz")
    assert line["ItemCodeDesc"] == "Zawias mosiezny l"
    assert line["CommentText"] == "Dostawa do magazynu w Lodzi"


def test_a_field_may_refuse_text_sage_cannot_store(base_mappings: Mappings) -> None:
    header = dict(base_mappings.orders.header)
    header["customer_po_no"] = header["customer_po_no"].model_copy(update={"outside_code_page": "error"})
    strict = Mappings(
        **{**base_mappings.__dict__, "orders": base_mappings.orders.model_copy(update={"header": header})}
    )
    polish = order(("HRDW-1000", "1", "12.50"))
    polish["customer_po_no"] = "Łódź-1"

    step = pipeline(strict).on_sales_order(OPP, polish, ORIGIN)

    assert step.outcome == "failed"
    message = step.outbound[0].value["fields"]["Sage_Sync_Message__c"]
    assert "customer_po_no" in message
    assert "'Ł'" in message


def test_a_product_code_typed_loosely_maps_to_the_one_item_it_matches(base_mappings: Mappings) -> None:
    p = pipeline(base_mappings)
    assert p.item_code_for(" hrdw-1000 ", None, "lines[1]") == "HRDW-1000"
    assert p.item_code_for("1001-hon-h252", None, "lines[1]") == "HRDW-1000"  # a products.yaml lookup key
    p.tables.items["hrdw-1000"] = {"active": True, "deleted": False, "standard_unit_price": "1"}
    with pytest.raises(Permanent) as two:
        p.item_code_for("Hrdw-1000", None, "lines[1]")
    assert "'HRDW-1000'" in two.value.reason
    assert "'hrdw-1000'" in two.value.reason
    exact = base_mappings.products.model_copy(update={"match_loosely": False})
    strict = pipeline(Mappings(**{**base_mappings.__dict__, "products": exact}))
    with pytest.raises(Permanent, match="unknown product"):
        strict.item_code_for(" hrdw-1000 ", None, "lines[1]")


def test_a_product_without_a_sage_item_code_fails_like_any_unknown_product(base_mappings: Mappings) -> None:
    """A Product2 with no Sage_Item_Code__c reaches item.v1 under its ProductCode; that is not a
    Sage item, so the order fails here, as for an unknown product, not later in Sage."""
    p = pipeline(base_mappings)
    product = {
        "item_code": "NEW-GADGET",  # the source's fallback: Sage_Item_Code__c empty, ProductCode used
        "product_code": "NEW-GADGET",
        "salesforce_product_id": "01t000000000009AAA",
        "active": True,
        "envelope": {"source_system": "SALESFORCE"},
    }
    p.on_item("NEW-GADGET", product, Origin("item.v1", 0, 1, None, b"i"))

    step = p.on_sales_order(OPP, order(("NEW-GADGET", "1", "10")), ORIGIN)

    assert step.outcome == "failed"
    assert "lines[1]: unknown product 'NEW-GADGET'" in str(step.dead_letters[0][1])


def test_every_value_a_rule_changed_is_said_on_the_opportunity(base_mappings: Mappings) -> None:
    raw = {b"value": order(("hrdw-1000", "3", "10.125"), ("HRDW-1000", "1", "0"))}
    typed = raw[b"value"]
    typed["customer_po_no"] = "PO-2026-000000000000000042"
    typed["bill_to"] = {
        "name": "The Extraordinarily Long Company Name Inc",
        "city": "Łódź",
        "country_code": "PL",
    }
    p = pipeline(base_mappings, raw)
    commanded = p.on_sales_order(OPP, typed, ORIGIN)
    assert commanded.outcome == "commanded", commanded.dead_letters
    result = order_result("CREATED", sales_order_no="0000042")

    synced = p.on_sage_result(OPP, result, Origin("sage.results.v1", 0, 3, None, b"r"))

    [update] = synced.outbound
    assert update.value["fields"]["Sage_Sync_Status__c"] == "Synced"
    message = update.value["fields"]["Sage_Sync_Message__c"]
    assert len(message) <= 255
    for said in (
        "customer_po_no cut to 15",
        "bill_to.name cut to 30",
        "bill_to.city 'Lódz'",
        "lines[1] 'hrdw-1000' as HRDW-1000",
        "lines[1].unit_price 10.13",
        "lines[2].unit_price 12.50",
    ):
        assert said in message, message
    # a repeated answer (the order confirmed already) leaves the message as it is
    again = p.on_sage_result(OPP, result, Origin("sage.results.v1", 0, 4, None, b"r"))
    assert "Sage_Sync_Message__c" not in again.outbound[0].value["fields"]


def test_the_order_preview_gives_the_sage_columns_the_mapping_names_and_nothing_else(
    base_mappings: Mappings,
) -> None:
    won = order(("HRDW-1000", "1", "12.50"))
    won["customer_po_no"] = "PO-1"
    won["ship_to"] = {"code": "WH2", "city": "Springfield", "country_code": "US"}
    won["custom_fields"] = {"opportunity_name": "Big deal", "not_mapped": "x"}
    won["lines"][0] |= {"description": "Hinge", "custom_fields": {"line_note": "fragile"}}

    header, [line], changes = order_to_sage(base_mappings, won)  # no tables, no state

    assert header == {
        "WarehouseCode": "000",  # the header entry's default
        "CustomerPONo": "PO-1",
        "ShipToCode": "WH2",
        "ShipToCity": "Springfield",
        "ShipToCountryCode": "USA",  # standardised by addresses.yaml
        "UDF_OPPORTUNITY_NAME": "Big deal",
    }
    assert line == {"ItemCodeDesc": "Hinge", "UDF_LINE_NOTE": "fragile"}
    assert changes.message() is None
