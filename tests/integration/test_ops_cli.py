"""The operator commands on the real broker and registry: `sagesf dlq`, `sagesf replay`, `sagesf trace`.

Every test works on its own uniquely named topics and consumer groups, pointed at through the
stage overrides (SAGESF_STAGES__...), so repeated runs and other engineers' data never collide.
The commands run through the real `sagesf` command tree (sagesf.cli.add_core_commands).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from confluent_kafka.schema_registry import SchemaRegistryClient
from typer.testing import CliRunner

from sagesf.cli import add_core_commands
from sagesf.config import KafkaSettings
from sagesf.dead_letter_writer import STAGE_TASK_POLL, STAGE_TASK_PUT, DeadLetterWriter, FailedRecord
from sagesf.errors import Permanent
from sagesf.producer import ConfirmedProducer
from sagesf.schemas import SCHEMAS_DIR
from sagesf.serde import AvroSerde
from sagesf.topic_scan import ScannedRecord
from tests.kit.kafka import read_topic

pytestmark = pytest.mark.integration

RunCli = Callable[..., tuple[int, str]]


@pytest.fixture(scope="module")
def sagesf_app() -> typer.Typer:
    app = typer.Typer()
    add_core_commands(app)
    return app


@pytest.fixture
def run_cli(sagesf_app: typer.Typer, kafka_bootstrap: str, schema_registry_url: str) -> RunCli:
    """Run `sagesf <args>` with the test cluster and registry, plus `env` (stage overrides)."""

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        full_env = {
            "SAGESF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SAGESF_REGISTRY__URL": schema_registry_url,
            "SAGESF_SCHEMAS_DIR": str(SCHEMAS_DIR),
            "COLUMNS": "300",
            **(env or {}),
        }
        result = CliRunner().invoke(sagesf_app, list(args), env=full_env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return run


@pytest.fixture
def registry(schema_registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry_url})


def read_all(bootstrap: str, topic: str) -> list[ScannedRecord]:
    """Every record of `topic` (assign, no group), in partition then offset order."""
    return read_topic(bootstrap, topic)


def produce(
    bootstrap: str,
    records: list[tuple[str, bytes | None, bytes | None, int | None, int | None]],
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> list[tuple[int, int]]:
    """(topic, key, value, partition, timestamp ms) each -> their (partition, offset), acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    delivered: dict[int, tuple[int, int]] = {}
    for i, (topic, key, value, partition, timestamp) in enumerate(records):
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp

        def on_delivery(err: KafkaError | None, msg: Message, i: int = i) -> None:
            assert err is None, err
            delivered[i] = (msg.partition() or 0, msg.offset() or 0)

        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery, **kwargs)
    assert producer.flush(30) == 0
    return [delivered[i] for i in range(len(records))]


def headers_of(msg: ScannedRecord) -> list[tuple[str, bytes]]:
    return list(msg.headers)


def committed(admin: AdminClient, group: str, topic: str, partitions: int) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def set_committed(admin: AdminClient, group: str, topic: str, offsets: dict[int, int]) -> None:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in offsets.items()])
    admin.alter_consumer_group_offsets([request])[group].result(timeout=30)


def row_of(output: str, *needles: str) -> str:
    """The one output line containing every needle."""
    rows = [line for line in output.splitlines() if all(n in line for n in needles)]
    assert len(rows) == 1, f"expected one line with {needles}, got {rows}\n{output}"
    return rows[0]


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("│┃").split("│")]


def partition_row(output: str, topic: str, partition: int) -> list[str]:
    """The cells of the plan table's row for topic/partition."""
    rows = [cells(line) for line in output.splitlines() if topic in line and "│" in line]
    found = [row for row in rows if row[0] == topic and row[1] == str(partition)]
    assert len(found) == 1, f"expected one row for {topic}/{partition}\n{output}"
    return found[0]


def sales_order(opp_id: str, correlation_id: str, account: str = "001Dn000003AbCdIAK") -> dict[str, Any]:
    from sandbox.samples import sales_order as sample

    order = sample()
    order["envelope"] = {
        **order["envelope"],
        "event_id": uuid.uuid4(),
        "source_record_id": opp_id,
        "correlation_id": correlation_id,
    }
    order["salesforce_opportunity_id"] = opp_id
    order["customer"] = {**order["customer"], "salesforce_account_id": account}
    return order


def envelope(source: str, record_id: str, correlation_id: str | None) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4(),
        "event_time": datetime.now(UTC),
        "source_system": source,
        "source_record_id": record_id,
        "correlation_id": correlation_id,
    }


# --- sagesf dlq ------------------------------------------------------------------------------------


@pytest.fixture
def dead_letters(
    kafka_bootstrap: str, new_topic: Callable[..., str], registry: SchemaRegistryClient
) -> dict[str, Any]:
    """Three dead letters of stage `orders` in a fresh DLQ topic, as the pipeline writes them:

    offset 0: a SalesOrder from partition 1 of a real origin topic (Permanent, with field/value);
    offset 1: a second SalesOrder from partition 0, same reason;
    offset 2: a Sage row that is not Avro (ValueError), origin AR_Customer (a table, not a topic).
    """
    origin = new_topic("orders-in", partitions=2)
    dlq = new_topic("dlq-orders")
    markers = new_topic("markers", config={"cleanup.policy": "compact"})
    key_serde = AvroSerde.string_key(registry, origin, auto_register=True)
    value_serde = AvroSerde.canonical(registry, "SalesOrder", origin, auto_register=True)
    opp_ids = [f"006T{uuid.uuid4().hex[:14]}" for _ in range(2)]
    originals = [(key_serde.encode(o), value_serde.encode(sales_order(o, f"corr-{o}"))) for o in opp_ids]
    trace = b"00-abc-def-01"
    placed = produce(
        kafka_bootstrap,
        [
            (origin, originals[0][0], originals[0][1], 1, None),
            (origin, originals[1][0], originals[1][1], 0, None),
        ],
        headers=[("traceparent", trace)],
    )
    reason = "ProductCode 'WIDGET-9' maps to no ItemCode"
    writer = DeadLetterWriter(
        ConfirmedProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap)), "orders", dlq
    )
    failures: list[tuple[FailedRecord, BaseException, str, str]] = [
        (
            FailedRecord(
                origin, placed[i][0], placed[i][1], originals[i][0], originals[i][1], [("traceparent", trace)]
            ),
            Permanent(reason, field="lines[0].product_code", value="WIDGET-9"),
            STAGE_TASK_PUT,
            "orders_agent",
        )
        for i in range(2)
    ]
    failures.append(
        (
            FailedRecord("AR_Customer", -1, -1, b"01-ABC", b'{"CustomerNo": "ABC"}'),
            ValueError("bad row: DateUpdated is empty"),
            STAGE_TASK_POLL,
            "AR_CustomerStream.records",
        )
    )
    writer.send(failures)
    return {
        "origin": origin,
        "dlq": dlq,
        "opp_ids": opp_ids,
        "originals": originals,
        "placed": placed,
        "env": {"SAGESF_STAGES__ORDERS__DLQ_TOPIC": dlq, "SAGESF_DLQ_MARKERS_TOPIC": markers},
    }


def test_dlq_list_counts_dead_letters_with_their_top_reasons(run_cli: RunCli, dead_letters: dict[str, Any]):
    code, out = run_cli("dlq", "list", "--stage", "orders", env=dead_letters["env"])
    assert code == 0, out
    row = cells(row_of(out, dead_letters["dlq"]))
    assert row[:4] == ["orders", dead_letters["dlq"], "3", "0"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z", row[4]), row
    assert "2 x Permanent: ProductCode 'WIDGET-9' maps to no ItemCode" in out
    assert "1 x ValueError: bad row: DateUpdated is empty" in out
    assert "sage-sink" not in out  # --stage limits the table to one stage


def test_dlq_show_decodes_the_original_value_through_the_registry(
    run_cli: RunCli, dead_letters: dict[str, Any]
):
    code, out = run_cli("dlq", "show", "orders", env=dead_letters["env"])
    assert code == 0, out
    origin, (partition, offset) = dead_letters["origin"], dead_letters["placed"][0]
    assert f"{origin}/{partition}/{offset} (topic/partition/offset)" in out
    assert "orders / TASK_PUT in orders_agent" in out
    assert "sagesf.errors.Permanent" in out
    assert "lines[0].product_code" in out
    assert "'WIDGET-9'" in out  # the field value header
    # the original SalesOrder, decoded with its writer schema from the registry
    assert "avro io.sagesf.canonical.SalesOrder (schema id" in out
    assert f'"salesforce_opportunity_id": "{dead_letters["opp_ids"][0]}"' in out
    assert '"total_amount": "1234.50"' in out
    assert "traceparent: 00-abc-def-01" in out  # the record's own headers, not the error headers
    # the non-Avro dead letter is shown as text
    assert '{"CustomerNo": "ABC"}' in out
    assert "AR_Customer/-1/-1" in out

    code, out = run_cli("dlq", "show", "orders", "--offset", "2", env=dead_letters["env"])
    assert code == 0, out
    assert "AR_Customer" in out
    assert "SalesOrder" not in out

    code, out = run_cli("dlq", "show", "orders", "--offset", "0:99", env=dead_letters["env"])
    assert code == 1
    assert "not found" in out
    assert "0:99" in out


def test_dlq_replay_resends_original_bytes_and_headers_once(
    run_cli: RunCli, dead_letters: dict[str, Any], kafka_bootstrap: str
):
    origin, dlq, env = dead_letters["origin"], dead_letters["dlq"], dead_letters["env"]
    before = read_all(kafka_bootstrap, origin)
    assert len(before) == 2

    code, out = run_cli("dlq", "replay", "orders", "--all", "--dry-run", env=env)
    assert code == 0, out
    assert "would replay 2 dead letter(s), 1 skipped; nothing sent" in out
    assert "origin 'AR_Customer' is not a Kafka topic" in out
    assert len(read_all(kafka_bootstrap, origin)) == 2

    code, out = run_cli("dlq", "replay", "orders", "--all", env=env)
    assert code == 0, out
    assert "replayed 2 dead letter(s), 1 skipped" in out
    after = read_all(kafka_bootstrap, origin)
    replayed = [m for m in after if any(k == "__sagesf.replayed.from" for k, _ in headers_of(m))]
    assert len(replayed) == 2
    by_source = {dict(headers_of(m))["__sagesf.replayed.from"]: m for m in replayed}
    for i, (key, value) in enumerate(dead_letters["originals"]):
        msg = by_source[f"{dlq}/0/{i}".encode()]
        assert msg.key == key
        assert msg.value == value
        assert msg.partition == dead_letters["placed"][i][0]  # back on the original partition
        names = [k for k, _ in headers_of(msg)]
        assert ("traceparent", b"00-abc-def-01") in headers_of(msg)
        assert not [n for n in names if n.startswith(("__connect.errors.", "__sagesf.errors."))]

    # a second --all sends nothing: every replayable dead letter is marked
    code, out = run_cli("dlq", "replay", "orders", "--all", env=env)
    assert code == 0, out
    assert "nothing to replay: 3 dead letter(s) skipped" in out
    assert out.count("already replayed to") == 2
    assert len(read_all(kafka_bootstrap, origin)) == 4

    code, out = run_cli("dlq", "list", "--stage", "orders", env=env)
    assert cells(row_of(out, dlq))[:4] == ["orders", dlq, "3", "2"]

    # --again re-sends on purpose
    code, out = run_cli("dlq", "replay", "orders", "--offset", "0", "--again", env=env)
    assert code == 0, out
    assert "replayed 1 dead letter(s), 0 skipped" in out
    assert len(read_all(kafka_bootstrap, origin)) == 5


# --- sagesf replay ---------------------------------------------------------------------------------


@pytest.fixture
def stage_input(
    kafka_bootstrap: str, kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> dict[str, Any]:
    """A 2-partition input topic of stage `orders` (its own group), 10 records per partition, all
    processed (committed at 10). Partition 0's records are 1 s apart, partition 1's 0.5 s apart."""
    topic = new_topic("replay-in", partitions=2)
    base = (int(time.time()) - 1800) * 1000
    records: list[tuple[str, bytes | None, bytes | None, int | None, int | None]] = []
    for i in range(10):
        records.append((topic, b"k0", f"p0-{i}".encode(), 0, base + i * 1000))
        records.append((topic, b"k1", f"p1-{i}".encode(), 1, base + i * 500))
    produce(kafka_bootstrap, records)
    group = f"test-orders-{uuid.uuid4().hex[:8]}"
    set_committed(kafka_admin, group, topic, {0: 10, 1: 10})
    env = {
        "SAGESF_STAGES__ORDERS__GROUP_ID": group,
        "SAGESF_STAGES__ORDERS__INPUT_TOPICS": json.dumps([topic]),
    }
    return {"topic": topic, "group": group, "base": base, "env": env}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_replay_dry_run_counts_per_partition_then_moves_the_group_to_the_time(
    run_cli: RunCli, stage_input: dict[str, Any], kafka_admin: AdminClient
):
    topic, group, env = stage_input["topic"], stage_input["group"], stage_input["env"]
    point = iso(stage_input["base"] + 6000)  # partition 0: offset 6; partition 1: nothing that recent

    code, out = run_cli("replay", "orders", "--from", point, "--dry-run", env=env)
    assert code == 0, out
    # topic, partition, committed, new offset, end, re-processed, to process
    assert partition_row(out, topic, 0)[:7] == [topic, "0", "10", "6", "10", "4", "4"]
    assert partition_row(out, topic, 1)[:7] == [topic, "1", "10", "unchanged", "10", "0", "0"]
    assert "would re-process 4 record(s) on 1 partition(s)" in out
    assert committed(kafka_admin, group, topic, 2) == {0: 10, 1: 10}  # a dry run changes nothing

    code, out = run_cli("replay", "orders", "--from", point, env=env)
    assert code == 0, out
    assert f"moved group {group} on 1 partition(s)" in out
    assert committed(kafka_admin, group, topic, 2) == {0: 6, 1: 10}

    # by offset: partition 1 goes back to 8; partition 0 (at 6) is not moved forward past records
    # it has not processed yet
    code, out = run_cli("replay", "orders", "--from", "8", env=env)
    assert code == 0, out
    assert "would skip 2 records not processed yet" in partition_row(out, topic, 0)[7]
    assert committed(kafka_admin, group, topic, 2) == {0: 6, 1: 8}


def test_replay_refuses_while_the_stage_is_running(
    run_cli: RunCli, stage_input: dict[str, Any], kafka_bootstrap: str, kafka_admin: AdminClient
):
    topic, group, env = stage_input["topic"], stage_input["group"], stage_input["env"]
    running = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "client.id": "orders-worker-1",
        }
    )
    running.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while not running.assignment() and time.monotonic() < deadline:
            running.poll(0.2)
        assert running.assignment(), "the test consumer never joined its group"

        code, out = run_cli("replay", "orders", "--from", "0", env=env)
        assert code == 1, out
        assert f"consumer group '{group}' has 1 active member(s) (orders-worker-1@" in out
        assert "stop the stage first" in out
        assert committed(kafka_admin, group, topic, 2) == {0: 10, 1: 10}
    finally:
        running.close()

    code, out = run_cli("replay", "orders", "--from", "0", env=env)
    assert code == 0, out
    assert committed(kafka_admin, group, topic, 2) == {0: 0, 1: 0}


def test_replay_of_a_source_says_it_has_no_consumer_group(run_cli: RunCli):
    code, out = run_cli("replay", "salesforce-source", "--from", "1h")
    assert code == 2
    assert "is a source" in out
    assert "positions.v1" in out


# --- sagesf trace ----------------------------------------------------------------------------------


@pytest.fixture
def order_topics(kafka_admin: AdminClient, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Topics shaped like the pipeline's (and a dead-letter topic), in a topics file of their own."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    names = {
        "orders": (f"{prefix}.salesorder.v1", "SalesOrder"),
        "commands": (f"{prefix}.sage-commands.v1", "SageCommand"),
        "results": (f"{prefix}.sage-results.v1", "SageResult"),
        "status": (f"{prefix}.orderstatus.v1", "OrderStatusChange"),
        "dlq": (f"{prefix}.dlq-status.v1", None),
    }
    futures = kafka_admin.create_topics(
        [NewTopic(n, num_partitions=2, replication_factor=1) for n, _ in names.values()]
    )
    for future in futures.values():
        future.result(timeout=30)
    file = tmp_path / "topics.yaml"
    file.write_text(
        "topics:\n"
        + "".join(
            f"  - name: {name}\n    key_schema: string\n"
            + (f"    value_schema: {schema}\n" if schema else "")
            for name, schema in names.values()
        )
    )
    try:
        yield {"file": file, **{k: v[0] for k, v in names.items()}}
    finally:
        kafka_admin.delete_topics([n for n, _ in names.values()])


def test_trace_follows_an_opportunity_across_topics_in_time_order(
    run_cli: RunCli, order_topics: dict[str, Any], registry: SchemaRegistryClient, kafka_bootstrap: str
):
    t = order_topics
    opp, other_opp = f"006T{uuid.uuid4().hex[:14]}", f"006T{uuid.uuid4().hex[:14]}"
    corr, command_id = str(uuid.uuid4()), str(uuid.uuid4())
    so_no = f"S{uuid.uuid4().int % 10**6:06d}"

    def serdes(topic: str, schema: str) -> tuple[AvroSerde, AvroSerde]:
        return (
            AvroSerde.string_key(registry, topic, auto_register=True),
            AvroSerde.canonical(registry, schema, topic, auto_register=True),
        )

    (ok, ov), (ck, cv), (rk, rv), (sk, sv) = (
        serdes(t["orders"], "SalesOrder"),
        serdes(t["commands"], "SageCommand"),
        serdes(t["results"], "SageResult"),
        serdes(t["status"], "OrderStatusChange"),
    )
    order = sales_order(opp, corr)
    command = {
        "envelope": envelope("SAGESF", opp, corr),
        "command_id": command_id,
        "command": {"order": order, "customer": None},
    }
    result = {
        "envelope": envelope("SAGE100", so_no, corr),
        "command_id": command_id,
        "correlation_id": corr,
        "salesforce_record_id": opp,
        "kind": "CREATE_SALES_ORDER",
        "outcome": "CREATED",
        "sales_order_no": so_no,
        "order_status": "NEW",
        "source_status": "N",
    }
    # knows only the Sage order number: found through the result's link, not the opportunity ID
    status = {
        "envelope": envelope("SAGE100", so_no, None),
        "sales_order_no": so_no,
        "status": "OPEN",
        "previous_status": "NEW",
        "source_status": "O",
    }
    decoy = sales_order(other_opp, "corr-other")  # same customer, another opportunity
    base = (int(time.time()) - 600) * 1000
    # written newest first, so the table's order can only come from the timestamps
    produce(
        kafka_bootstrap,
        [
            (t["status"], sk.encode(so_no), sv.encode(status), None, base + 3000),
            (t["results"], rk.encode(opp), rv.encode(result), None, base + 2000),
            (t["commands"], ck.encode(opp), cv.encode(command), None, base + 1000),
            (t["orders"], ok.encode(other_opp), ov.encode(decoy), None, base + 500),
            (t["orders"], ok.encode(opp), ov.encode(order), None, base),
        ],
    )
    # the status processor could not map the status: dead-lettered now, after all the others
    status_bytes = sv.encode(status)
    DeadLetterWriter(
        ConfirmedProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap)), "status", t["dlq"]
    ).send(
        [
            (
                FailedRecord(t["status"], 0, 0, sk.encode(so_no), status_bytes),
                Permanent("no Opportunity stage for Sage status OPEN"),
                STAGE_TASK_PUT,
                "status_agent",
            )
        ]
    )
    env = {
        "SAGESF_STAGES__ORDERS__INPUT_TOPICS": json.dumps([t["orders"], t["results"]]),
        "SAGESF_STAGES__ORDERS__OUTPUT_TOPICS": json.dumps([t["commands"]]),
        "SAGESF_STAGES__SAGE_SINK__INPUT_TOPICS": json.dumps([t["commands"]]),
        "SAGESF_STAGES__SAGE_SINK__OUTPUT_TOPICS": json.dumps([t["results"]]),
        "SAGESF_STAGES__STATUS__INPUT_TOPICS": json.dumps([t["status"]]),
        "SAGESF_STAGES__STATUS__DLQ_TOPIC": t["dlq"],
    }

    code, out = run_cli("trace", opp, "--file", str(t["file"]), "--since", "1h", env=env)
    assert code == 0, out
    rows = [line for line in out.splitlines() if t["orders"].split(".")[0] in line and "│" in line]
    path = [t["orders"], t["commands"], t["results"], t["status"], t["dlq"]]
    assert [next(name for name in path if name in r) for r in rows] == path, out
    assert other_opp not in out
    assert "? -> orders" in rows[0]  # read by the orders stage
    assert "orders -> sage-sink" in rows[1]
    assert "outcome CREATED; SalesOrderNo " + so_no in rows[2]
    assert f"link {so_no}" in rows[3]
    assert "status OPEN" in rows[3]
    assert "status (dead letter)" in rows[4]
    assert "DEAD LETTER (TASK_PUT): Permanent: no Opportunity stage for Sage status OPEN" in rows[4]
    assert "5 record(s) in 5 topic(s)" in out

    # from the Sage side, without following links: only the records about the order number
    code, out = run_cli("trace", so_no, "--file", str(t["file"]), "--since", "1h", "--depth", "0", env=env)
    assert code == 0, out
    assert "3 record(s) in 5 topic(s)" in out
    assert t["results"] in out
    assert t["status"] in out
    assert t["dlq"] in out
    assert t["commands"] not in out


def test_trace_shows_no_secret_from_a_dead_letter_written_before_headers_were_masked(
    run_cli: RunCli, order_topics: dict[str, Any], kafka_bootstrap: str
):
    """A dead letter of an older version kept the driver's echo of the connection string."""
    t = order_topics
    so_no = f"S{uuid.uuid4().int % 10**6:06d}"
    password = "Tr0ub}4dor, Horse&Battery"
    echoed = "DSN=SOTAMAS90;UID=sgsf;PWD={" + password.replace("}", "}}") + "};Company=ABC"
    message = f"Sage 100 ODBC error while connecting: [08001] [ProvideX]Cannot connect with {echoed}"
    produce(
        kafka_bootstrap,
        [
            (
                t["dlq"],
                so_no.encode(),
                f'{{"SalesOrderNo": "{so_no}", "connection": "{echoed}"}}'.encode(),
                None,
                None,
            )
        ],
        headers=[
            ("__connect.errors.stage", b"TASK_POLL"),
            ("__connect.errors.exception.class.name", b"connectors.sage100.odbc.SageUnavailable"),
            ("__connect.errors.exception.message", message.encode()),
        ],
    )
    env = {"SAGESF_STAGES__STATUS__DLQ_TOPIC": t["dlq"]}

    code, out = run_cli("trace", so_no, "--file", str(t["file"]), "--since", "1h", "--values", env=env)
    assert code == 0, out
    assert "DEAD LETTER (TASK_POLL)" in out
    assert "Sage 100 ODBC error while connecting" in out
    shown = [piece for piece in ("Tr0ub", "4dor", "Horse", "Battery") if piece in out]
    assert not shown, out
