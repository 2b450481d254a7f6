"""The serde's own Avro form of decimals is byte for byte what fastavro writes.

`AvroSerde.encode` hands fastavro the decimal fields of a record already as bytes
(`sagesf.serde.decimal_bytes`, faster than fastavro's own conversion); these tests compare both,
field by field and as whole Confluent-framed messages.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from sagesf.errors import Permanent
from sagesf.schemas import load_schema
from sagesf.serde import AvroSerde, SerdeError, decimal_bytes, decimal_fields

SCHEMA = load_schema("InventoryLevel")
SCHEMA_ID = 7
quantities = st.decimals(
    min_value=-(10**14), max_value=10**14, places=6, allow_nan=False, allow_infinity=False
)


class OneIdRegistry:
    """Registers every schema under the same id: all `AvroSerde.encode` asks of a registry."""

    def config(self) -> dict[str, str]:
        return {"url": "http://registry.invalid"}

    def register_schema(self, subject: str, schema: Schema) -> int:
        return SCHEMA_ID


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


def fastavro_bytes(record: dict[str, object]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, SCHEMA, record)
    return out.getvalue()


def serde() -> AvroSerde:
    registry = cast(SchemaRegistryClient, OneIdRegistry())
    return AvroSerde.canonical(registry, "InventoryLevel", "inventory.v1", auto_register=True)


@given(quantities)
def test_decimal_bytes_are_what_fastavro_writes(number):
    fields = decimal_fields(SCHEMA)
    assert set(fields.values()) == {6}
    assert len(fields) == 6  # five quantities and the average cost
    values = {name: number for name in fields}
    ours = {name: decimal_bytes(number, scale) for name, scale in fields.items()}
    assert fastavro_bytes(level(**ours)) == fastavro_bytes(level(**values))
    decoded = schemaless_reader(io.BytesIO(fastavro_bytes(level(**ours))), SCHEMA)
    assert isinstance(decoded, dict)
    assert decoded["quantity_on_hand"] == number


@given(quantities, quantities)
def test_the_serde_encodes_decimals_as_fastavro_does(on_hand, cost):
    fields = decimal_fields(SCHEMA)
    values: dict[str, Any] = {name: on_hand for name in fields}
    values["average_cost"] = cost
    record = level(**values)
    codec = serde()
    encoded = codec.encode(record)
    assert encoded[:5] == bytes([0, 0, 0, 0, SCHEMA_ID])  # magic byte, schema id
    assert encoded[5:] == fastavro_bytes(record)
    assert record["quantity_on_hand"] == on_hand  # the caller's record is left as it was
    decoded = codec.decode(encoded)
    assert (decoded["quantity_on_hand"], decoded["average_cost"]) == (on_hand, cost)


def test_more_decimals_than_the_schema_is_an_error():
    with pytest.raises(Permanent):
        decimal_bytes(Decimal("1.0000001"), 6)
    assert decimal_bytes(Decimal("1.5"), 6) == decimal_bytes(Decimal("1.500000"), 6)
    fields = decimal_fields(SCHEMA)
    with pytest.raises(SerdeError):
        serde().encode(level(**{name: Decimal("1.0000001") for name in fields}))


def test_a_decimal_avro_cannot_hold_is_an_error():
    for number in (Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(SerdeError):
            decimal_bytes(number, 6)
