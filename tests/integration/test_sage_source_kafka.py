"""The Sage 100 source end to end: sandbox database over ODBC -> Avro -> the real Kafka broker.

The source runs first as the real process (`sagesf run sage-source --once`) and publishes the
demo company; Sage users then make changes (and the integration user one more); a new source
loop, assembled as the process assembles it (`build_source`: the real CanonicalPublisher and
PositionStore) and resuming from the positions it finds in Kafka, publishes exactly those changes
(no gap, no duplicate; the integration user's customer write marked as ours); a third one,
started while those changes are still inside the overlap window, re-reads them and publishes
nothing (the de-duplication state travels with the watermark).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any, cast

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.sage100.components import build_source
from connectors.sage100.polling import PollStats
from connectors.sage100.source import SageSource
from sagesf.config import KafkaSettings, RegistrySettings, Settings
from sagesf.positions import PositionStore
from sagesf.runner import Process
from sagesf.serde import AvroSerde
from sandbox.sage100.simulator import SageSimulator
from tests.kit.kafka import read_topic

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
    out: list[tuple[str, Any]] = []
    for record in read_topic(bootstrap, topic):
        assert record.key is not None
        out.append((str(keys.decode(record.key)), values.decode(record.value)))
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


def run_once(s) -> dict[str, PollStats]:
    """A new source process, assembled as `sagesf run sage-source` does, polls every table once;
    what each table's poll found."""
    core = Settings(
        kafka=KafkaSettings(bootstrap_servers=s["bootstrap"]),
        registry=RegistrySettings(url=s["registry_url"], auto_register=True),
    )
    process = Process.of("sage-source", core, s["settings"])
    try:
        loop = build_source(process)  # positions come back from Kafka
        loop.run_once()
        source = cast(SageSource, loop.source)
        return {name: table.poller.stats for name, table in source.tables.items()}
    finally:
        process.close()


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
        [sys.executable, "-m", "sagesf", "run", "sage-source", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PWD" not in proc.stderr
    # the watermarks are in Kafka, one per table under <component>/<table>, and what the key
    # sweep knows under <component>/<table>/keys/<bucket>
    stored = PositionStore(
        KafkaSettings(bootstrap_servers=s["bootstrap"]), s["component"], s["positions_topic"]
    )
    streams = set(stored.load())
    assert {k for k in streams if "/" not in k} == set(s["settings"].source.tables)
    assert {k for k in streams if "/" in k} == {f"{t}/keys/0" for t in s["settings"].source.tables}

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
    # an order with lines: each published with its detail UDFs
    tagged, was_tagged = next((k, v) for k, v in first["orderstatus.v1"][2:] if len(v["lines"]) > 1)
    line_key, other_key = (line["line_key"] for line in was_tagged["lines"][:2])
    assert set(was_tagged["lines"][0]["custom_fields"]) == {"UDF_LINE_NOTE", "UDF_LINE_TAG"}
    with SageSimulator(db, user_key="0000000002") as sim:
        sim.move_stock("HRDW-1000", "000", 7)
        sim.move_stock("ELEC-1001", "001", -2)
        sim.advance_order(order_no)
        routed = first["orderstatus.v1"][1][0]  # a header UDF edited, the status left alone
        sim.write_row("SO_SalesOrderHeader", {"SalesOrderNo": routed, "UDF_ROUTE": "North 7"})
        # a line UDF edited, nothing else of the order; and a line written by us (an echo)
        line = {"SalesOrderNo": tagged, "LineKey": line_key, "UDF_LINE_TAG": "Fragile"}
        sim.write_row("SO_SalesOrderDetail", line)
        ours = dict(first["orderstatus.v1"])[order_no]["lines"][0]["line_key"]
        echo = {"SalesOrderNo": order_no, "LineKey": ours, "UDF_LINE_TAG": "ours"}
        sim.write_row("SO_SalesOrderDetail", echo, user="SGSF")
        division, number = first["customer.v1"][0][0].split("-")
        sim.edit_customer(division, number, {"TelephoneNo": "(555) 010-2000"})
        sim.edit_customer("01", "BLUE002", {"TelephoneNo": "(555) 999-0000"}, user="SGSF")  # echo
        sim.write_row("CI_Item", {"ItemCode": "ODD-1", "ItemType": "9", "ItemCodeDesc": "No such type"})

    stats = run_once(s)  # a new process: positions come back from Kafka
    assert stats["IM_ItemWarehouse"].emitted == 2
    assert stats["AR_Customer"].echoes == 1
    assert stats["CI_Item"].dead_letters == 1
    assert stats["SO_SalesOrderDetail"].echoes == 1
    [dead] = read_topic(s["bootstrap"], s["dlq"])
    assert b"ItemType '9': is none of 1-5" in (dead.header("__connect.errors.exception.message") or b"")
    assert dead.header("__connect.errors.topic") == b"CI_Item"
    assert dead.key == b"ODD-1"  # the row's key, plain UTF-8
    assert dead.value is not None
    assert json.loads(dead.value)["rows"][0]["ItemCode"] == "ODD-1"

    after = everything(s)
    for name, records in after.items():  # the same row version always has the same event ID
        ids = [v["envelope"]["event_id"] for _, v in records]
        assert len(ids) == len(set(ids)), f"{name}: a version was published twice"
    new = {name: [(k, v) for k, v in after[name] if (k, v) not in first[name]] for name in after}
    assert sorted(k for k, _ in new["inventory.v1"]) == ["ELEC-1001/001", "HRDW-1000/000"]
    moved = dict(new["inventory.v1"])["HRDW-1000/000"]
    assert moved["quantity_on_hand"] == level["quantity_on_hand"] + 7
    assert moved["quantity_available"] == level["quantity_available"] + 7
    # the integration user's write is published too, marked, for the processors to compare
    assert sorted(v["telephone_no"] for _, v in new["customer.v1"]) == ["(555) 010-2000", "(555) 999-0000"]
    marked = [r for r in read_topic(s["bootstrap"], s["topics"]["customer.v1"]) if r.headers]
    assert [(list(r.headers), b"BLUE002" in (r.key or b"")) for r in marked] == [
        ([("sagesf.written-by", b"integration")], True)
    ]
    was = dict(first["orderstatus.v1"])[order_no]["status"]
    assert sorted((k, v["status"], v["previous_status"]) for k, v in new["orderstatus.v1"]) == sorted(
        [
            (
                order_no,
                {"NEW": "OPEN", "HOLD": "OPEN", "OPEN": "CLOSED"}[was],
                None,
            ),  # a new process: unknown
            (routed, dict(first["orderstatus.v1"])[routed]["status"], None),
            (tagged, was_tagged["status"], None),  # only a line changed
        ]
    )
    lines = {line["line_key"]: line["custom_fields"] for line in dict(new["orderstatus.v1"])[tagged]["lines"]}
    assert lines[line_key]["UDF_LINE_TAG"] == "Fragile"
    assert lines[other_key] == was_tagged["lines"][1]["custom_fields"]  # the other line as it was
    assert dict(new["orderstatus.v1"])[routed]["custom_fields"]["UDF_ROUTE"] == "North 7"
    # the stock moves changed CI_Item.TotalQuantityOnHand too
    assert sorted(k for k, _ in new["item.v1"]) == ["ELEC-1001", "HRDW-1000"]

    stats = run_once(s)  # and again: nothing new, nothing twice
    assert sum(st.emitted for st in stats.values()) == 0
    # the window was re-read, and `seen`, stored with the watermark, recognised every row in it
    assert stats["IM_ItemWarehouse"].duplicates >= 2
    assert stats["AR_Customer"].duplicates >= 2  # the edit and the echo
    assert {name: len(v) for name, v in everything(s).items()} == {name: len(v) for name, v in after.items()}
