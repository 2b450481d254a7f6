"""The Sage 100 source end to end: sandbox database over ODBC -> Avro -> the real Kafka broker.

The source runs first as the real process (`python -m connectors.sage100.source --once`) and
publishes the demo company; Sage users then make changes (and the integration user one more);
a new source instance, resuming from the positions it finds in Kafka, publishes exactly those
changes (no gap, no duplicate, no echo); a third instance, started while those changes are still
inside the overlap window, re-reads them and publishes nothing (the de-duplication state travels
with the watermark).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.sage100.publish import KafkaPublisher
from connectors.sage100.source import SageSource
from sagesf.config import KafkaSettings
from sagesf.positions import PositionStore
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroSerde
from sandbox.sage100.simulator import SageSimulator

pytestmark = pytest.mark.integration

CANONICAL = {
    "customer.v1": "Customer",
    "item.v1": "Item",
    "inventory.v1": "InventoryLevel",
    "orderstatus.v1": "OrderStatusChange",
}


def read_all(
    bootstrap: str, topic: str, registry: SchemaRegistryClient, schema: str
) -> list[tuple[str, Any]]:
    """Every (key, value) on a topic, decoded through the registry like any consumer would."""
    keys = AvroSerde.string_key(registry, topic, auto_register=False)
    values = AvroSerde.canonical(registry, schema, topic, auto_register=False)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex[:6]}",
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    partitions = list(metadata.partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[tuple[str, Any]] = []
    done: set[int | None] = set()
    deadline = time.monotonic() + 30
    while len(done) < len(partitions) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                done.add(msg.partition())
                continue
            raise AssertionError(error)
        key, value = msg.key(), msg.value()
        assert key is not None
        out.append((str(keys.decode(key)), values.decode(value)))
    consumer.close()
    return out


def read_raw(bootstrap: str, topic: str) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex[:6]}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            out.append(msg)
        elif msg is None and out:
            break
    consumer.close()
    return out


@pytest.fixture
def setup(kafka_bootstrap, schema_registry_url, sage_db, new_topic):
    topics = {name: new_topic(name.split(".")[0], partitions=2) for name in CANONICAL}
    positions_topic = new_topic("positions", config={"cleanup.policy": "compact"})
    dlq = new_topic("dlq")
    component = f"sage-source-{uuid.uuid4().hex[:6]}"
    settings = sage_db.settings(
        source={
            "component": component,
            "topics": topics,
            "positions_topic": positions_topic,
            "dead_letter_topic": dlq,
            "overlap_seconds": 120,  # the restarts below happen inside the window: it is re-read
            "batch_rows": 250,
        }
    )
    registry = SchemaRegistryClient({"url": schema_registry_url})
    return {
        "bootstrap": kafka_bootstrap,
        "registry_url": schema_registry_url,
        "registry": registry,
        "topics": topics,
        "positions_topic": positions_topic,
        "dlq": dlq,
        "component": component,
        "settings": settings,
        "db": sage_db,
    }


def new_source(s) -> tuple[SageSource, ConfirmedProducer]:
    kafka = KafkaSettings(bootstrap_servers=s["bootstrap"])
    producer = ConfirmedProducer(kafka)
    publisher = KafkaPublisher(producer, s["registry"], auto_register=True, dead_letter_topic=s["dlq"])
    positions = PositionStore(kafka, s["component"], topic=s["positions_topic"], producer=producer)
    return SageSource(s["settings"], publisher, positions, sweep=False), producer


def everything(s) -> dict[str, list[tuple[str, Any]]]:
    return {
        name: read_all(s["bootstrap"], topic, s["registry"], CANONICAL[name])
        for name, topic in s["topics"].items()
    }


def test_source_publishes_changes_and_resumes_from_its_watermark(setup):
    s = setup
    db = s["db"]
    env = {
        **os.environ,
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": s["bootstrap"],
        "SAGESF_REGISTRY__URL": s["registry_url"],
        "SAGESF_REGISTRY__AUTO_REGISTER": "true",
        "SAGESF_METRICS__PORT": "0",
        "SAGESF_SAGE100__CONNECTION_STRING": db.connection_string,
        "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(db.udf_columns),  # as the in-process source below
        "SAGESF_SAGE100__SOURCE__COMPONENT": s["component"],
        "SAGESF_SAGE100__SOURCE__TOPICS": json.dumps(s["topics"]),
        "SAGESF_SAGE100__SOURCE__POSITIONS_TOPIC": s["positions_topic"],
        "SAGESF_SAGE100__SOURCE__DEAD_LETTER_TOPIC": s["dlq"],
    }
    env.pop("SAGESF_ENV_FILE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "connectors.sage100.source", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PWD" not in proc.stderr

    first = everything(s)
    assert len(first["customer.v1"]) == db.count("AR_Customer")  # 60 customers, each once
    assert len(first["item.v1"]) == db.count("CI_Item")
    assert len(first["inventory.v1"]) == db.count("IM_ItemWarehouse")
    assert len(first["orderstatus.v1"]) == db.count("SO_SalesOrderHeader")
    level = dict(first["inventory.v1"])["HRDW-1000/000"]
    assert level["quantity_available"] == (
        level["quantity_on_hand"] - level["quantity_on_sales_order"] - level["quantity_on_back_order"]
    )
    customers = dict(first["customer.v1"])
    assert all(c["envelope"]["source_system"] == "SAGE100" for c in customers.values())
    assert sum(len(c["contacts"]) for c in customers.values()) == db.count("AR_CustomerContact")

    # Sage users work while no source runs; the integration user writes too
    order_no = first["orderstatus.v1"][0][0]
    with SageSimulator(db, user_key="0000000002") as sim:
        sim.move_stock("HRDW-1000", "000", 7)
        sim.move_stock("ELEC-1001", "001", -2)
        sim.advance_order(order_no)
        division, number = first["customer.v1"][0][0].split("-")
        sim.edit_customer(division, number, {"TelephoneNo": "(555) 010-2000"})
        sim.edit_customer("01", "BLUE002", {"TelephoneNo": "(555) 999-0000"}, user="SGSF")  # echo
        sim.write_row("CI_Item", {"ItemCode": "ODD-1", "ItemType": "9", "ItemCodeDesc": "No such type"})

    source, producer = new_source(s)  # a new process: positions come back from Kafka
    try:
        stats = source.run_once()
    finally:
        source.close()
        producer.close()
    assert stats["IM_ItemWarehouse"].emitted == 2
    assert stats["AR_Customer"].echoes == 1
    assert stats["CI_Item"].dead_letters == 1
    [dead] = read_raw(s["bootstrap"], s["dlq"])
    headers = dict(dead.headers() or [])
    assert b"ItemType '9' is none of 1-5" in headers["__connect.errors.exception.message"]
    assert headers["__connect.errors.topic"] == b"CI_Item"
    assert json.loads(dead.value())["rows"][0]["ItemCode"] == "ODD-1"

    after = everything(s)
    for name, records in after.items():  # the same row version always has the same event ID
        ids = [v["envelope"]["event_id"] for _, v in records]
        assert len(ids) == len(set(ids)), f"{name}: a version was published twice"
    new = {name: [(k, v) for k, v in after[name] if (k, v) not in first[name]] for name in after}
    assert sorted(k for k, _ in new["inventory.v1"]) == ["ELEC-1001/001", "HRDW-1000/000"]
    moved = dict(new["inventory.v1"])["HRDW-1000/000"]
    assert moved["quantity_on_hand"] == level["quantity_on_hand"] + 7
    assert moved["quantity_available"] == level["quantity_available"] + 7
    assert [v["telephone_no"] for _, v in new["customer.v1"]] == ["(555) 010-2000"]  # no echo
    was = dict(first["orderstatus.v1"])[order_no]["status"]
    assert [(k, v["status"], v["previous_status"]) for k, v in new["orderstatus.v1"]] == [
        (order_no, {"NEW": "OPEN", "HOLD": "OPEN", "OPEN": "CLOSED"}[was], None)  # a new process: unknown
    ]
    # the stock moves changed CI_Item.TotalQuantityOnHand too
    assert sorted(k for k, _ in new["item.v1"]) == ["ELEC-1001", "HRDW-1000"]

    source, producer = new_source(s)  # and again: nothing new, nothing twice
    try:
        stats = source.run_once()
    finally:
        source.close()
        producer.close()
    assert sum(st.emitted for st in stats.values()) == 0
    # the window was re-read, and `seen`, stored with the watermark, recognised every row in it
    assert stats["IM_ItemWarehouse"].duplicates >= 2
    assert stats["AR_Customer"].duplicates >= 2  # the edit and the echo
    assert {name: len(v) for name, v in everything(s).items()} == {name: len(v) for name, v in after.items()}
