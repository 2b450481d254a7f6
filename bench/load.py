"""How fast `sagesf load salesforce` publishes an org's Accounts, and how many API calls it spends.

Starts a Kafka broker (unless `--bootstrap` names one), the sandbox schema registry and a new
Salesforce emulator, all in a temporary directory; creates `--accounts` Accounts (sObject
Collections, 200 a call, not timed); then loads them once per way in `--via`, each as a load of
its own (its own component name and topics), exactly as `sagesf load salesforce` does it: the
salesforce-source component's `load` hook, run by `InitialLoad.run` in this process (no progress
bars). The ways: `bulk`, Bulk API 2.0 query jobs (the default above
`SAGESF_SALESFORCE__LOAD__BULK_THRESHOLD`, 2,000); `rest`, REST query pages (the threshold raised
above the count). Printed per way: records published and read back from the topic, seconds from
the start of the run to the last position stored, records/s, CPU seconds of this process
(librdkafka's threads included), and the API calls the emulator counted: to build the load
(login, the mapped fields' check, describes) and to run it.

    .venv/bin/python bench/load.py [--accounts 50000] [--via bulk,rest] [--bootstrap HOST:PORT]

The emulator, the broker, the registry and this process share the machine (its core count is
printed): the rate is a floor for a real org, where Salesforce's servers do the query work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sagesf.load import LoadRequest
from sagesf.runner import assembled, component
from sandbox.kafka import KafkaBroker
from sandbox.processes import free_port
from sandbox.registry import RegistryProcess
from sandbox.salesforce.harness import RunningEmulator, start_emulator

BATCH = 200  # sObject Collections
TOPICS = {  # the source's canonical topics -> their cleanup policy
    "customer.v1": "compact",
    "salesorder.v1": "delete",
    "item.v1": "compact",
    "credit.requests.v1": "delete",
}


@dataclass
class Figures:
    via: str
    published: int
    on_topic: int
    seconds: float
    cpu: float
    build_calls: int
    load_calls: int


def create_accounts(emulator: RunningEmulator, count: int) -> None:
    sf: Any = emulator.connect(client="bench")
    for start in range(0, count, BATCH):
        records = [
            {
                "attributes": {"type": "Account"},
                "Name": f"Bench Account {i:06d}",
                "Phone": "(949) 555-0100",
                "BillingStreet": f"{i} Main St",
                "BillingCity": "Irvine",
                "BillingState": "CA",
                "BillingCountry": "United States",
                "Type": "Customer - Direct",
                **({"ExternalID__c": f"01-B{i:06d}"} if i % 2 else {}),
            }
            for i in range(start, min(start + BATCH, count))
        ]
        results = sf.restful(
            "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
        )
        if not all(r["success"] for r in results):
            raise RuntimeError(f"create failed: {next(r for r in results if not r['success'])}")


def api_calls(emulator: RunningEmulator) -> int:
    return int(emulator.admin("GET", "/admin/api-usage")["used"])


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The settings a load reads, as `sagesf load` finds them in its environment."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SAGESF_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)
        os.environ.update(saved)


def settings(
    emulator: RunningEmulator, bootstrap: str, registry: str, run: str, via: str, accounts: int
) -> dict[str, str]:
    topics = {name: f"bench.load.{run}.{via}.{name}" for name in TOPICS}
    return {
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SAGESF_REGISTRY__URL": registry,
        "SAGESF_REGISTRY__AUTO_REGISTER": "true",
        "SAGESF_SALESFORCE__LOGIN_URL": emulator.url,
        "SAGESF_SALESFORCE__AUTH_FLOW": "password",
        "SAGESF_SALESFORCE__CLIENT_ID": emulator.client_id,
        "SAGESF_SALESFORCE__CLIENT_SECRET": emulator.client_secret,
        "SAGESF_SALESFORCE__USERNAME": emulator.username,
        "SAGESF_SALESFORCE__PASSWORD": emulator.password,
        "SAGESF_SALESFORCE__SOURCE__COMPONENT": f"bench-load-{run}-{via}",
        "SAGESF_SALESFORCE__SOURCE__TOPICS": json.dumps(topics),
        "SAGESF_SALESFORCE__SOURCE__POSITIONS_TOPIC": f"bench.load.{run}.positions",
        "SAGESF_SALESFORCE__SOURCE__DEAD_LETTER_TOPIC": f"bench.load.{run}.{via}.dlq",
        "SAGESF_SALESFORCE__LOAD__BULK_THRESHOLD": str(accounts + 1 if via == "rest" else 2000),
    }


def create_topics(admin: AdminClient, run: str, vias: list[str]) -> list[str]:
    wanted = {f"bench.load.{run}.positions": "compact"}
    for via in vias:
        wanted |= {f"bench.load.{run}.{via}.{name}": policy for name, policy in TOPICS.items()}
        wanted[f"bench.load.{run}.{via}.dlq"] = "delete"
    new = [
        NewTopic(name, num_partitions=1, replication_factor=1, config={"cleanup.policy": policy})
        for name, policy in wanted.items()
    ]
    for future in admin.create_topics(new).values():
        future.result(30)
    return list(wanted)


def on_topic(bootstrap: str, topic: str) -> int:
    """Records on a one-partition topic (nothing is compacted within a bench run)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        return int(high - low)
    finally:
        consumer.close()


def load(emulator: RunningEmulator, values: dict[str, str], bootstrap: str, via: str) -> Figures:
    """One load, as `sagesf load salesforce` runs it."""
    source = component("salesforce-source")
    assert source.load is not None
    with environment(values), assembled(source) as process:
        before = api_calls(emulator)
        built = source.load(process, LoadRequest())
        after_build = api_calls(emulator)
        started, cpu = time.perf_counter(), time.process_time()
        if not built.run(threading.Event()):
            raise RuntimeError("the load stopped before it was done")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        calls = api_calls(emulator) - after_build
    topic = json.loads(values["SAGESF_SALESFORCE__SOURCE__TOPICS"])["customer.v1"]
    return Figures(
        via=via,
        published=built.progress.published(),
        on_topic=on_topic(bootstrap, topic),
        seconds=seconds,
        cpu=cpu,
        build_calls=after_build - before,
        load_calls=calls,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--via", default="bulk,rest", help="bulk, rest or both (comma-separated)")
    parser.add_argument("--bootstrap", default=None, help="a running Kafka broker (default: start one)")
    args = parser.parse_args(argv)
    vias = [v.strip() for v in args.via.split(",") if v.strip()]
    if not set(vias) <= {"bulk", "rest"}:
        parser.error("--via takes bulk, rest or bulk,rest")
    work = Path(tempfile.mkdtemp(prefix="sagesf-bench-load-"))
    run = uuid.uuid4().hex[:8]
    broker = None if args.bootstrap else KafkaBroker(work / "kafka")
    registry = RegistryProcess(work / "registry", port=free_port(), topic=f"_schemas-bench-{run}")
    emulator: RunningEmulator | None = None
    admin: AdminClient | None = None
    topics: list[str] = []
    try:
        bootstrap = args.bootstrap or broker.start()  # type: ignore[union-attr]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        url = registry.start(bootstrap)
        emulator = start_emulator(work / "emulator", api_limit=1_000_000)
        topics = create_topics(admin, run, vias)
        print(f"cores: {os.cpu_count()}  broker: {bootstrap}  accounts: {args.accounts:,}")
        started = time.perf_counter()
        create_accounts(emulator, args.accounts)
        print(f"created in {time.perf_counter() - started:.1f} s (Collections, not timed below)")
        time.sleep(1.1)  # the load takes what is stamped up to T0, Salesforce's clock to the second
        results = [
            load(emulator, settings(emulator, bootstrap, url, run, via, args.accounts), bootstrap, via)
            for via in vias
        ]
        print(
            f"\n  {'via':<5} {'published':>10} {'on topic':>10} {'seconds':>8} {'records/s':>10} "
            f"{'CPU s':>7} {'API calls: build':>17} {'load':>5}"
        )
        for f in results:
            print(
                f"  {f.via:<5} {f.published:>10,} {f.on_topic:>10,} {f.seconds:>8.1f} "
                f"{f.published / f.seconds:>10,.0f} {f.cpu:>7.1f} {f.build_calls:>17} {f.load_calls:>5}"
            )
    finally:
        if admin is not None and topics:
            admin.delete_topics([*topics, f"_schemas-bench-{run}"])
        if emulator is not None:
            emulator.stop()
        registry.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
