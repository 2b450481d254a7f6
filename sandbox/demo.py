"""`sagesf demo` (what `make demo` runs): bring the sandbox up and show a record's path through it.

Steps, each timed and verified, exit 1 on the first failure:
1. start the sandbox (a real Kafka broker from the official jars, the schema registry), apply
   topics.yaml and register the canonical schemas, as `sagesf sandbox up` does;
2. encode a canonical SalesOrder with the registry's schema id (Confluent wire format), produce it
   to salesorder.v1 and wait for Kafka's acknowledgement;
3. read it back from its partition and offset, decode it with a fresh registry client, and check it
   equals what was sent, field by field.
It leaves the sandbox running and says how to stop it. The order-to-Sage flow joins this demo when
the connectors and processors exist (issue "Order automation end to end").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import typer
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from rich.console import Console

from sagesf.config import KafkaSettings
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroSerde
from sandbox import stack
from sandbox.samples import sales_order

app = typer.Typer(help="Run the sandbox demo (what `make demo` runs).")
console = Console(highlight=False)
TOPIC = "salesorder.v1"


class Step:
    """Numbered, timed step lines."""

    def __init__(self) -> None:
        self.n = 0
        self.started = time.monotonic()

    def __call__(self, title: str, work: Callable[[], str]) -> None:
        self.n += 1
        console.print(f"[bold]{self.n}. {title}[/bold]")
        began = time.monotonic()
        try:
            detail = work()
        except Exception as exc:  # noqa: BLE001 - any failure ends the demo with its reason
            console.print(f"   [red]FAILED[/red] {type(exc).__name__}: {exc}", soft_wrap=True)
            raise typer.Exit(1) from None
        console.print(
            f"   [green]ok[/green] {detail}  [dim]({time.monotonic() - began:.2f} s)[/dim]", soft_wrap=True
        )


def _read_back(bootstrap: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(TOPIC, partition, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            return msg.key(), msg.value()
        raise TimeoutError(f"{TOPIC}[{partition}]@{offset} not readable within 20 s")
    finally:
        consumer.close()


@app.callback(invoke_without_command=True)
def demo() -> None:
    """Start the sandbox and round-trip one canonical SalesOrder through Kafka and the registry."""
    step = Step()
    sandbox = stack.Sandbox()

    def bring_up() -> str:
        nonlocal sandbox
        sandbox = stack.up(lambda line: console.print("   " + line, soft_wrap=True))
        return "sandbox up"

    step("Start the sandbox: Kafka (KRaft), schema registry, topics, schemas", bring_up)
    bootstrap, registry_url = sandbox.addresses["kafka"], sandbox.addresses["registry"]
    record: dict[str, Any] = sales_order()
    record["envelope"]["event_id"] = uuid.uuid4()
    record["envelope"]["event_time"] = datetime.now(UTC).replace(microsecond=0)
    sent: dict[str, Any] = {}

    def produce() -> str:
        registry = SchemaRegistryClient({"url": registry_url})
        values = AvroSerde.canonical(registry, "SalesOrder", TOPIC, auto_register=False)
        keys = AvroSerde.string_key(registry, TOPIC, auto_register=False)
        value = values.encode(record)
        producer = ConfirmedProducer(KafkaSettings(bootstrap_servers=bootstrap, client_id="sagesf-demo"))
        producer.send(TOPIC, value, keys.encode(record["salesforce_opportunity_id"]))
        [delivered] = producer.confirm()
        sent.update(
            partition=delivered.partition,
            offset=delivered.offset,
            size=len(value),
            schema_id=values.schema_id,
        )
        return (
            f"SalesOrder for opportunity {record['salesforce_opportunity_id']} with "
            f"{len(record['lines'])} lines, total {record['total_amount']} {record['currency_code']}: "
            f"{len(value)} bytes, schema id {values.schema_id}, acknowledged at "
            f"{TOPIC}[{delivered.partition}]@{delivered.offset}"
        )

    step("Encode a canonical SalesOrder (Avro, Confluent wire format) and produce it", produce)

    def read_back() -> str:
        key, value = _read_back(bootstrap, sent["partition"], sent["offset"])
        registry = SchemaRegistryClient({"url": registry_url})  # fresh: the id must resolve over HTTP
        decoded = AvroSerde.canonical(registry, "SalesOrder", TOPIC, auto_register=False).decode(value)
        if decoded is None:
            raise AssertionError("read back a tombstone")
        key_text = AvroSerde.string_key(registry, TOPIC, auto_register=False).decode(key)
        differs = [name for name in record if decoded.get(name) != record[name]]
        if differs or key_text != record["salesforce_opportunity_id"]:
            raise AssertionError(f"read back differs in {differs or ['key']}")
        lines = ", ".join(
            f"{line['product_code']} x {line['quantity_ordered'].normalize()}" for line in decoded["lines"]
        )
        return f"decoded with writer schema {sent['schema_id']}: equal field by field; lines {lines}"

    step("Read it back from Kafka and decode it with a fresh registry client", read_back)
    console.print(
        f"\n[bold]Sandbox running[/bold]: Kafka {bootstrap}, schema registry {registry_url}.\n"
        f"Use it: export SAGESF_ENV_FILE={sandbox.env_file}; .venv/bin/sagesf topics diff\n"
        "Stop it: .venv/bin/sagesf sandbox down",
        soft_wrap=True,
    )
