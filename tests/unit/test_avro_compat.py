"""sagesf.avro_compat: the verdicts follow Avro's rules and each problem names its place and reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sagesf.avro_compat import InvalidSchemaError, backward_incompatibilities, incompatibilities

DEC_15_2 = {"type": "bytes", "logicalType": "decimal", "precision": 15, "scale": 2}


def record(*fields: dict[str, Any], name: str = "Order", **extra: Any) -> str:
    return json.dumps(
        {"type": "record", "name": name, "namespace": "io.test", "fields": list(fields), **extra}
    )


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


BASE = record(field("id", "string"), field("qty", "int"), field("total", DEC_15_2))


def test_identical_schemas_are_compatible() -> None:
    assert incompatibilities(BASE, BASE) == []


def test_added_optional_field_with_default_is_compatible() -> None:
    new = record(
        field("id", "string"),
        field("qty", "int"),
        field("total", DEC_15_2),
        field("note", ["null", "string"], default=None),
    )
    assert backward_incompatibilities(new, BASE) == []


def test_added_required_field_without_default_is_named() -> None:
    new = record(field("id", "string"), field("qty", "int"), field("total", DEC_15_2), field("po", "string"))
    problems = backward_incompatibilities(new, BASE)
    assert len(problems) == 1
    assert problems[0].startswith("Order.po: ")
    assert "no default" in problems[0]


def test_removed_field_is_backward_compatible_but_not_forward() -> None:
    new = record(field("id", "string"), field("total", DEC_15_2))
    assert backward_incompatibilities(new, BASE) == []
    # the other direction: old readers meet data without `qty`, which has no default there
    forward = incompatibilities(reader_schema=BASE, writer_schema=new)
    assert len(forward) == 1
    assert forward[0].startswith("Order.qty: ")


def test_type_change_int_to_string_is_incompatible() -> None:
    new = record(field("id", "string"), field("qty", "string"), field("total", DEC_15_2))
    problems = backward_incompatibilities(new, BASE)
    assert problems == [
        "Order.qty: type changed from int to string, which Avro cannot convert when reading old data"
    ]


def test_int_to_long_is_an_allowed_promotion() -> None:
    new = record(field("id", "string"), field("qty", "long"), field("total", DEC_15_2))
    assert backward_incompatibilities(new, BASE) == []


def enum_schema(*symbols: str, **extra: Any) -> str:
    status = {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}
    return record(field("status", status))


def test_enum_symbol_removal_is_incompatible_and_names_the_symbol() -> None:
    problems = backward_incompatibilities(enum_schema("OPEN", "HOLD"), enum_schema("OPEN", "HOLD", "CLOSED"))
    assert len(problems) == 1
    assert problems[0].startswith("Order.status: ")
    assert "CLOSED" in problems[0]


def test_enum_symbol_removal_is_allowed_when_the_enum_has_a_default() -> None:
    new = enum_schema("OPEN", "HOLD", "UNKNOWN", default="UNKNOWN")
    assert backward_incompatibilities(new, enum_schema("OPEN", "HOLD", "CLOSED")) == []


def test_enum_symbol_added_is_backward_compatible() -> None:
    assert (
        backward_incompatibilities(enum_schema("OPEN", "HOLD", "CLOSED"), enum_schema("OPEN", "HOLD")) == []
    )


def test_optional_becoming_required_names_the_missing_null_branch() -> None:
    old = record(field("po", ["null", "string"], default=None))
    new = record(field("po", "string"))
    problems = backward_incompatibilities(new, old)
    assert len(problems) == 1
    assert problems[0].startswith("Order.po: written data may hold null here")


def test_required_becoming_optional_is_compatible() -> None:
    old = record(field("po", "string"))
    new = record(field("po", ["null", "string"], default=None))
    assert backward_incompatibilities(new, old) == []


def test_problem_inside_nested_array_of_records_inside_a_union_is_located() -> None:
    def lines(qty_type: str) -> dict[str, Any]:
        line = {"type": "record", "name": "Line", "fields": [field("sku", "string"), field("qty", qty_type)]}
        return field("lines", ["null", {"type": "array", "items": line}], default=None)

    problems = backward_incompatibilities(record(lines("string")), record(lines("int")))
    assert problems == [
        "Order.lines[].qty: type changed from int to string, which Avro cannot convert when reading old data"
    ]


def test_a_shared_type_is_reported_at_every_place_it_is_used() -> None:
    def order(city_type: str) -> str:
        address = {"type": "record", "name": "Address", "fields": [field("city", city_type)]}
        return record(field("bill_to", address), field("ship_to", "Address"))

    problems = backward_incompatibilities(order("int"), order("string"))
    assert [p.split(":")[0] for p in problems] == ["Order.bill_to.city", "Order.ship_to.city"]


def test_map_value_type_change_is_located() -> None:
    old = record(field("udf", {"type": "map", "values": "string"}))
    new = record(field("udf", {"type": "map", "values": "int"}))
    problems = backward_incompatibilities(new, old)
    assert len(problems) == 1
    assert problems[0].startswith("Order.udf{}: ")


def test_renamed_record_is_incompatible_unless_aliased() -> None:
    old = record(field("id", "string"), name="Order")
    assert backward_incompatibilities(record(field("id", "string"), name="SalesOrder"), old)
    aliased = record(field("id", "string"), name="SalesOrder", aliases=["io.test.Order"])
    assert backward_incompatibilities(aliased, old) == []


def test_renamed_field_with_alias_is_compatible() -> None:
    old = record(field("qty", "int"))
    assert backward_incompatibilities(record(field("quantity", "int")), old)
    assert backward_incompatibilities(record(field("quantity", "int", aliases=["qty"])), old) == []


def test_decimal_scale_change_is_reported_though_avro_allows_it() -> None:
    new_total = {**DEC_15_2, "scale": 4}
    new = record(field("id", "string"), field("qty", "int"), field("total", new_total))
    problems = backward_incompatibilities(new, BASE)
    assert len(problems) == 1
    assert problems[0].startswith("Order.total: decimal scale changed from 2 to 4")


def test_decimal_precision_may_grow_but_not_shrink() -> None:
    def with_precision(p: int) -> str:
        return record(field("total", ["null", {**DEC_15_2, "precision": p}], default=None))

    assert backward_incompatibilities(with_precision(17), with_precision(15)) == []
    problems = backward_incompatibilities(with_precision(13), with_precision(15))
    assert len(problems) == 1
    assert "precision lowered from 15 to 13" in problems[0]


def test_timestamp_unit_change_is_reported() -> None:
    old = record(field("at", {"type": "long", "logicalType": "timestamp-millis"}))
    new = record(field("at", {"type": "long", "logicalType": "timestamp-micros"}))
    problems = backward_incompatibilities(new, old)
    assert len(problems) == 1
    assert problems[0].startswith("Order.at: ")


def test_recursive_schema_does_not_loop() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [field("v", "int"), field("next", ["null", "Node"], default=None)],
    }
    changed = json.loads(json.dumps(node))
    changed["fields"][0]["type"] = "string"
    problems = backward_incompatibilities(json.dumps(changed), json.dumps(node))
    assert len(problems) == 1
    assert problems[0].startswith("Node.v: ")


def test_top_level_primitive_schemas() -> None:
    assert backward_incompatibilities('"string"', '"string"') == []
    assert backward_incompatibilities('"long"', '"int"') == []
    problems = backward_incompatibilities('"int"', '"string"')
    assert len(problems) == 1
    assert problems[0].startswith("(top level): ")


@pytest.mark.parametrize(
    ("reader", "writer", "side"), [("{", BASE, "reader"), (BASE, '{"type": "recrod"}', "writer")]
)
def test_invalid_schema_says_which_side(reader: str, writer: str, side: str) -> None:
    with pytest.raises(InvalidSchemaError, match=f"^{side} schema"):
        incompatibilities(reader, writer)
