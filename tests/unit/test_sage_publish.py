"""The publisher's own Avro form of decimals is byte for byte what fastavro writes."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from connectors.sage100.publish import decimal_bytes, decimal_fields
from sagesf.errors import Permanent
from sagesf.schemas import load_schema

SCHEMA = load_schema("InventoryLevel")


def level(**quantities: object) -> dict[str, object]:
    return {
        "envelope": {
            "event_id": "3d57a431-cba8-8e11-b7d5-8aea86070ad8",
            "event_time": datetime(2024, 5, 1, 12, tzinfo=UTC),
            "source_system": "SAGE100",
            "source_record_id": "A-000",
            "correlation_id": None,
        },
        "item_code": "A",
        "warehouse_code": "000",
        **quantities,
    }


def encode(record: dict[str, object]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, SCHEMA, record)
    return out.getvalue()


@given(st.decimals(min_value=-(10**14), max_value=10**14, places=6, allow_nan=False, allow_infinity=False))
def test_decimal_bytes_are_what_fastavro_writes(number):
    fields = decimal_fields(SCHEMA)
    assert set(fields.values()) == {6}
    assert len(fields) == 6  # five quantities and the average cost
    values = {name: number for name in fields}
    ours = {name: decimal_bytes(number, scale) for name, scale in fields.items()}
    assert encode(level(**ours)) == encode(level(**values))
    decoded = schemaless_reader(io.BytesIO(encode(level(**ours))), SCHEMA)
    assert isinstance(decoded, dict)
    assert decoded["quantity_on_hand"] == number


def test_more_decimals_than_the_schema_is_an_error():
    with pytest.raises(Permanent):
        decimal_bytes(Decimal("1.0000001"), 6)
    assert decimal_bytes(Decimal("1.5"), 6) == decimal_bytes(Decimal("1.500000"), 6)
