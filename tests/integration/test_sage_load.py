"""`sagesf load sage` end to end: the sandbox company over ODBC -> the real broker and registry.

The load runs as the real command in a subprocess, is killed with SIGKILL halfway (before it stores
its second checkpoint of customers, whose records Kafka has) and run again; its records are compared
with what the live source (`sagesf run sage-source --once`, another component on other topics)
publishes for the same rows; then the live source takes over from the load's hand-over and
publishes only the changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from sandbox.sage100.simulator import SageSimulator
from tests.integration.test_sage_source_kafka import CANONICAL, read_all
from tests.kit.load import killed_load

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOADED = ("customer.v1", "item.v1", "inventory.v1")


@pytest.fixture
def company(tmp_path):
    """A sandbox company of a few hundred customers, items and stock levels."""
    from sandbox.sage100.database import create_database, seed

    db = create_database(tmp_path / "sage100.db")
    seed(db, customers=300, items=300, open_orders=10, completed_orders=5)
    return db


def topics_of(new_topic) -> dict[str, str]:
    names = {name: new_topic(name.split(".")[0]) for name in CANONICAL}
    names["positions"] = new_topic("positions", config={"cleanup.policy": "compact"})
    names["dlq"] = new_topic("dlq")
    return names


def environment(kafka_bootstrap, schema_registry_url, db, topics, component) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESF_")}
    env.update(
        {
            "SAGESF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SAGESF_REGISTRY__URL": schema_registry_url,
            "SAGESF_REGISTRY__AUTO_REGISTER": "true",
            "SAGESF_METRICS__PORT": "0",
            "SAGESF_SAGE100__CONNECTION_STRING": db.connection_string,
            "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(db.udf_columns),
            "SAGESF_SAGE100__SOURCE__COMPONENT": component,
            "SAGESF_SAGE100__SOURCE__TOPICS": json.dumps({c: topics[c] for c in CANONICAL}),
            "SAGESF_SAGE100__SOURCE__POSITIONS_TOPIC": topics["positions"],
            "SAGESF_SAGE100__SOURCE__DEAD_LETTER_TOPIC": topics["dlq"],
            "SAGESF_SAGE100__SOURCE__BATCH_ROWS": "10",  # a checkpoint every 10 rows: kill -9 lands halfway
        }
    )
    return env


def sagesf(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagesf", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def records(kafka_bootstrap, registry, topics) -> dict[str, list[tuple[str, Any]]]:
    return {name: read_all(kafka_bootstrap, topics[name], registry, CANONICAL[name]) for name in LOADED}


def test_the_load_resumes_after_kill_9_publishes_what_the_source_would_and_hands_over(
    kafka_bootstrap, schema_registry_url, company, new_topic
):
    registry = SchemaRegistryClient({"url": schema_registry_url})
    topics = topics_of(new_topic)
    component = f"sage-source-{uuid.uuid4().hex[:6]}"
    env = environment(kafka_bootstrap, schema_registry_url, company, topics, component)

    assert killed_load(env, "sage") == ["table/AR_Customer"]
    with SageSimulator(company, user_key="0000000002") as sim:  # a change while the load is stopped
        sim.move_stock("HRDW-1000", "000", 5)
    loaded = sagesf(env, "load", "sage")
    assert loaded.returncode == 0, loaded.stdout[-3000:] + loaded.stderr[-3000:]
    assert "PWD" not in loaded.stdout + loaded.stderr
    assert "hand-over" in loaded.stdout

    # nothing missing; again only the checkpoint whose position the kill cut off, as the same
    # versions (key and event ID): idempotent for a consumer
    first = records(kafka_bootstrap, registry, topics)
    expected = {"customer.v1": "AR_Customer", "item.v1": "CI_Item", "inventory.v1": "IM_ItemWarehouse"}
    for name, table in expected.items():
        assert len(dict(first[name])) == company.count(table), name
    versions = Counter((k, v["envelope"]["event_id"]) for name in LOADED for k, v in first[name])
    assert set(versions.values()) == {1, 2}
    repeated = {key for (key, _), n in versions.items() if n == 2}
    assert 0 < len(repeated) <= 10  # one checkpoint: at most 10 row versions
    assert repeated <= {key for key, _ in first["customer.v1"]}

    # the very records the live source publishes for these rows (another component, other topics),
    # but for the stock moved while the load was stopped, which the load may have read before it
    during = {"inventory.v1": "HRDW-1000/000", "item.v1": "HRDW-1000"}
    live_topics = topics_of(new_topic)
    live_env = environment(kafka_bootstrap, schema_registry_url, company, live_topics, f"{component}-live")
    assert sagesf(live_env, "run", "sage-source", "--once").returncode == 0
    live = {name: dict(found) for name, found in records(kafka_bootstrap, registry, live_topics).items()}
    for name in LOADED:
        loaded_now = {k: v for k, v in first[name] if k != during.get(name)}
        assert loaded_now == {k: v for k, v in live[name].items() if k != during.get(name)}, name

    # run again: nothing new
    again = sagesf(env, "load", "sage")
    assert again.returncode == 0
    assert "loaded before" in again.stdout
    assert records(kafka_bootstrap, registry, topics) == first

    # the live source takes over at the load's watermark: the changes made after it, once each,
    # and nothing older
    with SageSimulator(company, user_key="0000000002") as sim:
        sim.move_stock("ELEC-1001", "001", -2)
        sim.edit_customer("01", "BLUE002", {"TelephoneNo": "(555) 010-2000"})
    handed = sagesf(env, "run", "sage-source", "--once")
    assert handed.returncode == 0, handed.stderr[-3000:]
    after = records(kafka_bootstrap, registry, topics)
    new = {name: {k for k, v in after[name] if (k, v) not in first[name]} for name in LOADED}
    changed_after = {
        "customer.v1": {"01-BLUE002"},
        "item.v1": {"ELEC-1001"},
        "inventory.v1": {"ELEC-1001/001"},
    }
    for name in LOADED:  # the item's TotalQuantityOnHand moves with its stock
        assert new[name] - {during.get(name)} == changed_after[name], name
    # what changed while the load was stopped is on the topic once in its new state: published by
    # the load when its scan came after the change, else by the source
    for name, key in during.items():
        ids = [v["envelope"]["event_id"] for k, v in after[name] if k == key]
        assert ids.count(live[name][key]["envelope"]["event_id"]) == 1, name
