"""How fast the Sage 100 source gets changed rows into Kafka, and what one poll costs as tables grow.

`python bench/sage_poll.py [--changed 50000] [--sizes 10000,100000,1000000] [--bootstrap HOST:PORT]`

1. Throughput: an IM_ItemWarehouse table of `--table-rows` rows in the sandbox database (SQLite
   through unixODBC, like every test), `--changed` of them updated by a Sage user at times spread
   over an hour; then one poll, timed from the query to Kafka's acknowledgement of the last
   record and the stored position. Printed as changed rows/s for each stage added in turn:
   fetch (ODBC only), + detect and map (change stamps, hashes, canonical InventoryLevel records),
   + serialise (Avro, Confluent wire format), + produce and acknowledge (the real broker, acks=all,
   positions stored after every batch). The poller runs under the core's `SourceLoop`, as in
   `sagesf run sage-source`; the earlier stages hand it a publisher that drops or only encodes.
   Best of `--repeats` runs; the CPU time of this process per row (librdkafka's threads included)
   is printed too, as it depends less on what else the machine runs (the broker shares it).
2. Poll cost by table size: for each size, a steady-state poll that finds nothing new (it re-reads
   only the overlap window), and one that finds 1,000 changed rows. The cost must not grow with
   the table: the change query reads only rows at or after the watermark (the sandbox indexes
   (DateUpdated, TimeUpdated) as a SQL-backed install would; ProvideX reads the whole table, so on
   a real Sage the database side grows, never our side).

Needs the Kafka broker (`--bootstrap`, default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092); it
starts the sandbox schema registry on a free port for the run and deletes its own topics after.
Tables are filled with SQLite's recursive CTE through ODBC (bench-only SQL: fast to build a
million rows); everything measured runs the production code unchanged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.sage100.polling import ChangePoller, PollState
from connectors.sage100.source import STAGE
from connectors.sage100.streams import MappingContext, build_streams
from connectors.sage100.values import change_stamp
from sagesf.config import KafkaSettings
from sagesf.positions import PositionStore
from sagesf.producer import ConfirmedProducer
from sagesf.publisher import CanonicalPublisher, CanonicalRecord, DeadLetterItem
from sagesf.source import PositionWriter, Publisher, SourceBatch, SourceLoop
from sandbox.processes import free_port
from sandbox.registry import RegistryProcess
from sandbox.sage100.database import SandboxDatabase, create_database

ZONE = ZoneInfo("America/New_York")
OLD = date(2024, 1, 2)


def fill(db: SandboxDatabase, rows: int) -> None:
    """`rows` IM_ItemWarehouse rows (3 warehouses per item), last changed over 300 days long ago."""
    odbc = db.odbc()
    odbc.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
        "INSERT INTO IM_ItemWarehouse (ItemCode, WarehouseCode, BinLocation, QuantityOnHand, "
        "QuantityOnPurchaseOrder, QuantityOnSalesOrder, QuantityOnBackOrder, QuantityOnWorkOrder, "
        "QuantityInShipping, AverageCost, DateCreated, TimeCreated, UserCreatedKey, DateUpdated, "
        "TimeUpdated, UserUpdatedKey) "
        "SELECT printf('BENCH-%07d', i / 3), printf('%03d', i % 3), 'A-01', printf('%d.000000', i % 500), "
        "'0.000000', printf('%d.000000', i % 7), '0.000000', '0.000000', '0.000000', '12.500000', "
        "?, '08.0000', '0000000002', date(?, '+' || (i % 300) || ' days'), "
        "printf('%07.4f', (i % 86399) / 3600.0), '0000000002' FROM n",
        [rows, OLD, OLD],
    )
    odbc.close()


def change(db: SandboxDatabase, count: int, day: date, spread_hours: float = 1.0) -> None:
    """A Sage user changes `count` rows spread over the table, at times spread over an hour."""
    odbc = db.odbc()
    total = odbc.fetchall("SELECT COUNT(*) FROM IM_ItemWarehouse")[0][0]
    step = max(1, total // count)
    odbc.execute(
        "UPDATE IM_ItemWarehouse SET QuantityOnHand = printf('%d.000000', (rowid * 7) % 900), "
        "DateUpdated = ?, TimeUpdated = printf('%07.4f', 10 + ((rowid / ?) % 3600) * ? / 3600.0), "
        "UserUpdatedKey = '0000000003' WHERE rowid % ? = 0 AND rowid / ? <= ?",
        [day, step, spread_hours, step, step, count],
    )
    odbc.close()


class NullPublisher:
    """Takes records and drops them (fetch + detect + map only)."""

    def send(self, record: CanonicalRecord) -> None:
        return

    def confirm(self) -> None:
        return

    def dead_letter(self, items: Sequence[DeadLetterItem]) -> None:
        return


class EncodeOnly(NullPublisher):
    """Serialises like CanonicalPublisher.send but produces nothing."""

    def __init__(self, publisher: CanonicalPublisher) -> None:
        self.inner = publisher

    def send(self, record: CanonicalRecord) -> None:
        self.inner.encode(record)


class NullPositions:
    """Stores no position (the stages before "produce, ack, store position")."""

    def put_many(self, positions: dict[str, Any]) -> None:
        return


class OnePoll:
    """The poller as a sagesf Source: every read is one poll (SageSource without its schedule)."""

    name = STAGE

    def __init__(self, poller: ChangePoller) -> None:
        self.poller = poller

    def read(self) -> Iterator[SourceBatch]:
        return self.poller.read()


def poller(db: SandboxDatabase, topics: dict[str, str]) -> ChangePoller:
    ctx = MappingContext(ZONE, "UDF_SALESFORCE_ID", topics)
    stream = build_streams(db.tables, ["IM_ItemWarehouse"], ctx)["IM_ItemWarehouse"]
    return ChangePoller(
        stream,
        db.odbc(),
        integration_user="SGSF",
        zone=ZONE,
        overlap_seconds=10,
        state=PollState(),
        clock=lambda: datetime(2025, 6, 2, 18, tzinfo=UTC),
    )


def loop(p: ChangePoller, publisher: Publisher, positions: PositionWriter | None = None) -> SourceLoop:
    """What `sagesf run sage-source` runs, for this one poller."""
    return SourceLoop(OnePoll(p), publisher, positions or NullPositions())


def timed(run: SourceLoop) -> tuple[float, int]:
    started = time.perf_counter()
    run.run_once()
    source = run.source
    assert isinstance(source, OnePoll)
    return time.perf_counter() - started, source.poller.stats.rows


def measured(run: SourceLoop) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, rows) of one poll."""
    cpu = time.process_time()
    seconds, rows = timed(run)
    return seconds, time.process_time() - cpu, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--table-rows", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=50_000)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs per stage")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sage-bench-"))
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    run = uuid.uuid4().hex[:8]
    topics = {"inventory.v1": f"bench.inventory.{run}"}
    positions_topic = f"bench.positions.{run}"
    admin_topics = [
        NewTopic(topics["inventory.v1"], num_partitions=6, replication_factor=1),
        NewTopic(
            positions_topic, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"}
        ),
    ]
    for future in admin.create_topics(admin_topics).values():
        future.result(30)
    registry_proc = RegistryProcess(work / "registry", port=free_port(), topic=f"_schemas-bench-{run}")
    try:
        url = registry_proc.start(args.bootstrap)
        kafka = KafkaSettings(bootstrap_servers=args.bootstrap)
        producer = ConfirmedProducer(kafka)
        registry = SchemaRegistryClient({"url": url})
        publisher = CanonicalPublisher(producer, registry, stage=STAGE, auto_register=True)
        positions = PositionStore(kafka, f"bench-{run}", topic=positions_topic, producer=producer)
        print(f"cores: {os.cpu_count()}  broker: {args.bootstrap}  registry: {url}")

        # --- 1. throughput --------------------------------------------------------------------
        print(f"\nthroughput: {args.changed:,} changed rows of a {args.table_rows:,}-row IM_ItemWarehouse")
        db = create_database(work / "throughput.db")
        fill(db, args.table_rows)
        change(db, args.changed, date(2025, 6, 2))
        stages: list[tuple[str, Publisher | None, PositionWriter | None]] = [
            ("fetch (ODBC)", None, None),
            ("+ detect, convert, map", NullPublisher(), None),
            ("+ serialise (Avro)", EncodeOnly(publisher), None),
            ("+ produce, ack, store position", publisher, positions),
        ]
        print(f"  {'stage':<34} {'rows':>9}  {'rows/s':>10}  {'CPU us/row':>10}")
        for label, pub, stored in stages:
            best_rate, best_cpu, rows = 0.0, float("inf"), 0
            for _ in range(args.repeats):
                p = poller(db, topics)
                p.state = PollState(stamp=datetime(2025, 6, 1).toordinal() * 24_000_000)
                if pub is None:  # the same query, rows only fetched
                    sql, params = p.query(p.lower_bound(p.state.stamp))
                    started, cpu = time.perf_counter(), time.process_time()
                    rows = sum(len(c) for c in p.odbc.rows(sql, params, 5000))
                    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                else:
                    seconds, cpu, rows = measured(loop(p, pub, stored))
                p.odbc.close()
                best_rate, best_cpu = max(best_rate, rows / seconds), min(best_cpu, cpu / rows * 1e6)
            print(f"  {label:<34} {rows:>9,}  {best_rate:>10,.0f}  {best_cpu:>10.1f}")

        # --- 2. poll cost by table size ---------------------------------------------------------
        print("\npoll cost by table size (one steady-state poll; the change index as a SQL install has it)")
        print(f"  {'rows':>10}  {'build s':>8}  {'nothing new':>12}  {'1,000 changed':>14}  {'rows read':>9}")
        for size in (int(s) for s in args.sizes.split(",")):
            started = time.perf_counter()
            sized = create_database(work / f"size-{size}.db")
            fill(sized, size)
            build = time.perf_counter() - started
            p = poller(sized, topics)
            steady = loop(p, publisher)
            # a source that published the table already: its watermark is the newest row
            day, hours = p.odbc.fetchall(
                "SELECT DateUpdated, MAX(TimeUpdated) FROM IM_ItemWarehouse "
                "WHERE DateUpdated = (SELECT MAX(DateUpdated) FROM IM_ItemWarehouse) GROUP BY DateUpdated"
            )[0]
            p.state = PollState(stamp=change_stamp(day, hours))
            steady.run_once()  # reads the overlap window once: `seen` knows it from now on
            idle, _ = min(timed(steady) for _ in range(3))
            change(sized, 1000, date(2025, 6, 3), spread_hours=0.01)
            busy, rows = timed(steady)
            p.odbc.close()
            print(
                f"  {size:>10,}  {build:>8.1f}  {idle * 1000:>9.1f} ms  {busy * 1000:>11.1f} ms  {rows:>9,}"
            )
            Path(sized.path).unlink()
        producer.close()
    finally:
        registry_proc.stop()
        admin.delete_topics([topics["inventory.v1"], positions_topic, f"_schemas-bench-{run}"])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
