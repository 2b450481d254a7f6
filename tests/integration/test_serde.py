"""sagesf.serde against the sandbox registry over HTTP: canonical records round-trip, the bytes are
Confluent's wire format (confluent-kafka's own serde reads ours and we read theirs), schemas
evolve, and bad input fails the way the pipeline can act on."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from sagesf.errors import Permanent, Retriable
from sagesf.schemas import schema_json
from sagesf.serde import AvroSerde, SchemaRegistrationError, SerdeError, topic_subject
from sandbox.processes import free_port
from sandbox.samples import sales_order


@pytest.fixture
def client(schema_registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry_url})


def fresh(client: SchemaRegistryClient) -> SchemaRegistryClient:
    """A client with empty caches: what it knows comes over HTTP from the registry."""
    url = client.config()["url"]  # type: ignore[no-untyped-call]  # untyped in confluent-kafka
    return SchemaRegistryClient({"url": url})


def new_topic_name() -> str:
    return f"test.salesorder.{uuid.uuid4().hex[:10]}"


def test_sales_order_round_trips_through_the_registry(client: SchemaRegistryClient) -> None:
    topic = new_topic_name()
    order = sales_order()
    data = AvroSerde.canonical(client, "SalesOrder", topic, auto_register=True).encode(order)

    registered = fresh(client).get_latest_version(f"{topic}-value")
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == registered.schema_id
    # a consumer elsewhere, with nothing cached and without registering anything
    reader = AvroSerde.canonical(fresh(client), "SalesOrder", topic, auto_register=False)
    assert reader.decode(data) == order
    assert reader.decode(None) is None  # tombstones pass through

    keys = AvroSerde.string_key(client, topic, auto_register=True)
    key = keys.encode("006Dn000004WxYzIAK")
    assert AvroSerde.string_key(fresh(client), topic, auto_register=False).decode(key) == "006Dn000004WxYzIAK"
    assert keys.subject == topic_subject(topic, is_key=True) == f"{topic}-key"


def test_confluent_serde_reads_our_bytes_and_we_read_theirs(client: SchemaRegistryClient) -> None:
    topic = new_topic_name()
    ctx = SerializationContext(topic, MessageField.VALUE)
    order = sales_order()

    ours = AvroSerde.canonical(client, "SalesOrder", topic, auto_register=True).encode(order)
    assert AvroDeserializer(fresh(client))(ours, ctx) == order

    theirs = AvroSerializer(fresh(client), schema_json("SalesOrder"))(order, ctx)
    assert theirs is not None
    assert (
        AvroSerde.canonical(fresh(client), "SalesOrder", topic, auto_register=False).decode(theirs) == order
    )
    # same registry, subject and schema: the very same bytes
    assert theirs == ours


def test_without_auto_register_a_missing_schema_fails_with_what_to_do(client: SchemaRegistryClient) -> None:
    topic = new_topic_name()
    serde = AvroSerde.canonical(client, "SalesOrder", topic, auto_register=False)
    with pytest.raises(SchemaRegistrationError) as missing:
        serde.encode(sales_order())
    message = str(missing.value)
    assert f"'{topic}-value'" in message
    assert "sagesf schemas register" in message
    assert fresh(client).get_subjects(subject_prefix=topic) == []  # nothing was registered behind our back

    # once registered (as `sagesf schemas register` does), the lookup finds the same id
    schema_id = client.register_schema(f"{topic}-value", Schema(schema_json("SalesOrder"), "AVRO"))
    lookup = AvroSerde.canonical(fresh(client), "SalesOrder", topic, auto_register=False)
    assert lookup.schema_id == schema_id
    assert int.from_bytes(lookup.encode(sales_order())[1:5], "big") == schema_id


def evolved_sales_order_schema() -> str:
    """SalesOrder plus an optional field with a default: a BACKWARD-compatible change."""
    schema = json.loads(schema_json("SalesOrder"))
    schema["fields"].append(
        {"name": "promised_date", "type": ["null", {"type": "int", "logicalType": "date"}], "default": None}
    )
    return json.dumps(schema)


def test_evolved_reader_reads_old_bytes_and_old_reader_reads_new(client: SchemaRegistryClient) -> None:
    topic = new_topic_name()
    order = sales_order()
    old_serde = AvroSerde.canonical(client, "SalesOrder", topic, auto_register=True)
    new_serde = AvroSerde(client, evolved_sales_order_schema(), f"{topic}-value", auto_register=True)
    old_bytes = old_serde.encode(order)
    new_bytes = new_serde.encode({**order, "promised_date": date(2026, 4, 1)})
    assert new_serde.schema_id > old_serde.schema_id  # the registry accepted the evolution

    reader = AvroSerde(fresh(client), evolved_sales_order_schema(), f"{topic}-value", auto_register=False)
    assert reader.decode(old_bytes) == {**order, "promised_date": None}  # the default fills the gap
    assert reader.decode(new_bytes) == {**order, "promised_date": date(2026, 4, 1)}
    old_reader = AvroSerde.canonical(fresh(client), "SalesOrder", topic, auto_register=False)
    assert old_reader.decode(new_bytes) == order  # the new field is skipped


def test_malformed_bytes_raise_serde_error(client: SchemaRegistryClient) -> None:
    topic = new_topic_name()
    serde = AvroSerde.canonical(client, "SalesOrder", topic, auto_register=True)
    good = serde.encode(sales_order())
    unknown_id = b"\x00" + (2**31 - 7).to_bytes(4, "big") + good[5:]
    cases = {
        "empty": b"",
        "shorter than the header": b"\x00\x00\x01",
        "no magic byte": b"\x01" + good[1:],
        "plain Avro without framing": good[5:],
        "unknown schema id": unknown_id,
        "truncated": good[:-4],
        "trailing bytes": good + b"\x00\x00",
        "garbage body": good[:5] + b"\xff" * 40,
    }
    for case, data in cases.items():
        with pytest.raises(SerdeError) as bad:
            serde.decode(data)
        assert isinstance(bad.value, Permanent), case  # the consumer loop dead-letters Permanent
        assert isinstance(bad.value, ValueError), case
    with pytest.raises(SerdeError, match=str(2**31 - 7)):
        serde.decode(unknown_id)


def test_a_record_that_does_not_fit_raises_serde_error(client: SchemaRegistryClient) -> None:
    serde = AvroSerde.canonical(client, "SalesOrder", new_topic_name(), auto_register=True)
    order = sales_order()
    del order["lines"][1]["unit_price"]
    with pytest.raises(SerdeError, match="does not fit"):
        serde.encode(order)


def test_an_unreachable_registry_is_retriable(client: SchemaRegistryClient) -> None:
    topic = new_topic_name()
    data = AvroSerde.canonical(client, "SalesOrder", topic, auto_register=True).encode(sales_order())
    gone = SchemaRegistryClient({"url": f"http://127.0.0.1:{free_port()}", "max.retries": 0})
    with pytest.raises(Retriable):
        AvroSerde.canonical(gone, "SalesOrder", topic, auto_register=False).decode(data)
    with pytest.raises(Retriable):
        AvroSerde.canonical(gone, "SalesOrder", topic, auto_register=False).encode(sales_order())
