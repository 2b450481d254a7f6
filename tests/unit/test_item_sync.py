"""The item sync on item.v1: a Sage item's mapped fields go to its known Product2, a Product2's
custom fields go to its Sage item's UDF columns; nothing is created on either side."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.orders import OrderPipeline
from processors.state import MappingsRef, Origin, Tables

REPO = Path(__file__).resolve().parents[2]
PRODUCT = "01t000000000001AAA"


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(
        REPO / "mappings",
        salesforce_metadata=REPO / "sandbox/salesforce/metadata.yaml",
        sage_metadata=REPO / "mappings/metadata/sage100.yaml",
    )


def pipeline(mappings: Mappings) -> OrderPipeline:
    return OrderPipeline(
        MappingsRef(mappings), Tables.in_memory(), decode_order=copy.deepcopy, decode_customer=lambda raw: {}
    )


def item(source: str, **fields: Any) -> dict[str, Any]:
    return {
        "envelope": {"source_system": source, "event_time": datetime(2026, 11, 1, tzinfo=UTC)},
        "item_code": "HRDW-1000",
        "active": True,
        "deleted": False,
        **fields,
    }


def origin(offset: int) -> Origin:
    return Origin("item.v1", 0, offset, b"HRDW-1000", None)


def test_a_sage_item_updates_its_known_product_with_the_mapped_fields(mappings: Mappings) -> None:
    orders = pipeline(mappings)
    sage = item(
        "SAGE100", description="Brass hinge", custom_fields={"UDF_WEIGHT": "12.500", "UDF_WEB_ACTIVE": "Y"}
    )
    assert orders.on_item("HRDW-1000", sage, origin(0)).outbound == []  # no Product2 known yet

    orders.on_item("HRDW-1000", item("SALESFORCE", salesforce_product_id=PRODUCT), origin(1))
    [update] = orders.on_item("HRDW-1000", sage, origin(2)).outbound
    assert (update.value["sobject"], update.value["record_id"]) == ("Product2", PRODUCT)
    assert update.value["fields"] == {
        "Name": "Brass hinge",
        "IsActive": True,
        "Weight__c": 12.5,
        "Web_Active__c": True,
    }


def test_a_product_change_updates_the_udf_columns_of_the_sage_item_it_names(mappings: Mappings) -> None:
    orders = pipeline(mappings)
    product = item(
        "SALESFORCE", salesforce_product_id=PRODUCT, custom_fields={"weight": "2.25", "web_active": "false"}
    )
    assert orders.on_item("HRDW-1000", product, origin(0)).outbound == []  # no Sage item of that code

    orders.on_item("HRDW-1000", item("SAGE100"), origin(1))
    [command] = orders.on_item("HRDW-1000", product, origin(2)).outbound
    name, body = command.value["command"]
    assert name.endswith("UpdateItem")
    assert body == {"item_code": "HRDW-1000", "columns": {"UDF_WEIGHT": "2.250", "UDF_WEB_ACTIVE": "N"}}


def test_a_product_value_not_of_its_type_is_dead_lettered_and_the_link_still_learnt(
    mappings: Mappings,
) -> None:
    orders = pipeline(mappings)
    orders.on_item("HRDW-1000", item("SAGE100"), origin(0))
    bad = item("SALESFORCE", salesforce_product_id=PRODUCT, custom_fields={"weight": "heavy"})
    step = orders.on_item("HRDW-1000", bad, origin(1))
    assert step.outbound == []
    [(_, error)] = step.dead_letters
    assert "'heavy' is not a number" in str(error)
    assert orders.tables.items["HRDW-1000"]["salesforce_product_id"] == PRODUCT
