"""The canonical schemas: they parse, they stay backward compatible, and real records round-trip."""

from __future__ import annotations

import io
import json
import shutil
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from sagesf import schemas
from sagesf.avro_compat import backward_incompatibilities
from sagesf.schemas import SchemaError, load_schema, release_incompatibilities, schema_json, schema_names

TOP_LEVEL_RECORDS = [
    "Customer",
    "Item",
    "InventoryLevel",
    "SalesOrder",
    "OrderStatusChange",
    "CreditCheckRequest",
    "CreditCheckReply",
    "DeadLetter",
    "SourcePosition",
]


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    """A private copy of schemas/ (with its releases) that a test may break."""
    target = tmp_path / "schemas"
    shutil.copytree(schemas.SCHEMAS_DIR, target)
    return target


def edit_schema(path: Path, change: Any) -> None:
    node = json.loads(path.read_text())
    change(node)
    path.write_text(json.dumps(node, indent=2))


def field_of(node: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in node["fields"] if f["name"] == name)


def test_every_schema_file_is_listed_and_parses() -> None:
    names = schema_names()
    assert set(TOP_LEVEL_RECORDS) | {"Envelope", "Address", "Contact", "SalesOrderLine"} <= set(names)
    for name in names:
        parsed = load_schema(name)
        assert parsed["name"] == f"io.sagesf.canonical.{name}"
        # the registrable text is self-contained: Avro's own parser needs no other file
        assert json.loads(schema_json(name))["namespace"] == "io.sagesf.canonical"


@pytest.mark.parametrize("name", TOP_LEVEL_RECORDS)
def test_every_top_level_record_starts_with_the_envelope(name: str) -> None:
    first = json.loads(schema_json(name))["fields"][0]
    assert first["name"] == "envelope"
    assert [f["name"] for f in first["type"]["fields"]] == [
        "event_id",
        "event_time",
        "source_system",
        "source_record_id",
        "correlation_id",
    ]
    assert first["type"]["fields"][2]["type"]["symbols"] == ["SALESFORCE", "SAGE100", "SAGESF"]


def test_money_is_decimal_and_prices_keep_six_places() -> None:
    order = json.loads(schema_json("SalesOrder"))
    total = field_of(order, "total_amount")["type"]
    assert total == {"type": "bytes", "logicalType": "decimal", "precision": 15, "scale": 2}
    line = field_of(order, "lines")["type"]["items"]
    assert field_of(line, "unit_price")["type"]["scale"] == 6
    assert field_of(line, "unit_price")["type"]["precision"] == 21


def test_named_types_are_defined_once_in_the_expanded_text() -> None:
    text = schema_json("SalesOrder")
    # Address is used for bill_to and ship_to; Avro forbids defining a name twice
    assert text.count('"name": "Address"') == 1
    assert '"io.sagesf.canonical.Address"' in text


def test_every_schema_is_backward_compatible_with_its_last_release() -> None:
    release = schemas.latest_release_dir()
    assert release is not None, "schemas/released/v<N> holds the last released schemas"
    assert set(schema_names(release)) <= set(schema_names())
    assert release_incompatibilities() == {}


@pytest.mark.parametrize("name", ["SalesOrder", "Customer", "CreditCheckReply"])
def test_each_schema_against_its_released_copy(name: str) -> None:
    release = schemas.latest_release_dir()
    assert release is not None
    assert backward_incompatibilities(schema_json(name), schema_json(name, release)) == []


def test_the_release_check_bites_on_a_breaking_change(schema_copy: Path) -> None:
    def add_required_field(node: dict[str, Any]) -> None:
        node["fields"].append({"name": "promised_date", "type": {"type": "int", "logicalType": "date"}})

    edit_schema(schema_copy / "SalesOrderLine.avsc", add_required_field)
    problems = release_incompatibilities(schema_copy)
    # the line itself and the order that embeds it both break (and anything embedding the order)
    assert {"SalesOrderLine", "SalesOrder"} <= set(problems)
    assert "Customer" not in problems  # unrelated schemas stay quiet
    assert problems["SalesOrderLine"] == [
        "SalesOrderLine.promised_date: field is new and has no default, so data written with the old "
        "schema has no value for it (give it a default)"
    ]
    assert problems["SalesOrder"][0].startswith("SalesOrder.lines[].promised_date: ")


def test_the_release_check_bites_on_a_type_change_and_a_removed_schema(schema_copy: Path) -> None:
    edit_schema(
        schema_copy / "InventoryLevel.avsc",
        lambda node: field_of(node, "warehouse_code").update(type="int"),
    )
    (schema_copy / "SourcePosition.avsc").unlink()
    problems = release_incompatibilities(schema_copy)
    assert problems["InventoryLevel"] == [
        "InventoryLevel.warehouse_code: type changed from string to int, which Avro cannot convert "
        "when reading old data"
    ]
    assert problems["SourcePosition"] == ["SourcePosition: schema removed since release v1"]


def test_the_release_check_accepts_an_optional_field(schema_copy: Path) -> None:
    def add_optional(node: dict[str, Any]) -> None:
        node["fields"].append({"name": "website", "type": ["null", "string"], "default": None})

    edit_schema(schema_copy / "Customer.avsc", add_optional)
    assert release_incompatibilities(schema_copy) == {}
    assert "website" in schema_json("Customer", schema_copy)


def money(value: str) -> Decimal:
    return Decimal(value)


def sales_order() -> dict[str, Any]:
    def line(no: int, item: str, qty: str, price: str) -> dict[str, Any]:
        amount = (Decimal(qty) * Decimal(price)).quantize(Decimal("0.01"))
        return {
            "line_no": no,
            "line_key": f"{no:06d}",
            "salesforce_line_id": f"00k5e00000Ab{no:06d}",
            "item_code": item,
            "product_code": item,
            "item_type": "REGULAR",
            "warehouse_code": "000",
            "quantity_ordered": Decimal(qty),
            "quantity_shipped": None,
            "unit_price": Decimal(price),
            "unit_cost": Decimal("1.234567"),
            "extension_amount": amount,
        }

    return {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime(2025, 3, 9, 14, 30, 4, 123000, tzinfo=UTC),
            "source_system": "SALESFORCE",
            "source_record_id": "0065e00000ABCDEFGH",
            "correlation_id": "corr-1",
        },
        "salesforce_opportunity_id": "0065e00000ABCDEFGH",
        "sales_order_no": None,
        "customer": {"salesforce_account_id": "0015e00000XYZ", "ar_division_no": "01", "customer_no": "ABF"},
        "status": "NEW",
        "source_status": "Closed Won",
        "order_date": date(2025, 3, 9),
        "currency_code": "USD",
        "bill_to": {"name": "American Business Futures", "line1": "2131 N. 14th Ave", "country_code": "US"},
        "ship_to": {"code": "2", "city": "Milwaukee", "state": "WI", "postal_code": "53205"},
        "freight_amount": Decimal("12.50"),
        "total_amount": Decimal("1234.56"),
        "lines": [
            line(1, "1001-HON-H252", "2", "125.000000"),
            line(2, "6655", "1.5", "19.990000"),
            line(3, "/C", "1", "0.000001"),
        ],
        "custom_fields": {"UDF_SALESFORCE_ID": "0065e00000ABCDEFGH", "cancel_date": None},
    }


def test_a_sales_order_with_three_lines_round_trips() -> None:
    schema = load_schema("SalesOrder")
    record = sales_order()
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    back: dict[str, Any] = fastavro.schemaless_reader(buffer, schema)  # type: ignore[assignment]

    assert back["envelope"]["event_time"] == record["envelope"]["event_time"]
    assert str(back["envelope"]["event_id"]) == record["envelope"]["event_id"]
    assert back["order_date"] == date(2025, 3, 9)
    assert back["total_amount"] == Decimal("1234.56")
    assert back["freight_amount"] == Decimal("12.50")
    assert [ln["item_code"] for ln in back["lines"]] == ["1001-HON-H252", "6655", "/C"]
    assert [ln["quantity_ordered"] for ln in back["lines"]] == [Decimal(2), Decimal("1.5"), Decimal(1)]
    assert back["lines"][2]["unit_price"] == Decimal("0.000001")  # six places survive
    assert [ln["extension_amount"] for ln in back["lines"]] == [
        Decimal("250.00"),
        Decimal("29.98"),
        Decimal("0.00"),
    ]
    assert back["order_type"] == "STANDARD"  # defaults fill what the writer left out
    assert back["ship_to"]["state"] == "WI"
    assert back["custom_fields"] == {"UDF_SALESFORCE_ID": "0065e00000ABCDEFGH", "cancel_date": None}


def test_amounts_with_more_places_than_the_schema_are_refused() -> None:
    record = sales_order()
    record["total_amount"] = Decimal("1234.567")
    with pytest.raises(ValueError, match=r"[Ss]cale"):
        fastavro.schemaless_writer(io.BytesIO(), load_schema("SalesOrder"), record)


def test_primitive_key_schemas() -> None:
    assert schema_json("string") == '"string"'


def test_unknown_schema_name_lists_the_known_ones() -> None:
    with pytest.raises(SchemaError, match=r"no schema 'SaleOrder' in .*known: .*SalesOrder"):
        schema_json("SaleOrder")


def test_invalid_json_names_file_and_line(schema_copy: Path) -> None:
    path = schema_copy / "Address.avsc"
    path.write_text(path.read_text().replace('"name": "line1",', '"name": "line1"', 1))
    with pytest.raises(SchemaError, match=r"Address\.avsc:\d+:\d+: not valid JSON"):
        schema_json("Customer", schema_copy)


def test_unknown_type_reference_names_the_file(schema_copy: Path) -> None:
    edit_schema(schema_copy / "Contact.avsc", lambda node: field_of(node, "address").update(type="Adress"))
    with pytest.raises(SchemaError, match=r"Contact\.avsc: unknown type 'Adress'"):
        schema_json("Customer", schema_copy)


def test_invalid_avro_in_a_dependency_blames_the_dependency(schema_copy: Path) -> None:
    edit_schema(schema_copy / "OrderStatus.avsc", lambda node: node.update(symbols=["NEW", "NEW"]))
    with pytest.raises(
        SchemaError, match=r"SalesOrder\.avsc: uses OrderStatus, which is invalid: .*OrderStatus\.avsc"
    ):
        schema_json("SalesOrder", schema_copy)


def test_file_must_be_named_after_its_type(schema_copy: Path) -> None:
    shutil.copy(schema_copy / "Address.avsc", schema_copy / "PostalAddress.avsc")
    with pytest.raises(SchemaError, match=r"PostalAddress\.avsc: defines 'Address'"):
        schema_names(schema_copy)


def test_a_type_defined_twice_names_both_files(schema_copy: Path) -> None:
    def define_address_inline(node: dict[str, Any]) -> None:
        address = json.loads((schema_copy / "Address.avsc").read_text())
        field_of(node, "address")["type"] = ["null", address]

    edit_schema(schema_copy / "Contact.avsc", define_address_inline)
    with pytest.raises(
        SchemaError,
        match=r"Contact\.avsc: type io\.sagesf\.canonical\.Address is already defined in .*Address\.avsc",
    ):
        schema_names(schema_copy)


def test_load_schema_is_cached() -> None:
    assert load_schema("SalesOrder") is load_schema("SalesOrder")
