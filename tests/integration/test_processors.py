"""The processors worker on the real broker and the sandbox registry.

What a user would notice: a won opportunity becomes exactly one Sage order command with its
products mapped to Sage items and its prices in Sage's currency; an unknown customer goes to Sage
with its first order, is linked only once Sage answered, and the account's next orders wait for
that answer; an unknown product is dead-lettered and shown on the opportunity, and the same
record replayed after the lookup table is fixed makes the order; Sage's order number and
statuses come back to Salesforce; a burst of stock changes is a few Salesforce writes; and a
restarted worker still knows everything it knew.

One worker process (`sagesf run processors`) serves the whole module, on this module's own
copies of the topics of topics.yaml (names prefixed, so other tests on the same broker are not
disturbed); the last test restarts it. Inputs are canonical records encoded with sagesf.serde;
outputs are read back by a consumer with assigned partitions (no group join).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from processors.commands import command_id
from processors.config import TOPICS
from sagesf.config import KafkaSettings
from sagesf.link_state import CUSTOMER, REJECTED, SUGGESTED, PairState
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroSerde
from sagesf.topic_plan import apply, plan
from sagesf.topics_file import TopicsFile, load_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = {
    "sage.commands.v1": "SageCommand",
    "salesforce.commands.v1": "SalesforceCommand",
    "dlq.orders.v1": None,  # original bytes of a SalesOrder (or other input)
    "dlq.customers.v1": None,
    "dlq.status.v1": None,
}


def sf_id(prefix: str) -> str:
    """An 18-character Salesforce-like record ID with the object's key prefix."""
    return prefix + uuid.uuid4().hex[:15].upper()


def envelope(source: str, record_id: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": source,
        "source_record_id": record_id,
        "correlation_id": None,
    }


def line(no: int, product: str, qty: str, price: str) -> dict[str, Any]:
    return {
        "line_no": no,
        "salesforce_line_id": sf_id("00k"),
        "product_code": product,
        "description": f"Line {no} " + "x" * 40,
        "quantity_ordered": Decimal(qty),
        "unit_price": Decimal(price),
        "extension_amount": (Decimal(qty) * Decimal(price)).quantize(Decimal("0.01")),
    }


def sales_order(
    opp: str,
    lines: list[dict[str, Any]],
    *,
    account: str | None = None,
    external: str | None = None,
    currency: str = "USD",
    name: str = "Acme Hardware",
) -> dict[str, Any]:
    division, _, number = (external or "").partition("-")
    return {
        "envelope": envelope("SALESFORCE", opp),
        "salesforce_opportunity_id": opp,
        "customer": {
            "salesforce_account_id": account,
            "ar_division_no": division or None,
            "customer_no": number or None,
            "name": name,
        },
        "status": "NEW",
        "source_status": "Closed Won",
        "order_date": date(2026, 11, 20),
        "customer_po_no": "PO-2026-000000000000000042",  # 26 characters; Sage keeps 15
        "currency_code": currency,
        "bill_to": {
            "name": name,
            "line1": "1200 Industrial Parkway Building 7 Loading Dock B",
            "city": "  Springfield ",
            "state": "Illinois",
            "postal_code": "62701",
            "country_code": "US",
        },
        "total_amount": sum((ln["extension_amount"] for ln in lines), Decimal("0.00")),
        "lines": lines,
    }


def customer_record(
    account: str, *, division: str | None = None, number: str | None = None, name: str = "Brand New Customer"
) -> dict[str, Any]:
    return {
        "envelope": envelope(
            "SAGE100" if number else "SALESFORCE", f"{division}-{number}" if number else account
        ),
        "salesforce_account_id": account,
        "ar_division_no": division,
        "customer_no": number,
        "name": name,
        "status": "ACTIVE",
        "terms_code": "30",
        "telephone_no": "+1 217 555 0100",
        "billing_address": {
            "line1": "1 Main Street",
            "city": "Toronto",
            "state": "Ontario",
            "postal_code": "M5V 2T6",
            "country_code": "Canada",
        },
    }


def item_record(
    code: str, *, product_code: str | None = None, price: str | None = None, active: bool = True
) -> dict[str, Any]:
    return {
        "envelope": envelope("SAGE100", code),
        "item_code": code,
        "product_code": product_code,
        "description": f"Item {code}",
        "item_type": "REGULAR",
        "standard_unit_price": Decimal(price) if price else None,
        "active": active,
    }


def sage_result(
    kind: str,
    outcome: str,
    record: str,
    *,
    order_no: str | None = None,
    customer: tuple[str, str, str] | None = None,
    reason: str | None = None,
    created: bool = False,
) -> dict[str, Any]:
    return {
        "envelope": {**envelope("SAGE100", order_no or record)},
        "command_id": command_id(
            "CreateSalesOrder" if kind == "CREATE_SALES_ORDER" else "UpsertCustomer", record
        ),
        "salesforce_record_id": record,
        "kind": kind,
        "outcome": outcome,
        "sales_order_no": order_no,
        "order_status": "NEW" if order_no else None,
        "source_status": "N" if order_no else None,
        "customer": (
            {
                "salesforce_account_id": customer[0],
                "ar_division_no": customer[1],
                "customer_no": customer[2],
                "name": None,
            }
            if customer
            else None
        ),
        "customer_created": created,
        "error": (
            {"reason": reason, "field": "lines[1].ItemCode", "value": None, "error_class": "Permanent"}
            if reason
            else None
        ),
    }


def link_state(world: World, state: str, account: str, customer: str) -> TopicPartition:
    """What `sagesf link` writes for a customer pair (link.state.v1, JSON); where it landed."""
    pair = PairState(kind=CUSTOMER, salesforce_id=account, sage_id=customer, state=state, how="operator")
    world.producer.send(world.topic("link.state.v1"), pair.to_json(), pair.key.encode())
    [done] = world.producer.confirm()
    return TopicPartition(world.topic("link.state.v1"), done.partition, done.offset)


def customer_created_with(opp: str, order_no: str, customer: tuple[str, str, str]) -> dict[str, Any]:
    """Sage's answer to the order of `opp` that brought its Account's customer: both written."""
    return sage_result(
        "CREATE_SALES_ORDER", "CREATED", opp, order_no=order_no, customer=customer, created=True
    )


def inventory_level(
    item: str, warehouse: str, on_hand: str, available: str, when: datetime
) -> dict[str, Any]:
    return {
        "envelope": {**envelope("SAGE100", f"{item}-{warehouse}"), "event_time": when},
        "item_code": item,
        "warehouse_code": warehouse,
        "quantity_on_hand": Decimal(on_hand),
        "quantity_on_sales_order": Decimal(0),
        "quantity_on_back_order": Decimal(0),
        "quantity_available": Decimal(available),
    }


# --- the world: topics, a worker process, a producer and a collector of outputs --------------


@dataclass
class Output:
    topic: str  # topics.yaml name
    key: str | None
    value: Any
    raw_key: bytes | None
    raw_value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


SHADOW_EMAIL = "shadow@acme.test"
SHADOW_NOTE = "shadow line note"


class World:
    def __init__(self, bootstrap: str, registry_url: str, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"tproc-{uuid.uuid4().hex[:8]}."
        self.app_id = f"sagesf-processors-test-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp
        self.registry = SchemaRegistryClient({"url": registry_url})
        self.registry_url = registry_url
        self.producer = ConfirmedProducer(KafkaSettings(bootstrap_servers=bootstrap))
        self.mappings = tmp / "mappings"
        shutil.copytree(REPO / "mappings", self.mappings)
        # a candidate mapping in shadow the whole time: every customer gets an e-mail default,
        # every order line a comment default
        self.shadow = tmp / "shadow-mappings"
        shutil.copytree(REPO / "mappings", self.shadow)
        for file, old, new in (
            (
                "customers.yaml",
                "email_address: {sage: EmailAddress}",
                f"email_address: {{sage: EmailAddress, default: {SHADOW_EMAIL}}}",
            ),
            (
                "orders.yaml",
                "comment_text: {sage: CommentText}",
                f'comment_text: {{sage: CommentText, default: "{SHADOW_NOTE}"}}',
            ),
        ):
            path = self.shadow / file
            assert old in path.read_text()
            path.write_text(path.read_text().replace(old, new))
        self.metrics_port = _free_port()
        self.outputs: list[Output] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / "worker.log"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def create_topics(self, admin: AdminClient) -> None:
        declared = load_topics(REPO / "topics.yaml")
        mine = [
            spec.model_copy(update={"name": self.topic(spec.name)})
            for spec in declared.topics
            if spec.name in TOPICS
        ]
        topics = TopicsFile(defaults=declared.defaults, scope=[self.prefix + "*"], topics=mine)
        outcomes = apply(admin, plan(admin, topics, replication_factor=1))
        assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAGESF_")}
        env.update(
            {
                "SAGESF_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "SAGESF_REGISTRY__URL": self.registry_url,
                "SAGESF_REGISTRY__AUTO_REGISTER": "true",
                "SAGESF_METRICS__HOST": "127.0.0.1",
                "SAGESF_METRICS__PORT": str(self.metrics_port),
                "SAGESF_PROCESSORS__APP_ID": self.app_id,
                "SAGESF_PROCESSORS__TOPICS": json.dumps({name: self.topic(name) for name in TOPICS}),
                "SAGESF_PROCESSORS__MAPPINGS_DIR": str(self.mappings),
                "SAGESF_PROCESSORS__SHADOW_MAPPINGS_DIR": str(self.shadow),
                "SAGESF_PROCESSORS__SALESFORCE_METADATA": str(REPO / "mappings/metadata/salesforce.yaml"),
                "SAGESF_PROCESSORS__SAGE_METADATA": str(REPO / "mappings/metadata/sage100.yaml"),
                "SAGESF_PROCESSORS__REPLICATION_FACTOR": "1",
                "SAGESF_PROCESSORS__DATA_DIR": str(self.tmp / "faust"),
                "SAGESF_PROCESSORS__SESSION_TIMEOUT": "6",
                "SAGESF_PROCESSORS__HEARTBEAT_INTERVAL": "0.5",
                "SAGESF_PROCESSORS__REBALANCE_TIMEOUT": "10",
                "SAGESF_PROCESSORS__COMMIT_INTERVAL": "0.5",
                "SAGESF_PROCESSORS__INVENTORY_FLUSH_INTERVAL": "1.5",
                "SAGESF_PROCESSORS__HELD_ORDER_SWEEP_INTERVAL": "2",
                "SAGESF_PROCESSORS__MAPPINGS_RELOAD_INTERVAL": "0.5",
                "SAGESF_PROCESSORS__RETRY_LIMIT_SECONDS": "30",
            }
        )
        return env

    # --- the worker ---

    def start_worker(self, timeout: float = 60.0) -> None:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sagesf", "run", "processors"],
            cwd=self.tmp,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited with {self.process.returncode}:\n{self.log_tail()}")
            health = self.healthz()
            if health and health["components"].get("tables", {}).get("status") == "ok":
                return
            time.sleep(0.3)
        pytest.fail(f"the worker did not become ready in {timeout} s:\n{self.log_tail()}")

    def stop_worker(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def healthz(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except (OSError, ValueError):
            return None

    def add_product_lookup(self, product_code: str, item_code: str, timeout: float = 10.0) -> None:
        """A row in products.yaml's lookup table (as operations, or the console's grid, add one),
        returned once the running worker reloaded the mappings."""
        before = self._reloads()
        products = self.mappings / "products.yaml"
        row = f"lookup:\n  {product_code}: {item_code}\n"
        products.write_text(products.read_text().replace("lookup:\n", row, 1))
        deadline = time.monotonic() + timeout
        while self._reloads() <= before:
            assert time.monotonic() < deadline, self.log_tail()
            time.sleep(0.2)

    def _reloads(self) -> float:
        """How many times the worker reloaded the mappings successfully."""
        sample = 'sagesf_processor_mapping_reloads_total{result="ok"} '
        found = [line for line in self.metrics().splitlines() if line.startswith(sample)]
        return float(found[0].split()[-1]) if found else 0.0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
            text: str = resp.read().decode()
            return text

    # --- inputs ---

    def produce(self, name: str, schema: str, key: str, value: dict[str, Any]) -> tuple[bytes, bytes]:
        key_bytes, value_bytes, _ = self.produce_at(name, schema, key, value)
        return key_bytes, value_bytes

    def produce_at(
        self, name: str, schema: str, key: str, value: dict[str, Any]
    ) -> tuple[bytes, bytes, TopicPartition]:
        """Produce one record; also returns where it landed (partition, offset)."""
        topic = self.topic(name)
        key_bytes = AvroSerde.string_key(self.registry, topic, auto_register=True).encode(key)
        value_bytes = AvroSerde.canonical(self.registry, schema, topic, auto_register=True).encode(value)
        self.producer.send(topic, value_bytes, key_bytes)
        [done] = self.producer.confirm()
        return key_bytes, value_bytes, TopicPartition(topic, done.partition, done.offset)

    def wait_committed(self, where: TopicPartition, timeout: float = 15.0) -> None:
        """Until the worker's group committed past `where` (so a restart will not re-read it)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.app_id})
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                [committed] = consumer.committed([TopicPartition(where.topic, where.partition)], timeout=5)
                if committed.offset > where.offset:
                    return
                time.sleep(0.2)
        finally:
            consumer.close()
        pytest.fail(f"the worker did not commit past {where}")

    def produce_raw(self, name: str, key: bytes | None, value: bytes | None) -> None:
        self.producer.send(self.topic(name), value, key)
        self.producer.confirm()

    # --- outputs ---

    def collect(self) -> None:
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "unused", "enable.auto.commit": False}
        )
        metadata = consumer.list_topics(timeout=10)
        assignment = [
            TopicPartition(self.topic(name), p, OFFSET_BEGINNING)
            for name in OUTPUTS
            for p in metadata.topics[self.topic(name)].partitions
        ]
        consumer.assign(assignment)
        serdes = {
            name: (
                AvroSerde.string_key(self.registry, self.topic(name), auto_register=True),
                AvroSerde.canonical(self.registry, schema, self.topic(name), auto_register=True)
                if schema
                else None,
            )
            for name, schema in OUTPUTS.items()
        }
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                name = str(msg.topic()).removeprefix(self.prefix)
                key_serde, value_serde = serdes[name]
                raw_key, raw_value = msg.key(), msg.value()
                out = Output(
                    name,
                    key_serde.decode(raw_key) if raw_key else None,
                    value_serde.decode(raw_value) if value_serde and raw_value else None,
                    raw_key,
                    raw_value,
                    dict(cast(list[tuple[str, bytes]], msg.headers() or [])),
                )
                with self._lock:
                    self.outputs.append(out)
        finally:
            consumer.close()

    def wait_for(
        self, what: str, match: Callable[[Output], bool], count: int = 1, timeout: float = 20.0
    ) -> list[Output]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [o for o in self.outputs if match(o)]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {count} x {what}; worker log:\n{self.log_tail(30)}")

    def matching(self, match: Callable[[Output], bool]) -> list[Output]:
        with self._lock:
            return [o for o in self.outputs if match(o)]

    def close(self) -> None:
        self._stop.set()
        self.stop_worker()
        self.producer.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def world(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    schema_registry_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    w = World(kafka_bootstrap, schema_registry_url, tmp_path_factory.mktemp("processors"))
    w.create_topics(kafka_admin)
    collector = threading.Thread(target=w.collect, daemon=True)
    collector.start()
    # reference data the orders need, before the worker starts (so it is read at once)
    w.produce("item.v1", "Item", "HRDW-1000", item_record("HRDW-1000", price="12.50"))
    w.produce("item.v1", "Item", "ELEC-2000", item_record("ELEC-2000", price="40.00"))
    w.produce(
        "item.v1", "Item", "PLMB-3000", item_record("PLMB-3000", product_code="FAUCET-CHROME", price="80.00")
    )
    w.produce("item.v1", "Item", "TOOL-1003", item_record("TOOL-1003", price="5.00"))
    w.start_worker()
    try:
        yield w
    finally:
        w.close()
        collector.join(5)
        # this module's topics, and the worker's own (changelogs, leader topic: named after the app)
        topics = [w.topic(n) for n in TOPICS]
        topics += [t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(w.app_id + "-")]
        kafka_admin.delete_topics(topics)


def sage_commands(world: World, key: str, kind: str) -> Callable[[Output], bool]:
    """CreateSalesOrder (`order`) or UpsertCustomer (`customer`) commands with this key."""
    return lambda o: (
        o.topic == "sage.commands.v1"
        and o.key == key
        and ("order" in o.value["command"]) == (kind == "order")
    )


def sf_commands(key: str, field_name: str | None = None) -> Callable[[Output], bool]:
    return lambda o: (
        o.topic == "salesforce.commands.v1"
        and o.key == key
        and (field_name is None or field_name in o.value["fields"])
    )


# --- the tests ----------------------------------------------------------------------------------


def test_won_opportunity_of_a_known_customer_becomes_one_sage_order(world: World) -> None:
    opp = sf_id("006")
    order = sales_order(
        opp,
        [
            line(1, "1001-HON-H252", "3", "10.00"),  # products.yaml lookup -> HRDW-1000
            line(2, "ELEC-2000", "2", "19.995"),  # the ItemCode itself, known from item.v1
            line(3, "FAUCET-CHROME", "1", "0"),  # item.v1 product_code -> PLMB-3000; price 0 -> Sage's
        ],
        external="01-ACME",
        currency="EUR",
    )
    world.produce("salesorder.v1", "SalesOrder", opp, order)

    [out] = world.wait_for("CreateSalesOrder", sage_commands(world, opp, "order"))
    command = out.value
    sent = command["command"]["order"]
    assert command["command_id"] == command_id("CreateSalesOrder", opp)
    assert sent["customer"]["ar_division_no"] == "01"
    assert sent["customer"]["customer_no"] == "ACME"
    assert [ln["item_code"] for ln in sent["lines"]] == ["HRDW-1000", "ELEC-2000", "PLMB-3000"]
    # EUR -> USD at 1.08, unit prices to cents (half up), extensions = quantity x price
    assert sent["currency_code"] == "USD"
    assert [ln["unit_price"] for ln in sent["lines"]] == [
        Decimal("10.80"),
        Decimal("21.59"),
        Decimal("80.00"),
    ]
    assert [ln["extension_amount"] for ln in sent["lines"]] == [
        Decimal("32.40"),
        Decimal("43.18"),
        Decimal("80.00"),
    ]
    assert sent["total_amount"] == Decimal("155.58")
    # the columns orders.yaml names, at Sage's lengths and codes
    header, lines = command["command"]["header_columns"], command["command"]["line_columns"]
    assert header["CustomerPONo"] == "PO-2026-0000000"
    assert len(lines) == 3
    assert all(len(ln["ItemCodeDesc"]) <= 30 for ln in lines)
    bill_to = (header["BillToState"], header["BillToCountryCode"], header["BillToCity"])
    assert bill_to == ("IL", "USA", "Springfield")
    assert header["BillToAddress1"] == "1200 Industrial Parkway"
    assert header["BillToAddress2"] == "Building 7 Loading Dock B"
    # exactly one command for one event
    time.sleep(1.0)
    assert len(world.matching(sage_commands(world, opp, "order"))) == 1


def test_duplicate_order_events_carry_the_same_command_id(world: World) -> None:
    opp = sf_id("006")
    order = sales_order(opp, [line(1, "HRDW-1000", "1", "12.50")], external="01-ACME")
    world.produce("salesorder.v1", "SalesOrder", opp, order)
    world.produce("salesorder.v1", "SalesOrder", opp, {**order, "envelope": envelope("SALESFORCE", opp)})

    outs = world.wait_for("2 CreateSalesOrder", sage_commands(world, opp, "order"), count=2)
    assert {o.value["command_id"] for o in outs} == {command_id("CreateSalesOrder", opp)}
    assert {o.key for o in outs} == {opp}


def test_an_unknown_customer_goes_to_sage_with_its_first_order_and_is_linked_by_the_answer(
    world: World,
) -> None:
    account, opp, second = sf_id("001"), sf_id("006"), sf_id("006")
    # the Salesforce source published the account (no Sage numbers yet), and the worker has it
    *_, customer_at = world.produce_at(
        "customer.v1", "Customer", account, customer_record(account, name="Brand New Customer")
    )
    world.wait_committed(customer_at)
    world.produce(
        "salesorder.v1",
        "SalesOrder",
        opp,
        sales_order(opp, [line(1, "HRDW-1000", "4", "12.50")], account=account, name="Brand New Customer"),
    )

    # one command: the order, bringing the customer from the account's own record (customer.v1)
    [create] = world.wait_for("CreateSalesOrder", sage_commands(world, opp, "order"))
    assert create.value["command_id"] == command_id("CreateSalesOrder", opp)
    assert create.value["command"]["order"]["customer"]["salesforce_account_id"] == account
    assert create.value["command"]["order"]["customer"]["customer_no"] is None
    customer = create.value["command"]["customer"]
    assert customer["salesforce_account_id"] == account
    assert customer["name"] == "Brand New Customer"
    assert customer["terms_code"] == "01"  # customers.yaml: Net 30 ("30") -> Sage terms 01
    assert customer["billing_address"]["country_code"] == "CAN"
    assert customer["billing_address"]["state"] == "ON"
    # the account's next order waits for Sage's answer to the first
    world.produce(
        "salesorder.v1",
        "SalesOrder",
        second,
        sales_order(second, [line(1, "HRDW-1000", "1", "12.50")], account=account, name="Brand New Customer"),
    )
    [pending] = world.wait_for(
        "Pending on the second opportunity", sf_commands(second, "Sage_Sync_Status__c")
    )
    assert pending.value["fields"]["Sage_Sync_Status__c"] == "Pending"
    time.sleep(1.5)
    assert not world.matching(sage_commands(world, second, "order")), "the second order must wait"
    assert not world.matching(sage_commands(world, account, "customer")), "no customer before its order"
    assert not world.matching(sf_commands(account)), "no link before Sage made the customer"

    world.produce(
        "sage.results.v1",
        "SageResult",
        opp,
        customer_created_with(opp, "0000201", (account, "01", "SF000123")),
    )

    [account_update] = world.wait_for("ExternalID__c on the Account", sf_commands(account, "ExternalID__c"))
    assert account_update.value["fields"]["ExternalID__c"] == "01-SF000123"
    assert account_update.value["fields"]["Sage_Sync_Status__c"] == "Synced"
    assert account_update.value["operation"] == "UPDATE"
    [released] = world.wait_for("the held order", sage_commands(world, second, "order"))
    assert released.value["command"]["order"]["customer"]["customer_no"] == "SF000123"
    assert released.value["command"]["customer"] is None


def test_unknown_product_is_dead_lettered_shown_and_replayed_after_the_fix(world: World) -> None:
    opp = sf_id("006")
    order = sales_order(
        opp, [line(1, "HRDW-1000", "1", "12.50"), line(2, "GADGET-NEW", "2", "9.00")], external="01-ACME"
    )
    key_bytes, value_bytes = world.produce("salesorder.v1", "SalesOrder", opp, order)

    [dead] = world.wait_for("dead letter", lambda o: o.topic == "dlq.orders.v1" and o.raw_key == key_bytes)
    assert dead.raw_value == value_bytes  # the original bytes, untouched
    message = dead.headers["__connect.errors.exception.message"].decode()
    assert "GADGET-NEW" in message
    assert "lines[2]" in message
    assert dead.headers["__connect.errors.topic"].decode() == world.topic("salesorder.v1")
    [error] = world.wait_for("Error on the opportunity", sf_commands(opp, "Sage_Sync_Status__c"))
    assert error.value["fields"]["Sage_Sync_Status__c"] == "Error"
    assert "GADGET-NEW" in error.value["fields"]["Sage_Sync_Message__c"]
    assert not world.matching(sage_commands(world, opp, "order"))

    # operations add the product to the lookup table; the running worker picks the edit up
    world.add_product_lookup("GADGET-NEW", "TOOL-1003")
    world.produce_raw("salesorder.v1", dead.raw_key, dead.raw_value)  # what `sagesf dlq replay` does

    [out] = world.wait_for("CreateSalesOrder after replay", sage_commands(world, opp, "order"))
    assert [ln["item_code"] for ln in out.value["command"]["order"]["lines"]] == ["HRDW-1000", "TOOL-1003"]


def test_sage_results_come_back_to_the_opportunity(world: World) -> None:
    opp, failing = sf_id("006"), sf_id("006")
    world.produce(
        "salesorder.v1",
        "SalesOrder",
        opp,
        sales_order(opp, [line(1, "HRDW-1000", "1", "12.50")], external="01-ACME"),
    )
    key_bytes, value_bytes = world.produce(
        "salesorder.v1",
        "SalesOrder",
        failing,
        sales_order(failing, [line(1, "HRDW-1000", "1", "12.50")], external="01-ACME"),
    )
    world.wait_for(
        "both commands", lambda o: o.topic == "sage.commands.v1" and o.key in (opp, failing), count=2
    )

    world.produce(
        "sage.results.v1",
        "SageResult",
        opp,
        sage_result("CREATE_SALES_ORDER", "CREATED", opp, order_no="0004711"),
    )
    world.produce(
        "sage.results.v1",
        "SageResult",
        failing,
        sage_result("CREATE_SALES_ORDER", "REJECTED", failing, reason="ItemCode 'HRDW-1000' is on hold"),
    )

    [update] = world.wait_for("order number", sf_commands(opp, "Sage_Order_No__c"))
    assert update.value["operation"] == "UPDATE"
    assert update.value["sobject"] == "Opportunity"
    assert update.value["record_id"] == opp
    fields = update.value["fields"]
    assert fields["Sage_Order_No__c"] == "0004711"
    assert fields["Sage_Order_Status__c"] == "New"
    assert fields["Sage_Sync_Status__c"] == "Synced"
    # a refused order: dead letter of the original order bytes, and the reason on the opportunity
    [dead] = world.wait_for("rejected order", lambda o: o.topic == "dlq.orders.v1" and o.raw_key == key_bytes)
    assert dead.raw_value == value_bytes
    assert "is on hold" in dead.headers["__connect.errors.exception.message"].decode()
    [error] = world.wait_for("Error on the refused opportunity", sf_commands(failing, "Sage_Sync_Message__c"))
    assert error.value["fields"]["Sage_Sync_Status__c"] == "Error"
    assert "is on hold" in error.value["fields"]["Sage_Sync_Message__c"]


def status_change(
    number: str, status: str, code: str, *, opp: str | None = None, order: str | None = None
) -> dict[str, Any]:
    return {
        "envelope": envelope("SAGE100", number),
        "sales_order_no": number,
        "salesforce_opportunity_id": opp,
        "salesforce_order_id": order,
        "customer": None,
        "status": status,
        "previous_status": None,
        "source_status": code,
        "invoice_no": None,
    }


def test_sage_status_changes_are_mapped_to_salesforce(world: World) -> None:
    opp, order_id = sf_id("006"), sf_id("801")
    world.produce(
        "orderstatus.v1", "OrderStatusChange", "0000101", status_change("0000101", "CLOSED", "C", opp=opp)
    )
    world.produce(
        "orderstatus.v1",
        "OrderStatusChange",
        "0000102",
        status_change("0000102", "HOLD", "H", order=order_id),
    )
    world.produce(
        "orderstatus.v1",
        "OrderStatusChange",
        "0000103",
        status_change("0000103", "UNKNOWN", "Q", opp=sf_id("006")),
    )

    [closed] = world.wait_for("Completed", sf_commands(opp, "Sage_Order_Status__c"))
    assert closed.value["fields"] == {
        "Sage_Order_Status__c": "Completed",
        "NextStep": "Delivered (Sage order completed)",
    }
    [hold] = world.wait_for("Hold", sf_commands(order_id, "Sage_Order_Status__c"))
    assert hold.value["sobject"] == "Order"
    assert hold.value["fields"] == {"Sage_Order_Status__c": "Hold"}
    [dead] = world.wait_for("unmapped status", lambda o: o.topic == "dlq.status.v1")
    assert "'Q'" in dead.headers["__connect.errors.exception.message"].decode()


def test_an_order_activated_from_an_opportunity_is_written_back_to_both(world: World) -> None:
    opp, order_id = sf_id("006"), sf_id("801")
    activated = sales_order(opp, [line(1, "HRDW-1000", "1", "12.50")], external="01-ACME")
    activated.update(salesforce_order_id=order_id, source_status="Activated")
    world.produce("salesorder.v1", "SalesOrder", order_id, activated)
    [command] = world.wait_for("CreateSalesOrder", sage_commands(world, opp, "order"))
    assert command.value["command_id"] == command_id("CreateSalesOrder", opp)  # the sink's idempotency key

    world.produce(
        "sage.results.v1",
        "SageResult",
        opp,
        sage_result("CREATE_SALES_ORDER", "CREATED", opp, order_no="0000104"),
    )
    for record, sobject in ((opp, "Opportunity"), (order_id, "Order")):
        [update] = world.wait_for(f"order number on the {sobject}", sf_commands(record, "Sage_Order_No__c"))
        assert update.value["sobject"] == sobject
        assert update.value["fields"]["Sage_Order_No__c"] == "0000104"
    # Sage's status change names the Opportunity only (its UDF); the Order is remembered
    world.produce(
        "orderstatus.v1", "OrderStatusChange", "0000104", status_change("0000104", "OPEN", "O", opp=opp)
    )

    def status_update(o: Output) -> bool:
        return (
            o.topic == "salesforce.commands.v1"
            and o.value["fields"].get("Sage_Order_Status__c") == "Open"
            and "Sage_Order_No__c" not in o.value["fields"]
        )

    updates = world.wait_for(
        "Open on both records", lambda o: status_update(o) and o.key in (opp, order_id), 2
    )
    assert sorted(u.value["record_id"] for u in updates) == sorted([opp, order_id])


def salesforce_product(code: str) -> dict[str, Any]:
    """A Product2 as the Salesforce source publishes it on item.v1 (Sage_Item_Code__c = code)."""
    return {
        "envelope": envelope("SALESFORCE", code),
        "item_code": code,
        "salesforce_product_id": sf_id("01t"),
        "product_code": f"SF-{code}",
        "description": f"Product {code}",
        "item_type": "REGULAR",
        "active": True,
    }


def test_a_burst_of_stock_changes_is_coalesced_per_item(world: World) -> None:
    item = f"BURST-{uuid.uuid4().hex[:6].upper()}"
    unknown = f"NOPRODUCT-{uuid.uuid4().hex[:6].upper()}"
    world.produce("item.v1", "Item", item, salesforce_product(item))
    start = datetime.now(UTC)
    # stock of an item no Salesforce product exists for: nothing to write (it would be refused)
    world.produce(
        "inventory.v1", "InventoryLevel", f"{unknown}/000", inventory_level(unknown, "000", "5", "5", start)
    )
    for i in range(40):
        warehouse = "000" if i % 2 == 0 else "001"
        when = datetime.fromtimestamp(start.timestamp() + i / 1000, UTC)
        world.produce(
            "inventory.v1",
            "InventoryLevel",
            f"{item}/{warehouse}",
            inventory_level(item, warehouse, str(100 + i), str(90 + i), when),
        )

    key = f"Product2/{item}"
    world.wait_for("stock update", lambda o: o.topic == "salesforce.commands.v1" and o.key == key)
    time.sleep(3.5)  # two more flush intervals: nothing left to send
    updates = world.matching(lambda o: o.topic == "salesforce.commands.v1" and o.key == key)
    assert len(updates) <= 3, f"40 changes made {len(updates)} commands"
    last = updates[-1].value
    assert last["operation"] == "UPSERT"
    assert last["external_id_field"] == "Sage_Item_Code__c"
    assert last["external_id"] == item
    # the latest level of each warehouse, summed: 138 (000) + 139 (001)
    assert last["fields"]["Quantity_On_Hand__c"] == 277.0
    assert last["fields"]["Quantity_Available__c"] == 257.0
    assert last["fields"]["Inventory_Updated__c"].startswith(start.strftime("%Y-%m-%dT"))
    assert not world.matching(
        lambda o: o.topic == "salesforce.commands.v1" and o.key == f"Product2/{unknown}"
    )


def test_a_link_that_contradicts_an_existing_one_is_refused_both_ways(world: World) -> None:
    """An Account naming another Account's Sage customer, and a Sage customer naming an Account
    linked to another customer: both refused, with the reason on the Accounts and in a dead
    letter; nobody's customer is renamed or gets the order."""
    owner, hijacker, opp = sf_id("001"), sf_id("001"), sf_id("006")
    owned, twin = f"OWN{uuid.uuid4().hex[:6].upper()}", f"TWIN{uuid.uuid4().hex[:6].upper()}"
    world.produce(
        "customer.v1", "Customer", f"01-{owned}", customer_record(owner, division="01", number=owned)
    )
    world.wait_for("the owner's Account linked", sf_commands(owner, "ExternalID__c"))

    claim = customer_record(hijacker, division="01", number=owned, name="Hijack Ltd")
    claim["envelope"] = envelope("SALESFORCE", hijacker)  # Account.ExternalID__c = 01-<owned>
    world.produce("customer.v1", "Customer", f"01-{owned}", claim)
    order_key, _ = world.produce(
        "salesorder.v1",
        "SalesOrder",
        opp,
        sales_order(opp, [line(1, "HRDW-1000", "1", "12.50")], account=hijacker, external=f"01-{owned}"),
    )
    world.produce(
        "customer.v1",
        "Customer",
        f"01-{twin}",
        customer_record(owner, division="01", number=twin, name="Evil Twin"),  # UDF names `owner`
    )

    dead = world.wait_for("both customer records refused", lambda o: o.topic == "dlq.customers.v1", count=2)
    reasons = " | ".join(d.headers["__connect.errors.exception.message"].decode() for d in dead)
    assert f"01-{owned} is linked to Account {owner}" in reasons
    assert f"Account {owner} is linked to Sage customer 01-{owned}" in reasons
    world.wait_for("refused order", lambda o: o.topic == "dlq.orders.v1" and o.raw_key == order_key)

    def error_on(record: str) -> Callable[[Output], bool]:
        written = sf_commands(record, "Sage_Sync_Message__c")
        return lambda o: written(o) and o.value["fields"]["Sage_Sync_Status__c"] == "Error"

    for record in (hijacker, owner, opp):
        world.wait_for(f"Error on {record}", error_on(record))
    time.sleep(1.0)
    assert not world.matching(sage_commands(world, hijacker, "customer")), "01-<owned> renamed"
    assert not world.matching(sage_commands(world, opp, "order")), "ordered on the other customer"
    renamed = world.matching(
        lambda o: (
            sf_commands(owner)(o)
            and (
                o.value["fields"].get("Name") == "Evil Twin"
                or o.value["fields"].get("ExternalID__c") == f"01-{twin}"
            )
        )
    )
    assert not renamed, "the owner's Account renamed after the twin"


def test_records_waiting_for_link_review_get_nothing_created_on_the_other_side(world: World) -> None:
    """Record linking suggested an Account and a Sage customer may be one company: until an
    operator decides, the customer gets no Account and the Account's order brings no customer (it
    fails, saying so). Rejected (two companies), the replayed order brings its customer and the
    customer's next change makes its Account."""
    account, opp, number = sf_id("001"), sf_id("006"), f"REV{uuid.uuid4().hex[:6].upper()}"
    world.wait_committed(link_state(world, SUGGESTED, account, f"01-{number}"))
    sage_side = customer_record(account, division="01", number=number, name="Review Pending Ltd")
    sage_side["salesforce_account_id"] = None  # no UDF_SALESFORCE_ID: Sage does not know the Account
    *_, customer_at = world.produce_at("customer.v1", "Customer", f"01-{number}", sage_side)
    order_key, _ = world.produce(
        "salesorder.v1",
        "SalesOrder",
        opp,
        sales_order(opp, [line(1, "HRDW-1000", "1", "12.50")], account=account, name="Review Pending"),
    )
    [dead] = world.wait_for(
        "the order refused", lambda o: o.topic == "dlq.orders.v1" and o.raw_key == order_key
    )
    assert "waits for link review" in dead.headers["__connect.errors.exception.message"].decode()
    world.wait_committed(customer_at)  # handled: whatever it made is on its topic by now
    time.sleep(1.0)
    assert not world.matching(sage_commands(world, opp, "order")), "a customer made for the Account"
    assert not world.matching(sf_commands(f"Account/01-{number}")), "an Account made for the customer"

    world.wait_committed(link_state(world, REJECTED, account, f"01-{number}"))
    world.produce_raw("salesorder.v1", dead.raw_key, dead.raw_value)  # what `sagesf dlq replay` does
    [create] = world.wait_for("the replayed order", sage_commands(world, opp, "order"))
    assert create.value["command"]["customer"]["salesforce_account_id"] == account
    world.produce(
        "customer.v1", "Customer", f"01-{number}", {**sage_side, "envelope": envelope("SAGE100", number)}
    )
    [upsert] = world.wait_for("the customer's Account", sf_commands(f"Account/01-{number}"))
    assert upsert.value["operation"] == "UPSERT"


def test_metrics_and_health_are_served(world: World) -> None:
    health = world.healthz()
    assert health is not None
    assert health["status"] == "ok"
    text = world.metrics()
    assert 'sagesf_processor_records_total{outcome="commanded",stage="orders"}' in text
    assert "sagesf_processor_commands_total" in text
    assert 'sagesf_dead_letters_total{error_class="Permanent",stage="orders"}' in text
    # consumer lag per stage of the app's group, measured every 5 s
    deadline = time.monotonic() + 20
    while 'sagesf_consumer_lag{group="' not in text and time.monotonic() < deadline:
        time.sleep(1)
        text = world.metrics()
    assert 'stage="orders"' in text.split("sagesf_consumer_lag{", 1)[-1]


def _shadow_count(world: World, name: str, entity: str = "customers") -> float:
    found = re.search(
        rf'sagesf_processor_shadow_{name}_total{{direction="to_sage",entity="{entity}"}} (\S+)',
        world.metrics(),
    )
    return float(found.group(1)) if found else 0.0


def test_a_candidate_mapping_in_shadow_counts_the_records_it_would_send_differently(world: World) -> None:
    """SHADOW_MAPPINGS_DIR (World: an e-mail default) maps every live customer a second time:
    the differences are counted, and nothing but the current mapping's output is produced."""
    before = _shadow_count(world, "differences"), _shadow_count(world, "records")
    account = sf_id("001")
    *_, at = world.produce_at(
        "customer.v1", "Customer", account, customer_record(account, name="Shadowed Ltd")
    )
    world.wait_committed(at)
    deadline = time.monotonic() + 10
    while _shadow_count(world, "differences") <= before[0] and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _shadow_count(world, "differences") == before[0] + 1
    assert _shadow_count(world, "records") == before[1] + 1
    assert not [o for o in world.outputs if SHADOW_EMAIL in repr(o.value)], "the shadow mapping produced"


def test_a_candidate_mapping_in_shadow_compares_an_order_as_its_header_and_its_lines(world: World) -> None:
    """SHADOW_MAPPINGS_DIR (World: a line comment default) maps every live order a second time: the
    lines differ, the header does not, and the order is written with the current mapping only."""
    counts = ("records", "differences")
    before = {(e, n): _shadow_count(world, n, e) for e in ("order-header", "order-lines") for n in counts}
    opp = sf_id("006")
    order = sales_order(opp, [line(1, "HRDW-1000", "1", "12.50")], external="01-ACME")
    world.produce("salesorder.v1", "SalesOrder", opp, order)

    [out] = world.wait_for("CreateSalesOrder", sage_commands(world, opp, "order"))
    deadline = time.monotonic() + 10
    while _shadow_count(world, "differences", "order-lines") <= before[("order-lines", "differences")]:
        assert time.monotonic() < deadline, "no shadow difference counted for the order's lines"
        time.sleep(0.3)
    after = {key: _shadow_count(world, key[1], key[0]) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("order-header", "records"): 1,
        ("order-header", "differences"): 0,
        ("order-lines", "records"): 1,
        ("order-lines", "differences"): 1,
    }
    assert SHADOW_NOTE not in repr(out.value), "the shadow mapping was written"


def test_a_restarted_worker_rebuilds_its_tables_and_releases_a_held_order(
    world: World, kafka_admin: AdminClient
) -> None:
    account, opp, held, other = sf_id("001"), sf_id("006"), sf_id("006"), sf_id("006")
    known, known_opp = sf_id("001"), sf_id("006")
    world.produce(
        "salesorder.v1",
        "SalesOrder",
        opp,
        sales_order(opp, [line(1, "HRDW-1000", "2", "12.50")], account=account, name="After Restart Ltd"),
    )
    world.wait_for("the order bringing the new customer", sage_commands(world, opp, "order"))
    *_, order_at = world.produce_at(
        "salesorder.v1",
        "SalesOrder",
        held,
        sales_order(held, [line(1, "HRDW-1000", "1", "12.50")], account=account, name="After Restart Ltd"),
    )
    *_, customer_at = world.produce_at(
        "customer.v1", "Customer", "02-KNOWN", customer_record(known, division="02", number="KNOWN")
    )
    world.wait_for("Pending on the held order", sf_commands(held, "Sage_Sync_Status__c"))
    # the order is held; the tables live in changelog topics named after the app
    changelogs = {t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(world.app_id)}
    assert f"{world.app_id}-order-state-changelog" in changelogs
    assert f"{world.app_id}-customer-xref-changelog" in changelogs
    assert f"{world.app_id}-held-orders-changelog" in changelogs
    # the inputs are committed: the new worker will not read them again, only its changelogs
    world.wait_committed(order_at)
    world.wait_committed(customer_at)

    world.stop_worker()
    world.start_worker()
    # a customer learned before the restart is still known
    world.produce(
        "salesorder.v1",
        "SalesOrder",
        known_opp,
        sales_order(known_opp, [line(1, "HRDW-1000", "1", "12.50")], account=known),
    )
    [direct] = world.wait_for(
        "order of a customer known before the restart", sage_commands(world, known_opp, "order")
    )
    assert direct.value["command"]["order"]["customer"]["customer_no"] == "KNOWN"
    assert len(world.matching(sage_commands(world, opp, "order"))) == 1, "the first order was re-read"
    assert not world.matching(sage_commands(world, held, "order")), "the held order was re-read"

    world.produce(
        "sage.results.v1",
        "SageResult",
        opp,
        customer_created_with(opp, "0000202", (account, "01", "SF000999")),
    )
    [released] = world.wait_for("held order released after restart", sage_commands(world, held, "order"))
    assert released.value["command"]["order"]["customer"]["customer_no"] == "SF000999"
    # the customer learned after the restart: its next order is commanded at once
    world.produce(
        "salesorder.v1",
        "SalesOrder",
        other,
        sales_order(other, [line(1, "FAUCET-CHROME", "1", "80.00")], account=account),
    )
    [direct] = world.wait_for("order of a known customer", sage_commands(world, other, "order"))
    assert direct.value["command"]["order"]["customer"]["customer_no"] == "SF000999"
    assert direct.value["command"]["order"]["lines"][0]["item_code"] == "PLMB-3000"
