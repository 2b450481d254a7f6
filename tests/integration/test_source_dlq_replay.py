"""`sagesf dlq replay sage-source` on the real broker and registry: a Sage row dead-lettered by the
source is re-read after the fix and published once, marked replayed like any other dead letter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import typer
from confluent_kafka.schema_registry import SchemaRegistryClient
from typer.testing import CliRunner

from connectors.sage100.components import build_source
from sagesf.cli import add_core_commands
from sagesf.config import KafkaSettings, RegistrySettings, Settings
from sagesf.runner import Process
from sagesf.schemas import SCHEMAS_DIR
from sagesf.serde import AvroSerde
from sandbox.sage100.simulator import SageSimulator
from tests.kit.kafka import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(kafka_bootstrap, schema_registry_url, sage_db, new_topic) -> dict[str, Any]:
    items, dlq = new_topic("item"), new_topic("dlq-sage-source")
    positions = new_topic("positions", config={"cleanup.policy": "compact"})
    markers = new_topic("markers", config={"cleanup.policy": "compact"})
    component = f"sage-source-{uuid.uuid4().hex[:6]}"
    source = {
        "component": component,
        "tables": ["CI_Item"],
        "topics": {"item.v1": items},
        "positions_topic": positions,
        "dead_letter_topic": dlq,
    }
    env = {
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SAGESF_REGISTRY__URL": schema_registry_url,
        "SAGESF_REGISTRY__AUTO_REGISTER": "true",
        "SAGESF_SCHEMAS_DIR": str(SCHEMAS_DIR),
        "SAGESF_SAGE100__CONNECTION_STRING": sage_db.connection_string,
        "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(sage_db.udf_columns),
        **{
            f"SAGESF_SAGE100__SOURCE__{k.upper()}": v if isinstance(v, str) else json.dumps(v)
            for k, v in source.items()
        },
        "SAGESF_STAGES__SAGE_SOURCE__DLQ_TOPIC": dlq,
        "SAGESF_DLQ_MARKERS_TOPIC": markers,
        "COLUMNS": "300",
    }
    core = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        registry=RegistrySettings(url=schema_registry_url, auto_register=True),
    )
    return {"env": env, "core": core, "settings": sage_db.settings(source=source), "items": items, "dlq": dlq}


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    app = typer.Typer()
    add_core_commands(app)
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def items_published(s: dict[str, Any], code: str) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """The Item records on the item topic for `code` (value, headers), decoded as a consumer would."""
    registry = SchemaRegistryClient({"url": s["env"]["SAGESF_REGISTRY__URL"]})
    keys = AvroSerde.string_key(registry, s["items"], auto_register=False)
    values = AvroSerde.canonical(registry, "Item", s["items"], auto_register=False)
    out = []
    for record in read_topic(s["env"]["SAGESF_KAFKA__BOOTSTRAP_SERVERS"], s["items"]):
        if record.key is not None and record.value is not None and keys.decode(record.key) == code:
            out.append((dict(values.decode(record.value)), dict(record.headers)))
    return out


def test_a_sage_row_dead_lettered_then_fixed_is_replayed_once(stack, sage_db):
    s = stack
    with SageSimulator(sage_db, user_key="0000000002") as sim:
        sim.write_row("CI_Item", {"ItemCode": "ODD-7", "ItemType": "9", "ItemCodeDesc": "No such type"})
    process = Process.of("sage-source", s["core"], s["settings"])
    try:
        build_source(process).run_once()  # the source dead-letters the row and goes on
    finally:
        process.close()
    [letter] = read_topic(s["env"]["SAGESF_KAFKA__BOOTSTRAP_SERVERS"], s["dlq"])
    assert (letter.key, letter.header("__connect.errors.topic")) == (b"ODD-7", b"CI_Item")
    assert items_published(s, "ODD-7") == []
    with SageSimulator(sage_db) as sim:  # fixed in Sage, by an import that stamps nothing
        sim.import_raw("CI_Item", {"ItemType": "1"}, key=("ODD-7",))

    code, out = run_cli(s["env"], "dlq", "replay", "sage-source", "--all")
    assert code == 0, out
    assert "re-read and sent" in out
    [(item, headers)] = items_published(s, "ODD-7")  # exactly one record
    assert item["item_type"] == "REGULAR"
    assert headers["__sagesf.replayed.from"] == f"{s['dlq']}/0/0".encode()

    code, out = run_cli(s["env"], "dlq", "replay", "sage-source", "--all")
    assert code == 0, out
    assert "already replayed" in out
    assert len(items_published(s, "ODD-7")) == 1
    code, out = run_cli(s["env"], "dlq", "list", "--stage", "sage-source")
    assert [c.strip() for c in next(ln for ln in out.splitlines() if s["dlq"] in ln).split("│")[1:5]] == [
        "sage-source",
        s["dlq"],
        "1",
        "1",
    ]
