"""The sandbox registry honours Confluent Schema Registry's API contract.

Two sides: confluent-kafka's unmodified `SchemaRegistryClient` (and its Avro serde) over HTTP,
which is what our code and other teams' consumers use; and raw HTTP, pinning the JSON shapes,
content type and error codes that Confluent documents, which other clients (Kafka Connect, Java
serdes) rely on. Plus durability: the registry's state lives in its Kafka topic, in Confluent's
record layout, and survives a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
import requests
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from sandbox.processes import free_port
from sandbox.registry import RegistryProcess
from sandbox.registry.server import KafkaStore, Registry, RegistryError
from tests.kit.kafka import read_topic

CT = "application/vnd.schemaregistry.v1+json"


def record(*fields: dict[str, Any], name: str = "Order") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "io.sagesf.test", "fields": list(fields)})


ID = {"name": "order_id", "type": "string"}
AMOUNT = {"name": "amount", "type": "long"}
NOTE_OPTIONAL = {"name": "note", "type": ["null", "string"], "default": None}
NOTE_REQUIRED = {"name": "note", "type": "string"}

V1 = record(ID, AMOUNT)
V2_COMPATIBLE = record(ID, AMOUNT, NOTE_OPTIONAL)  # new optional field with a default
V2_INCOMPATIBLE = record(ID, AMOUNT, NOTE_REQUIRED)  # new field, no default: old data lacks it
V2_DROPS_AMOUNT = record(ID)  # BACKWARD-compatible, not FORWARD-compatible


def subject() -> str:
    return f"test.{uuid.uuid4().hex[:10]}-value"


@pytest.fixture
def client(schema_registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry_url})


def fresh_client(client: SchemaRegistryClient) -> SchemaRegistryClient:
    """A client with empty caches: what it knows comes over HTTP from the registry."""
    url = client.config()["url"]  # type: ignore[no-untyped-call]  # untyped in confluent-kafka
    return SchemaRegistryClient({"url": url})


def schema_doc(text: str | None) -> Any:
    assert text is not None
    return json.loads(text)


def _error(exc_info: pytest.ExceptionInfo[SchemaRegistryError]) -> tuple[int, int]:
    return exc_info.value.http_status_code, exc_info.value.error_code


# --- through confluent-kafka's SchemaRegistryClient -------------------------------------------


def test_register_is_idempotent_and_ids_are_global(client: SchemaRegistryClient) -> None:
    orders, archive = subject(), subject()
    first = client.register_schema(orders, Schema(V1, "AVRO"))
    # a fresh client has no cache: the answer comes from the registry, not the client
    fresh = fresh_client(client)
    assert fresh.register_schema(orders, Schema(V1, "AVRO")) == first
    assert fresh.register_schema(archive, Schema(V1, "AVRO")) == first
    assert fresh.get_versions(orders) == [1]
    assert fresh.get_versions(archive) == [1]
    second = fresh.register_schema(orders, Schema(V2_COMPATIBLE, "AVRO"))
    assert second > first
    assert fresh.get_versions(orders) == [1, 2]
    assert {orders, archive} <= set(fresh.get_subjects())


def test_get_by_id_latest_and_versions(client: SchemaRegistryClient) -> None:
    subj = subject()
    first = client.register_schema(subj, Schema(V1, "AVRO"))
    second = client.register_schema(subj, Schema(V2_COMPATIBLE, "AVRO"))
    fresh = fresh_client(client)

    got = fresh.get_schema(first)
    assert got.schema_type == "AVRO"
    assert schema_doc(got.schema_str) == json.loads(V1)

    latest = fresh.get_latest_version(subj)
    assert (latest.subject, latest.version, latest.schema_id) == (subj, 2, second)
    assert schema_doc(latest.schema.schema_str) == json.loads(V2_COMPATIBLE)

    v1 = fresh.get_version(subj, 1)
    assert (v1.version, v1.schema_id) == (1, first)
    assert (subj, 2) in [(v.subject, v.version) for v in fresh.get_schema_versions(second)]


def test_lookup_finds_registered_schema_and_refuses_others(client: SchemaRegistryClient) -> None:
    subj = subject()
    schema_id = client.register_schema(subj, Schema(V1, "AVRO"))
    fresh = fresh_client(client)
    # whitespace does not make a schema different
    found = fresh.lookup_schema(subj, Schema(json.dumps(json.loads(V1), indent=4), "AVRO"))
    assert (found.subject, found.version, found.schema_id) == (subj, 1, schema_id)

    with pytest.raises(SchemaRegistryError) as not_there:
        fresh.lookup_schema(subj, Schema(V2_COMPATIBLE, "AVRO"))
    assert _error(not_there) == (404, 40403)
    with pytest.raises(SchemaRegistryError) as no_subject:
        fresh.lookup_schema(subject(), Schema(V1, "AVRO"))
    assert _error(no_subject) == (404, 40401)


def test_compatibility_check_tells_compatible_from_incompatible(client: SchemaRegistryClient) -> None:
    subj = subject()
    client.register_schema(subj, Schema(V1, "AVRO"))
    assert client.test_compatibility(subj, Schema(V2_COMPATIBLE, "AVRO")) is True
    assert client.test_compatibility(subj, Schema(V2_INCOMPATIBLE, "AVRO")) is False
    assert client.test_compatibility(subj, Schema(V2_INCOMPATIBLE, "AVRO"), version=1) is False
    # nothing registered yet: anything is compatible with "latest"
    assert client.test_compatibility(subject(), Schema(V2_INCOMPATIBLE, "AVRO")) is True


def test_incompatible_registration_is_refused_with_409(client: SchemaRegistryClient) -> None:
    subj = subject()
    client.register_schema(subj, Schema(V1, "AVRO"))
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subj, Schema(V2_INCOMPATIBLE, "AVRO"))
    assert _error(refused) == (409, 409)
    assert "note" in refused.value.error_message
    assert client.get_versions(subj) == [1]  # nothing was stored


def test_compatibility_level_set_and_get(client: SchemaRegistryClient) -> None:
    subj = subject()
    client.register_schema(subj, Schema(V1, "AVRO"))
    assert client.get_compatibility() == "BACKWARD"
    client.set_compatibility(subj, "NONE")
    assert client.get_compatibility(subj) == "NONE"
    assert client.get_compatibility() == "BACKWARD"  # the global level did not move
    # with NONE the change that BACKWARD refused is accepted
    assert client.register_schema(subj, Schema(V2_INCOMPATIBLE, "AVRO")) > 0
    assert client.get_versions(subj) == [1, 2]


@pytest.mark.parametrize(
    ("level", "add_required_field", "drop_required_field"),
    [
        ("BACKWARD", False, True),
        ("FORWARD", True, False),
        ("FULL", False, False),
        ("NONE", True, True),
    ],
)
def test_levels_check_the_right_direction(
    client: SchemaRegistryClient, level: str, add_required_field: bool, drop_required_field: bool
) -> None:
    subj = subject()
    client.register_schema(subj, Schema(V1, "AVRO"))
    client.set_compatibility(subj, level)
    assert client.test_compatibility(subj, Schema(V2_INCOMPATIBLE, "AVRO")) is add_required_field
    assert client.test_compatibility(subj, Schema(V2_DROPS_AMOUNT, "AVRO")) is drop_required_field


def test_transitive_level_checks_every_version(client: SchemaRegistryClient) -> None:
    v3 = record(ID, AMOUNT, NOTE_REQUIRED)  # reads v2 data (note present), not v1 data
    for level, accepted in (("BACKWARD", True), ("BACKWARD_TRANSITIVE", False)):
        subj = subject()
        client.set_compatibility(subj, level)
        client.register_schema(subj, Schema(V1, "AVRO"))
        client.register_schema(subj, Schema(record(ID, AMOUNT, {**NOTE_REQUIRED, "default": ""}), "AVRO"))
        assert client.test_compatibility_all_versions(subj, Schema(v3, "AVRO")) is accepted, level


def test_confluent_avro_serde_round_trips_through_the_registry(client: SchemaRegistryClient) -> None:
    """The serializer's default subject strategy asks /associations first; 404 must fall back to
    `<topic>-value`, so this also proves the associations probe is answered the Confluent way."""
    topic = f"test.orders.{uuid.uuid4().hex[:8]}"
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = AvroSerializer(client, V1)({"order_id": "SO-1", "amount": 1250}, ctx)
    assert data is not None
    assert data[0] == 0
    assert client.get_versions(f"{topic}-value") == [1]
    fresh = fresh_client(client)
    assert AvroDeserializer(fresh)(data, ctx) == {"order_id": "SO-1", "amount": 1250}


# --- raw HTTP: shapes and error bodies as Confluent documents them ----------------------------


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    response = requests.request(
        method, url, data=None if body is None else json.dumps(body), headers={"Content-Type": CT}, timeout=10
    )
    assert response.headers["Content-Type"] == CT
    return response.status_code, response.json()


def assert_error(answer: tuple[int, Any], status: int, error_code: int) -> str:
    got_status, body = answer
    assert got_status == status, body
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == error_code
    message = body["message"]
    assert isinstance(message, str)
    assert message
    return message


def test_http_shapes_of_successful_answers(schema_registry_url: str) -> None:
    base, subj = schema_registry_url, subject()
    name = f"Shape_{uuid.uuid4().hex[:8]}"  # a schema, so an id, that no other test shares
    v1, v2, v2_bad = (
        record(ID, AMOUNT, name=name),
        record(ID, AMOUNT, NOTE_OPTIONAL, name=name),
        record(ID, AMOUNT, NOTE_REQUIRED, name=name),
    )

    status, registered = call("POST", f"{base}/subjects/{subj}/versions", {"schema": v1})
    assert status == 200
    assert set(registered) == {"id"}
    assert isinstance(registered["id"], int)
    schema_id = registered["id"]
    # schemaType may be sent; AVRO is the default and gives the same id
    again = call("POST", f"{base}/subjects/{subj}/versions", {"schema": v1, "schemaType": "AVRO"})
    assert again == (200, registered)

    status, by_id = call("GET", f"{base}/schemas/ids/{schema_id}")
    assert status == 200
    assert set(by_id) == {"schema"}  # schemaType omitted for AVRO, as Confluent does
    assert json.loads(by_id["schema"]) == json.loads(v1)

    assert call("GET", f"{base}/schemas/ids/{schema_id}/versions") == (200, [{"subject": subj, "version": 1}])
    status, subjects = call("GET", f"{base}/subjects")
    assert status == 200
    assert subj in subjects
    assert all(isinstance(s, str) for s in subjects)
    assert call("GET", f"{base}/subjects/{subj}/versions") == (200, [1])

    expected = {"subject": subj, "version": 1, "id": schema_id, "schema": by_id["schema"]}
    assert call("GET", f"{base}/subjects/{subj}/versions/latest") == (200, expected)
    assert call("GET", f"{base}/subjects/{subj}/versions/1") == (200, expected)
    assert call("POST", f"{base}/subjects/{subj}", {"schema": v1}) == (200, expected)

    compatible = call("POST", f"{base}/compatibility/subjects/{subj}/versions/latest", {"schema": v2})
    assert compatible == (200, {"is_compatible": True})
    status, verbose = call(
        "POST",
        f"{base}/compatibility/subjects/{subj}/versions/latest?verbose=true",
        {"schema": v2_bad},
    )
    assert status == 200
    assert verbose["is_compatible"] is False
    assert all(isinstance(m, str) for m in verbose["messages"])
    assert any("note" in m for m in verbose["messages"])

    assert call("GET", f"{base}/config") == (200, {"compatibilityLevel": "BACKWARD"})
    assert call("PUT", f"{base}/config/{subj}", {"compatibility": "full"}) == (200, {"compatibility": "FULL"})
    assert call("GET", f"{base}/config/{subj}") == (200, {"compatibilityLevel": "FULL"})


def test_http_error_codes_and_bodies(schema_registry_url: str) -> None:
    base, subj = schema_registry_url, subject()
    assert call("POST", f"{base}/subjects/{subj}/versions", {"schema": V1})[0] == 200

    message = assert_error(call("GET", f"{base}/subjects/{subject()}/versions"), 404, 40401)
    assert "not found" in message
    assert_error(call("GET", f"{base}/subjects/{subject()}/versions/latest"), 404, 40401)
    assert_error(call("GET", f"{base}/subjects/{subj}/versions/99"), 404, 40402)
    assert_error(call("GET", f"{base}/schemas/ids/987654"), 404, 40403)
    assert_error(call("POST", f"{base}/subjects/{subj}", {"schema": V2_COMPATIBLE}), 404, 40403)
    assert_error(call("POST", f"{base}/subjects/{subject()}", {"schema": V1}), 404, 40401)
    assert_error(call("POST", f"{base}/subjects/{subj}/versions", {"schema": V2_INCOMPATIBLE}), 409, 409)
    assert_error(call("POST", f"{base}/subjects/{subj}/versions", {"schema": "{not json"}), 422, 42201)
    assert_error(call("POST", f"{base}/subjects/{subj}/versions", {"schema": '{"type": "nope"}'}), 422, 42201)
    assert_error(call("GET", f"{base}/subjects/{subj}/versions/abc"), 422, 42202)
    assert_error(call("GET", f"{base}/subjects/{subj}/versions/0"), 422, 42202)
    assert_error(
        call("POST", f"{base}/compatibility/subjects/{subj}/versions/7", {"schema": V2_COMPATIBLE}),
        404,
        40402,
    )
    assert_error(call("PUT", f"{base}/config/{subj}", {"compatibility": "SIDEWAYS"}), 422, 42203)
    # a subject without its own level: 40408 unless the caller asks for the global default
    assert_error(call("GET", f"{base}/config/{subj}"), 404, 40408)
    assert call("GET", f"{base}/config/{subj}?defaultToGlobal=true") == (
        200,
        {"compatibilityLevel": "BACKWARD"},
    )
    # the associations API newer clients probe: 404 with a Confluent body, so they fall back
    assert_error(call("GET", f"{base}/associations/resources/-/orders?resourceType=topic"), 404, 404)


def test_delete_version_soft_then_permanent(schema_registry_url: str) -> None:
    base, subj = schema_registry_url, subject()
    schema_id = call("POST", f"{base}/subjects/{subj}/versions", {"schema": V1})[1]["id"]
    call("POST", f"{base}/subjects/{subj}/versions", {"schema": V2_COMPATIBLE})

    assert_error(call("DELETE", f"{base}/subjects/{subj}/versions/1?permanent=true"), 404, 40407)
    assert call("DELETE", f"{base}/subjects/{subj}/versions/1") == (200, 1)
    assert call("GET", f"{base}/subjects/{subj}/versions") == (200, [2])
    assert call("GET", f"{base}/subjects/{subj}/versions?deleted=true") == (200, [1, 2])
    # old data stays readable: the id still resolves after a soft delete
    assert call("GET", f"{base}/schemas/ids/{schema_id}")[0] == 200
    assert call("DELETE", f"{base}/subjects/{subj}/versions/1?permanent=true") == (200, 1)
    assert call("GET", f"{base}/subjects/{subj}/versions?deleted=true") == (200, [2])

    assert call("DELETE", f"{base}/subjects/{subj}") == (200, [2])
    assert_error(call("GET", f"{base}/subjects/{subj}/versions"), 404, 40401)


def test_kafka_failure_answers_50001(kafka_bootstrap: str) -> None:
    """When Kafka does not acknowledge a write, the registry says so and remembers nothing."""
    store = KafkaStore("127.0.0.1:1", "_schemas-unreachable", timeout=1.0)  # nothing listens on port 1
    registry = Registry(store)
    with pytest.raises(RegistryError) as failed:
        asyncio.run(registry.register("orders-value", V1))
    assert (failed.value.status, failed.value.error_code) == (500, 50001)
    assert registry.state.versions == {}


# --- durability -------------------------------------------------------------------------------


def _topic_records(bootstrap: str, topic: str) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    got: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for record in read_topic(bootstrap, topic):
        assert record.key is not None
        got.append((json.loads(record.key), json.loads(record.value) if record.value is not None else None))
    return got


def test_state_survives_a_restart(kafka_bootstrap: str, tmp_path: Any) -> None:
    topic = f"_schemas-{uuid.uuid4().hex[:10]}"
    orders, customers = subject(), subject()
    first = RegistryProcess(tmp_path / "a", port=free_port(), topic=topic)
    url = first.start(kafka_bootstrap)
    try:
        c = SchemaRegistryClient({"url": url})
        id1 = c.register_schema(orders, Schema(V1, "AVRO"))
        id2 = c.register_schema(orders, Schema(V2_COMPATIBLE, "AVRO"))
        c.register_schema(customers, Schema(V1, "AVRO"))
        c.set_compatibility(customers, "NONE")
    finally:
        assert first.stop()

    # the topic holds Confluent's record layout
    records = _topic_records(kafka_bootstrap, topic)
    assert (
        {"keytype": "SCHEMA", "subject": orders, "version": 2, "magic": 1},
        {
            "subject": orders,
            "version": 2,
            "id": id2,
            "schema": json.dumps(json.loads(V2_COMPATIBLE), separators=(",", ":")),
            "deleted": False,
        },
    ) in records
    assert (
        {"keytype": "CONFIG", "subject": customers, "magic": 0},
        {"compatibilityLevel": "NONE"},
    ) in records

    second = RegistryProcess(tmp_path / "b", port=free_port(), topic=topic)
    started = time.monotonic()
    url = second.start(kafka_bootstrap)
    startup = time.monotonic() - started
    try:
        c = SchemaRegistryClient({"url": url})
        assert schema_doc(c.get_schema(id1).schema_str) == json.loads(V1)
        latest = c.get_latest_version(orders)
        assert (latest.version, latest.schema_id) == (2, id2)
        assert c.get_versions(customers) == [1]
        assert c.get_compatibility(customers) == "NONE"
        assert c.register_schema(orders, Schema(V2_COMPATIBLE, "AVRO")) == id2  # still known
        id3 = c.register_schema(customers, Schema(record(ID, name="Other"), "AVRO"))
        assert id3 > max(id1, id2)
    finally:
        assert second.stop()
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.delete_topics([topic])[topic].result(timeout=30)
    assert startup < 10, f"registry took {startup:.1f} s to start"
