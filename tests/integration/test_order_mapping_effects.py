"""Every kind of target in mappings/orders.yaml has an effect: change it, and the write moves.

One order goes the whole way twice, under the shipped mapping and under one edited entry: the
orders processor makes the CreateSalesOrder (Avro-encoded as on sage.commands.v1), the real Sage
sink writes it into the sandbox database over ODBC, and the processor turns Sage's result into
the Opportunity update; then a Sage user tags the order's line, the Sage source's order stream
reads the order as it publishes it, and the status processor turns that into the line's update.
The value the shipped mapping put in one place must be in the new place under the edited
mapping, and gone from the old one.
"""

from __future__ import annotations

import copy
import io
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fastavro
import pytest
import yaml

from connectors.sage100.commands import parse_command
from connectors.sage100.sink import SageCommandSink
from connectors.sage100.streams import MappingContext, Stream, build_streams
from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.orders import OrderPipeline
from processors.state import MappingsRef, Origin, Tables
from processors.status import StatusPipeline
from sagesf.schemas import load_schema
from sagesf.sink import Inbound
from tests.kit.orders import customer_and_item, sage_sink

REPO = Path(__file__).resolve().parents[2]
ORIGIN = Origin("salesorder.v1", 0, 1, b"key", b"value")
LINE_ID = "00k" + "L" * 15  # the OpportunityLineItem the order's line came from
TAG = "Handle with care"  # what a Sage user puts in the line's UDF_LINE_TAG
Orders = dict[str, Any]


@pytest.fixture
def odbc(sage_db):
    connection = sage_db.odbc()
    yield connection
    connection.close()


@pytest.fixture
def sink(sage_db, odbc) -> SageCommandSink:
    return sage_sink(sage_db, odbc)


@pytest.fixture
def orders(sage_db) -> Stream:
    """The Sage source's order stream (SO_SalesOrderHeader -> orderstatus.v1)."""
    ctx = MappingContext(ZoneInfo("America/New_York"), "UDF_SALESFORCE_ID", {})
    return build_streams(sage_db.tables, ["SO_SalesOrderHeader"], ctx)["SO_SalesOrderHeader"]


def mappings_with(tmp_path: Path, edit: Callable[[Orders], None] | None) -> Mappings:
    """The shipped mappings with `edit` applied to orders.yaml, checked against the Sage columns."""
    directory = tmp_path / uuid.uuid4().hex
    shutil.copytree(REPO / "mappings", directory)
    if edit is not None:
        path = directory / "orders.yaml"
        orders = yaml.safe_load(path.read_text())
        edit(orders)
        path.write_text(yaml.safe_dump(orders, sort_keys=False, allow_unicode=True))
    return load_mappings(directory, sage_metadata=REPO / "mappings/metadata/sage100.yaml")


def an_order(odbc) -> tuple[dict[str, Any], str]:
    division, number, item = customer_and_item(odbc)
    order = {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "source_system": "SALESFORCE",
            "source_record_id": "",
            "correlation_id": None,
        },
        "salesforce_opportunity_id": "",
        "customer": {"salesforce_account_id": None, "ar_division_no": division, "customer_no": number},
        "status": "NEW",
        "source_status": "Closed Won",
        "order_date": date(2026, 11, 2),
        "currency_code": "USD",
        "customer_po_no": "PO-EFFECT-4711",
        "ship_via": "UPS Ground Priority Service",  # longer than ShipVia: cut, and said in the message
        "bill_to": {"name": "Effect Ltd", "line1": "1 Main St", "city": "Springfield", "country_code": "US"},
        "ship_to": {"name": "Effect Dock", "line1": "9 Pier Rd", "city": "Shelbyville", "country_code": "US"},
        # as the Salesforce source writes them: text
        "custom_fields": {
            "opportunity_name": "Effect deal",
            "delivery_date": "2026-12-24",
            "rush": "true",
            "priority": "High",
            "discount": "7.5",
        },
        "lines": [
            {
                "line_no": 1,
                "product_code": item,
                "description": "Blue widget",
                "unit_of_measure": "Box",  # BOX in Sage; the item's own unit is EACH
                "quantity_ordered": Decimal(2),
                "unit_price": Decimal("3.50"),
                "extension_amount": Decimal("7.00"),
                "custom_fields": {"line_note": "fragile"},
                "salesforce_line_id": LINE_ID,
            }
        ],
    }
    return order, item


def wire(value: dict[str, Any]) -> dict[str, Any]:
    """The command as the sink reads it off the topic: Avro-encoded and decoded."""
    schema = load_schema("SageCommand")
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, value)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema, schema)
    assert isinstance(decoded, dict)
    return decoded


def run(
    mappings: Mappings, sink: SageCommandSink, odbc, orders: Stream, order: dict[str, Any], item: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(header row, first detail row, the Opportunity's fields, the fields the Sage user's line
    tag sets on the OpportunityLineItem) after one order went through."""
    opportunity = ("006" + uuid.uuid4().hex.upper())[:18]
    order = copy.deepcopy(order) | {"salesforce_opportunity_id": opportunity}
    tables = Tables.in_memory()
    tables.items[item] = {"active": True, "deleted": False, "product_code": None, "standard_unit_price": None}
    pipeline = OrderPipeline(
        MappingsRef(mappings), tables, decode_order=lambda raw: order, decode_customer=lambda raw: {}
    )
    step = pipeline.on_sales_order(opportunity, order, ORIGIN)
    assert step.outcome == "commanded", step.dead_letters
    [create] = step.outbound
    command = parse_command(wire(create.value))
    [outcome] = sink.write([Inbound("sage.commands.v1", 0, 0, None, None, key=opportunity, value=command)])
    assert outcome.error is None, outcome.error
    assert outcome.result is not None
    assert outcome.result.value is not None
    back = pipeline.on_sage_result(opportunity, outcome.result.value, ORIGIN)
    [update] = back.outbound
    header = _row(odbc, "SELECT * FROM SO_SalesOrderHeader WHERE UDF_SALESFORCE_ID = ?", opportunity)
    line = _row(odbc, "SELECT * FROM SO_SalesOrderDetail WHERE SalesOrderNo = ?", header["SalesOrderNo"])
    return (
        header,
        line,
        dict(update.value["fields"]),
        _line_back(pipeline, odbc, orders, header["SalesOrderNo"]),
    )


def _line_back(pipeline: OrderPipeline, odbc, orders: Stream, order_no: str) -> dict[str, Any]:
    """The fields set on the order's Salesforce line once a Sage user tagged the line in Sage."""
    with odbc.transaction() as cur:
        cur.execute("UPDATE SO_SalesOrderDetail SET UDF_LINE_TAG = ? WHERE SalesOrderNo = ?", [TAG, order_no])
    group = orders.read_key(odbc, [order_no])
    assert group is not None
    [record] = orders.map(group, odbc)
    assert record.value is not None
    step = StatusPipeline(pipeline).on_status_change(order_no, record.value)
    [line] = [u for u in step.outbound if u.value["sobject"] == "OpportunityLineItem"]
    assert line.value["record_id"] == LINE_ID
    return dict(line.value["fields"])


def _row(odbc, query: str, *params: Any) -> dict[str, Any]:
    with odbc.transaction() as cur:
        cur.execute(query, list(params))
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


def _set(*path: str, value: Any) -> Callable[[Orders], None]:
    """An orders.yaml edit: the entry at `path` set to `value` (sections made when missing)."""

    def edit(orders: Orders) -> None:
        node = orders
        for key in path[:-1]:
            node[key] = node.get(key) or {}
            node = node[key]
        node[path[-1]] = value

    return edit


def _header_udf(name: str, spec: dict[str, str]) -> Callable[[Orders], None]:
    """An orders.yaml edit: a header custom field added (a picklist with its value map)."""

    def edit(orders: Orders) -> None:
        orders["custom_fields"][name] = spec
        orders["picklists"]["priority"] = {"values": {"High": "H", "Normal": "N", "Low": "L"}}

    return edit


# (name, orders.yaml edit, where the value was under the shipped mapping, where it is after);
# a place is (h)eader column, (l)ine column, (s)alesforce field or Salesforce line field (b)ack
# from Sage; None: nowhere before
CASES: list[tuple[str, Callable[[Orders], None], tuple[str, str] | None, tuple[str, str]]] = [
    (
        "header entry",
        _set("header", "customer_po_no", "sage", value="Comment"),
        ("h", "CustomerPONo"),
        ("h", "Comment"),
    ),
    (
        "header default",
        _set("header", "warehouse_code", "sage", value="Comment"),
        ("h", "WarehouseCode"),
        ("h", "Comment"),
    ),
    (
        "lines entry",
        _set("lines", "description", "sage", value="CommentText"),
        ("l", "ItemCodeDesc"),
        ("l", "CommentText"),
    ),
    (
        "lines map",
        _set("lines", "unit_of_measure", "sage", value="CommentText"),
        ("l", "UnitOfMeasure"),
        ("l", "CommentText"),
    ),
    (
        "address part",
        _set("addresses", "bill_to", "name", value="Comment"),
        ("h", "BillToName"),
        ("h", "Comment"),
    ),
    (
        "ship-to address",
        _set("addresses", "ship_to", "city", value="Comment"),
        ("h", "ShipToCity"),
        ("h", "Comment"),
    ),
    (
        "header custom field (text)",
        _set("custom_fields", "opportunity_name", "sage", value="UDF_ROUTE"),
        ("h", "UDF_OPPORTUNITY_NAME"),
        ("h", "UDF_ROUTE"),
    ),
    *[
        (
            f"header custom field ({spec['type']})",
            _header_udf(name, spec),
            None,
            ("h", spec["sage"]),
        )
        for name, spec in {
            "delivery_date": {"salesforce": "Delivery_Date__c", "sage": "UDF_DELIVERY_DATE", "type": "date"},
            "rush": {"salesforce": "Rush_Order__c", "sage": "UDF_RUSH", "type": "checkbox"},
            "priority": {
                "salesforce": "Order_Priority__c",
                "sage": "UDF_PRIORITY",
                "type": "picklist",
                "map": "priority",
            },
            "discount": {"salesforce": "Discount_Percent__c", "sage": "UDF_DISCOUNT_PCT", "type": "number"},
        }.items()
    ],
    (
        "line custom field",
        _set("line_custom_fields", "line_note", "sage", value="UDF_LINE_TAG"),
        ("l", "UDF_LINE_NOTE"),
        ("l", "UDF_LINE_TAG"),
    ),
    (
        "line custom field back (Sage -> Salesforce)",
        _set("line_custom_fields", "line_tag", "salesforce", value="Other_Tag__c"),
        ("b", "Line_Tag__c"),
        ("b", "Other_Tag__c"),
    ),
    (
        "write_back order_number",
        _set("write_back", "order_number", value="Other_No__c"),
        ("s", "Sage_Order_No__c"),
        ("s", "Other_No__c"),
    ),
    (
        "write_back order_status",
        _set("write_back", "order_status", value="Other_Status__c"),
        ("s", "Sage_Order_Status__c"),
        ("s", "Other_Status__c"),
    ),
    (
        "write_back sync_status",
        _set("write_back", "sync_status", "field", value="Other_Sync__c"),
        ("s", "Sage_Sync_Status__c"),
        ("s", "Other_Sync__c"),
    ),
    (
        "write_back message_field",
        _set("write_back", "message_field", value="Other_Message__c"),
        ("s", "Sage_Sync_Message__c"),
        ("s", "Other_Message__c"),
    ),
]


# what each type makes of the source's text in a text UDF
TYPED = {"UDF_DELIVERY_DATE": "2026-12-24", "UDF_RUSH": "Y", "UDF_PRIORITY": "H", "UDF_DISCOUNT_PCT": "7.5"}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Mappings:
    return mappings_with(tmp_path_factory.mktemp("shipped"), None)


@pytest.mark.parametrize(("edit", "before", "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_changing_an_orders_mapping_target_moves_the_write(
    tmp_path, shipped, sink, odbc, orders, edit, before, after
):
    order, item = an_order(odbc)
    places = dict(zip("hlsb", run(shipped, sink, odbc, orders, order, item), strict=True))
    edited = dict(
        zip("hlsb", run(mappings_with(tmp_path, edit), sink, odbc, orders, order, item), strict=True)
    )

    kind, column = after
    value = edited[kind].get(column)
    assert value not in (None, ""), f"nothing written to {column}"
    if before is None:
        assert not places[kind].get(column), f"{column} was written without the mapping"
        assert value == TYPED.get(column, value)
        return
    old_kind, old_column = before
    if kind == "s":  # a field written back: the order number differs from order to order
        assert places["s"].get(old_column) not in (None, "")
        assert old_column not in edited["s"]
        return
    assert places[old_kind].get(old_column) == value  # the same value, moved
    assert edited[old_kind].get(old_column) != value  # and no longer in the old place
