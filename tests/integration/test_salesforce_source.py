"""The Salesforce CDC source against the emulator (sockets) and the real broker and registry.

The source runs as a real subprocess (`sagesf run salesforce-source`), logged in with
the password flow, streaming with aiosfstream-ng from the module's own emulator (so ageing
events out of retention touches no other test), writing to this module's own topics (the
canonical names behind a unique prefix, through SAGESF_SALESFORCE__SOURCE__TOPICS). Changes are
made as a user would, with simple-salesforce; results are read back from Kafka and decoded with
the canonical schemas.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from confluent_kafka.schema_registry import SchemaRegistryClient

from sagesf.serde import AvroSerde
from sagesf.topic_scan import ScannedRecord
from tests.kit.kafka import read_topic

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CANONICAL_TOPICS = {
    "customer.v1": ("Customer", {"cleanup.policy": "compact"}),
    "salesorder.v1": ("SalesOrder", {}),
    "item.v1": ("Item", {"cleanup.policy": "compact"}),
    "credit.requests.v1": ("CreditCheckRequest", {}),
    "dlq.salesforce-source.v1": (None, {}),
    "positions.v1": (None, {"cleanup.policy": "compact"}),
}


# --- the emulator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """This module's own emulator (RunningEmulator), with held connects of 10 s."""
    from sandbox.salesforce.harness import start_emulator

    running = start_emulator(tmp_path_factory.mktemp("sf-source-emulator"))
    running.admin("POST", "/admin/streaming/settings", {"connectTimeoutMs": 10_000})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sf(emulator: Any) -> Any:
    """simple-salesforce as a user (no Sforce-Call-Options client): its changes are not echoes."""
    emulator.admin("DELETE", "/admin/faults")
    return emulator.connect()


# --- topics and the source process --------------------------------------------------------------


@dataclass
class Topics:
    prefix: str
    names: dict[str, str]

    def __getitem__(self, canonical: str) -> str:
        return self.names[canonical]


def create_topics(admin: AdminClient) -> Topics:
    prefix = f"test.sfsrc.{uuid.uuid4().hex[:8]}."
    names = {canonical: prefix + canonical for canonical in CANONICAL_TOPICS}
    new = [
        NewTopic(names[c], num_partitions=1, replication_factor=1, config=config)
        for c, (_, config) in CANONICAL_TOPICS.items()
    ]
    for future in admin.create_topics(new).values():
        future.result(timeout=30)
    return Topics(prefix, names)


@dataclass
class SourceProcess:
    """One `sagesf run salesforce-source` with its environment, log and metrics port."""

    env: dict[str, str]
    log_path: Path
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    outputs: list[Path] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        log_path = self.log_path.with_suffix(f".{self.starts}.log")
        self.outputs.append(log_path)
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sagesf", "run", "salesforce-source", "--log-level", "INFO"],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the source exited with {self.proc.returncode}:\n{self.log_tail()}")
            health = self.health()
            if health and health["components"].get("salesforce-streaming", {}).get("status") == "ok":
                return
            time.sleep(0.1)
        raise AssertionError(f"the source did not start streaming within {timeout:.0f} s:\n{self.log_tail()}")

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except OSError:
            return None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels` (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 60) -> str:
        text = "".join(p.read_text(errors="replace") for p in self.outputs if p.exists())
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def make_source(
    emulator: Any,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    schema_registry_url: str,
    tmp_path: Path,
) -> Iterator[Callable[..., tuple[SourceProcess, Topics]]]:
    """make_source(**env overrides) -> (a not yet started SourceProcess, its topics)."""
    from sandbox.processes import free_port

    made: list[SourceProcess] = []

    def make(**overrides: str) -> tuple[SourceProcess, Topics]:
        topics = create_topics(kafka_admin)
        client_id = f"sagesf-{uuid.uuid4().hex[:6]}"
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SAGESF_")},
            "PYTHONUNBUFFERED": "1",
            "SAGESF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SAGESF_REGISTRY__URL": schema_registry_url,
            "SAGESF_REGISTRY__AUTO_REGISTER": "true",
            "SAGESF_METRICS__HOST": "127.0.0.1",
            "SAGESF_METRICS__PORT": str(port),
            "SAGESF_SALESFORCE__LOGIN_URL": emulator.url,
            "SAGESF_SALESFORCE__AUTH_FLOW": "password",
            "SAGESF_SALESFORCE__CLIENT_ID": emulator.client_id,
            "SAGESF_SALESFORCE__CLIENT_SECRET": emulator.client_secret,
            "SAGESF_SALESFORCE__USERNAME": emulator.username,
            "SAGESF_SALESFORCE__PASSWORD": emulator.password,
            "SAGESF_SALESFORCE__CALL_OPTIONS_CLIENT": client_id,
            "SAGESF_SALESFORCE__SOURCE__COMPONENT": f"salesforce-source-{client_id}",
            "SAGESF_SALESFORCE__SOURCE__TOPICS": json.dumps(
                {
                    c: n
                    for c, n in topics.names.items()
                    if c not in ("positions.v1", "dlq.salesforce-source.v1")
                }
            ),
            "SAGESF_SALESFORCE__SOURCE__POSITIONS_TOPIC": topics["positions.v1"],
            "SAGESF_SALESFORCE__SOURCE__DEAD_LETTER_TOPIC": topics["dlq.salesforce-source.v1"],
            "SAGESF_SALESFORCE__SOURCE__START_LOOKBACK_SECONDS": "0",
            "SAGESF_SALESFORCE__SOURCE__CONNECTION_TIMEOUT": "5",
            "SAGESF_SALESFORCE__SOURCE__RETRY_MAXIMUM": "2",
            **overrides,
        }
        source = SourceProcess(env, tmp_path / f"source-{client_id}", port)
        made.append(source)
        return source, topics

    yield make
    for source in made:
        source.stop()


# --- reading the topics back ---------------------------------------------------------------------


class DecodedTopic:
    """One topic read from the beginning, Avro values decoded (or the raw bytes kept): `records`
    holds {"key", "value", "headers"} of everything read so far."""

    def __init__(self, bootstrap: str, registry_url: str, topic: str, schema: str | None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        registry = SchemaRegistryClient({"url": registry_url})
        self.value_serde = (
            AvroSerde.canonical(registry, schema, topic, auto_register=True) if schema else None
        )
        self.key_serde = AvroSerde.string_key(registry, topic, auto_register=True) if schema else None
        self.records: list[dict[str, Any]] = []

    def poll(self, seconds: float = 0.5) -> None:
        """Read the topic again after `seconds`: what the source produced meanwhile."""
        time.sleep(seconds)
        self.records = [self._decoded(r) for r in read_topic(self.bootstrap, self.topic)]

    def _decoded(self, record: ScannedRecord) -> dict[str, Any]:
        key, value = record.key, record.value
        return {
            "key": self.key_serde.decode(key) if self.key_serde and key else key,
            "value": self.value_serde.decode(value) if self.value_serde and value else value,
            "headers": dict(record.headers),
        }

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Records matching `predicate` once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records if predicate(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} of {count} expected records on {self.topic} after {timeout} s"
                )
            self.poll(0.3)


@pytest.fixture
def reader(kafka_bootstrap: str, schema_registry_url: str) -> Callable[[str, str | None], DecodedTopic]:
    def open_reader(topic: str, schema: str | None) -> DecodedTopic:
        return DecodedTopic(kafka_bootstrap, schema_registry_url, topic, schema)

    return open_reader


def tag() -> str:
    return uuid.uuid4().hex[:8]


# --- the behaviour a user sees --------------------------------------------------------------------


def test_closed_won_opportunity_with_three_lines_is_one_sales_order(make_source, reader, sf) -> None:
    source, topics = make_source()
    source.start()
    orders = reader(topics["salesorder.v1"], "SalesOrder")
    t = tag()
    account = sf.Account.create(
        {
            "Name": f"Won Corp {t}",
            "ExternalID__c": f"01-W{t}",
            "BillingStreet": "1 Main St\nSuite 200",
            "BillingCity": "Springfield",
            "BillingState": "IL",
            "BillingPostalCode": "62701",
            "BillingCountry": "United States",
        }
    )["id"]
    pricebook = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    products: list[tuple[str, str, Decimal, int]] = []
    for n, (price, qty) in enumerate([("10.00", 3), ("2.50", 4), ("100.00", 1)], start=1):
        product = sf.Product2.create(
            {"Name": f"Widget {n} {t}", "ProductCode": f"W{n}-{t}", "IsActive": True}
        )["id"]
        entry = sf.PricebookEntry.create(
            {"Pricebook2Id": pricebook, "Product2Id": product, "UnitPrice": price, "IsActive": True}
        )["id"]
        products.append((product, entry, Decimal(price), qty))
    opportunity = sf.Opportunity.create(
        {
            "Name": f"Big deal {t}",
            "AccountId": account,
            "StageName": "Prospecting",
            "CloseDate": "2025-03-14",
            "Pricebook2Id": pricebook,
            "PO_Number__c": f"PO-{t}",
        }
    )["id"]
    for n, (_product, entry, unit_price, qty) in enumerate(products, start=1):
        sf.OpportunityLineItem.create(
            {
                "OpportunityId": opportunity,
                "PricebookEntryId": entry,
                "Quantity": qty,
                "UnitPrice": str(unit_price),
                "SortOrder": n,
            }
        )
    sf.Opportunity.update(opportunity, {"StageName": "Closed Won"})

    (order,) = orders.wait_for(lambda r: r["key"] == opportunity)
    value = order["value"]
    assert value["salesforce_opportunity_id"] == opportunity
    assert value["status"] == "NEW"
    assert value["source_status"] == "Closed Won"
    assert value["customer"] == {
        "salesforce_account_id": account,
        "ar_division_no": "01",
        "customer_no": f"W{t}",
        "name": f"Won Corp {t}",
    }
    assert value["bill_to"]["line1"] == "1 Main St"
    assert value["bill_to"]["line2"] == "Suite 200"
    assert value["bill_to"]["country_code"] == "US"
    assert value["customer_po_no"] == f"PO-{t}"
    assert str(value["order_date"]) == "2025-03-14"
    lines = value["lines"]
    assert [line["line_no"] for line in lines] == [1, 2, 3]
    assert [line["product_code"] for line in lines] == [f"W1-{t}", f"W2-{t}", f"W3-{t}"]
    assert [line["salesforce_product_id"] for line in lines] == [p[0] for p in products]
    assert [line["quantity_ordered"] for line in lines] == [Decimal(3), Decimal(4), Decimal(1)]
    assert [line["unit_price"] for line in lines] == [p[2] for p in products]
    assert [line["extension_amount"] for line in lines] == [
        Decimal("30.00"),
        Decimal("10.00"),
        Decimal("100.00"),
    ]
    assert value["total_amount"] == Decimal("140.00")
    assert value["envelope"]["source_system"] == "SALESFORCE"
    assert value["envelope"]["source_record_id"] == opportunity

    # editing the won opportunity later is not a second order; nothing else arrived for it
    sf.Opportunity.update(opportunity, {"NextStep": "ship it"})
    marker = sf.Opportunity.create(
        {"Name": f"marker {t}", "AccountId": account, "StageName": "Closed Won", "CloseDate": "2025-03-15"}
    )["id"]
    orders.wait_for(lambda r: r["key"] == marker)
    assert len([r for r in orders.records if r["key"] == opportunity]) == 1

    # an Order becomes a SalesOrder when it is activated, with its OrderItems
    order_id = sf.Order.create(
        {"AccountId": account, "EffectiveDate": "2025-04-01", "Status": "Draft", "Pricebook2Id": pricebook}
    )["id"]
    sf.OrderItem.create(
        {"OrderId": order_id, "PricebookEntryId": products[1][1], "Quantity": 6, "UnitPrice": "2.50"}
    )
    sf.Order.update(order_id, {"Status": "Activated"})
    (activated,) = orders.wait_for(lambda r: r["key"] == order_id)
    assert activated["value"]["salesforce_order_id"] == order_id
    assert [(line["product_code"], line["quantity_ordered"]) for line in activated["value"]["lines"]] == [
        (f"W2-{t}", Decimal(6))
    ]
    assert activated["value"]["total_amount"] == Decimal("15.00")


def test_account_create_update_delete_are_customer_records(make_source, reader, sf) -> None:
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    t = tag()
    account = sf.Account.create({"Name": f"Acme {t}", "Phone": "555-0100", "Type": "Customer - Direct"})["id"]
    created = customers.wait_for(lambda r: r["key"] == account)[0]["value"]
    assert created["name"] == f"Acme {t}"
    assert created["salesforce_account_id"] == account
    assert created["customer_type"] == "DIR"
    assert created["telephone_no"] == "555-0100"
    assert created["deleted"] is False
    assert created["ar_division_no"] is None

    sf.Account.update(account, {"Name": f"Acme Renamed {t}"})
    customers.wait_for(lambda r: r["key"] == account and r["value"]["name"] == f"Acme Renamed {t}")
    sf.Contact.create(
        {"AccountId": account, "FirstName": "Jo", "LastName": f"Doe {t}", "Email": "jo@acme.test"}
    )
    with_contact = customers.wait_for(lambda r: r["key"] == account and r["value"]["contacts"])[0]["value"]
    assert [(c["name"], c["email_address"]) for c in with_contact["contacts"]] == [
        (f"Jo Doe {t}", "jo@acme.test")
    ]

    sf.Account.delete(account)
    deleted = customers.wait_for(lambda r: r["key"] == account and r["value"]["deleted"])[0]["value"]
    assert deleted["name"] == f"Acme Renamed {t}"
    states = [r["value"]["deleted"] for r in customers.records if r["key"] == account]
    assert states[-1] is True
    assert not any(states[:-1])


def test_kill_9_mid_stream_loses_no_change(make_source, reader, sf) -> None:
    t = tag()
    existing = [sf.Account.create({"Name": f"Old {i} {t}"})["id"] for i in range(10)]
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    expected: dict[str, str] = {}
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(30):
                if i % 3 == 2:
                    record_id = existing[i // 3]
                    name = f"Renamed {i} {t}"
                    sf.Account.update(record_id, {"Name": name})
                else:
                    name = f"New {i} {t}"
                    record_id = sf.Account.create({"Name": name})["id"]
                expected[record_id] = name
                time.sleep(0.05)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    customers.wait_for(lambda r: t in r["value"]["name"], count=5)
    source.kill()  # kill -9 in the middle of the stream
    writer.join(timeout=60)
    assert not failures, failures
    source.start()  # resumes from the replay IDs stored in positions.v1
    customers.wait_for(
        lambda r: r["key"] in expected and r["value"]["name"] == expected[r["key"]], count=30, timeout=30
    )
    ours = {(r["key"], r["value"]["name"]) for r in customers.records if t in r["value"]["name"]}
    latest = {key: name for key, name in ours if name == expected.get(key)}
    assert latest == expected  # every change's record is there, at least once
    stray = {(k, n) for k, n in ours if n != expected.get(k) and not n.startswith("Old ")}
    assert not stray  # and nothing that was not a change


def test_replay_id_outside_retention_recovers_through_catch_up_read(
    make_source, reader, sf, emulator
) -> None:
    t = tag()
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    first = sf.Account.create({"Name": f"Before {t}"})["id"]
    customers.wait_for(lambda r: r["key"] == first)
    time.sleep(0.5)  # the replay ID is stored after Kafka acknowledged the record
    source.stop()

    during = sf.Account.create({"Name": f"While down {t}"})["id"]
    sf.Account.update(first, {"Name": f"Changed while down {t}"})
    last = emulator.admin("GET", "/admin/streaming/clients")["lastReplayId"]
    assert emulator.admin("POST", "/admin/streaming/age-out", {"beforeReplayId": last + 1})["purged"] > 0

    source.start()
    customers.wait_for(lambda r: r["key"] == during)
    customers.wait_for(lambda r: r["key"] == first and r["value"]["name"] == f"Changed while down {t}")
    assert source.metric("sagesf_salesforce_catchup_reads_total", reason="replay_id_invalid") >= 1
    after = sf.Account.create({"Name": f"After {t}"})["id"]  # and the stream goes on
    customers.wait_for(lambda r: r["key"] == after)


def test_our_own_writes_do_not_come_back(make_source, reader, sf, emulator) -> None:
    from connectors.salesforce.client import connect
    from connectors.salesforce.config import SalesforceSettings

    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    settings = SalesforceSettings(
        login_url=emulator.url,
        auth_flow="password",
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
        username=emulator.username,
        password=emulator.password,
        call_options_client=source.env["SAGESF_SALESFORCE__CALL_OPTIONS_CLIENT"],
    )
    integration = connect(settings).sf  # what the sink writes with: Sforce-Call-Options client=<ours>
    t = tag()
    echo = integration.Account.create({"Name": f"Written by us {t}"})["id"]
    marker = sf.Account.create({"Name": f"Written by a user {t}"})["id"]
    customers.wait_for(lambda r: r["key"] == marker)
    customers.poll(1.0)
    assert not [r for r in customers.records if r["key"] == echo]
    assert source.metric("sagesf_salesforce_echoes_dropped_total") >= 1


def test_token_expiry_during_streaming_loses_nothing(make_source, reader, sf, emulator) -> None:
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    t = tag()
    before = sf.Account.create({"Name": f"Before expiry {t}"})["id"]
    customers.wait_for(lambda r: r["key"] == before)
    logins = source.metric("sagesf_salesforce_logins_total", outcome="ok")
    assert emulator.admin("POST", "/admin/tokens/expire")["expired"] >= 1
    changed = [sf.Account.create({"Name": f"After expiry {i} {t}"})["id"] for i in range(3)]
    for record_id in changed:
        customers.wait_for(lambda r, rid=record_id: r["key"] == rid)
    assert source.metric("sagesf_salesforce_logins_total", outcome="ok") > logins  # it logged in again

    # the server forgets the streaming client: it re-handshakes and resumes from its replay IDs
    assert emulator.admin("POST", "/admin/streaming/drop-clients")["dropped"] >= 1
    later = [sf.Account.create({"Name": f"After drop {i} {t}"})["id"] for i in range(3)]
    for record_id in later:
        customers.wait_for(lambda r, rid=record_id: r["key"] == rid)
    assert source.proc is not None
    assert source.proc.poll() is None


def test_unmappable_event_is_dead_lettered_and_the_next_one_produced(make_source, reader, sf) -> None:
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    dead = reader(topics["dlq.salesforce-source.v1"], None)
    t = tag()
    bad = sf.Account.create({"Name": f"Odd type {t}", "Type": "Installation Partner"})[
        "id"
    ]  # no value map entry
    good = sf.Account.create({"Name": f"Fine {t}", "Type": "Prospect"})["id"]
    customers.wait_for(lambda r: r["key"] == good)
    (letter,) = dead.wait_for(lambda r: r["key"] == bad.encode())
    headers = letter["headers"]
    reason = headers["__connect.errors.exception.message"].decode()
    assert "Type" in reason
    assert "Installation Partner" in reason
    assert "account_type" in reason
    assert headers["__connect.errors.topic"] == b"/data/AccountChangeEvent"
    event = json.loads(letter["value"])
    assert event["data"]["payload"]["ChangeEventHeader"]["recordIds"] == [bad]
    assert not [r for r in customers.records if r["key"] == bad]


def test_a_dead_lettered_event_is_replayed_once_after_its_mapping_is_fixed(
    make_source, reader, sf, kafka_admin, tmp_path
) -> None:
    """`sagesf dlq replay salesforce-source`: the event goes through the change reader again,
    with the mapping fixed, and its record is published once; a second replay skips it."""
    import typer
    from typer.testing import CliRunner

    from sagesf.cli import add_core_commands

    source, topics = make_source()
    source.start()
    dead = reader(topics["dlq.salesforce-source.v1"], None)
    odd = sf.Account.create({"Name": f"Odd type {tag()}", "Type": "Installation Partner"})["id"]
    dead.wait_for(lambda r: r["key"] == odd.encode())
    source.stop()
    fixed = tmp_path / "salesforce_source.yaml"
    mapping = (REPO / "mappings/salesforce_source.yaml").read_text()
    fixed.write_text(
        mapping.replace("      Prospect: PROS\n", "      Prospect: PROS\n      Installation Partner: RESL\n")
    )
    markers = create_topics(kafka_admin)["positions.v1"]  # a compacted topic of its own
    env = {
        **source.env,
        "SAGESF_SALESFORCE__SOURCE__MAPPING_FILE": str(fixed),
        "SAGESF_STAGES__SALESFORCE_SOURCE__DLQ_TOPIC": topics["dlq.salesforce-source.v1"],
        "SAGESF_DLQ_MARKERS_TOPIC": markers,
        "COLUMNS": "300",
    }
    app = typer.Typer()
    add_core_commands(app)

    def replay() -> str:
        result = CliRunner().invoke(app, ["dlq", "replay", "salesforce-source", "--all"], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert "re-read and sent" in replay()
    customers = reader(topics["customer.v1"], "Customer")
    [record] = customers.wait_for(lambda r: r["key"] == odd)
    assert record["value"]["customer_type"] == "RESL"
    assert record["headers"]["__sagesf.replayed.from"].startswith(topics["dlq.salesforce-source.v1"].encode())
    assert "already replayed" in replay()
    customers.poll()
    assert len([r for r in customers.records if r["key"] == odd]) == 1


def test_gap_events_re_read_their_records(make_source, reader, sf, emulator) -> None:
    source, topics = make_source()
    source.start()
    items = reader(topics["item.v1"], "Item")
    t = tag()
    product = sf.Product2.create({"Name": f"Gizmo {t}", "ProductCode": f"G-{t}", "IsActive": True})["id"]
    items.wait_for(lambda r: r["key"] == f"G-{t}")
    emulator.admin(
        "POST",
        "/admin/streaming/gap",
        {"entity": "Product2", "changeType": "GAP_UPDATE", "recordIds": [product]},
    )
    items.wait_for(lambda r: r["key"] == f"G-{t}", count=2)
    emulator.admin("POST", "/admin/streaming/gap", {"entity": "Product2", "changeType": "GAP_OVERFLOW"})
    items.wait_for(lambda r: r["key"] == f"G-{t}", count=3)
    assert source.metric("sagesf_salesforce_catchup_reads_total", reason="gap_overflow") >= 1


def fire_credit_check(sf: Any, account_id: str, external_id: str | None = None) -> str:
    """Fire Credit_Check_Request__e as `sf`'s user; its correlation ID."""
    correlation = str(uuid.uuid4())
    sf.Credit_Check_Request__e.create(
        {
            "Correlation_Id__c": correlation,
            "Account_Id__c": account_id,
            "External_Id__c": external_id,
            "Amount__c": 1234.5,
            "Reply_Deadline__c": "2030-01-01T00:00:30.000+0000",
        }
    )
    return correlation


def test_a_credit_check_platform_event_becomes_a_credit_request(make_source, reader, sf, emulator) -> None:
    channels = ["/data/AccountChangeEvent", "/event/Credit_Check_Request__e"]
    source, topics = make_source(SAGESF_SALESFORCE__SOURCE__CHANNELS=json.dumps(channels))
    source.start()
    requests = reader(topics["credit.requests.v1"], "CreditCheckRequest")
    account = sf.Account.create({"Name": f"Credit {tag()}"})["id"]
    correlation = fire_credit_check(sf, account, "01-ABF0001")
    (request,) = requests.wait_for(lambda r: r["key"] == correlation)
    value = request["value"]
    assert value["correlation_id"] == correlation
    assert value["envelope"]["correlation_id"] == correlation
    assert value["customer"]["ar_division_no"] == "01"
    assert value["customer"]["customer_no"] == "ABF0001"
    assert value["order_amount"] == Decimal("1234.50")
    assert value["deadline"].isoformat() == "2030-01-01T00:00:30+00:00"
    # who asked, from where: the responder answers about that Account's customer, to that user only
    assert value["customer"]["salesforce_account_id"] == account
    assert value["requester_id"] == emulator.user_ids[emulator.username]


def test_a_credit_check_on_an_account_the_requester_may_not_read_names_no_customer(
    make_source, reader, sf, emulator
) -> None:
    channels = ["/event/Credit_Check_Request__e"]
    source, topics = make_source(SAGESF_SALESFORCE__SOURCE__CHANNELS=json.dumps(channels))
    source.start()
    requests = reader(topics["credit.requests.v1"], "CreditCheckRequest")
    seller = emulator.connect_other()
    account = sf.Account.create({"Name": f"Private {tag()}"})["id"]  # owned by the integration user
    emulator.admin("POST", "/admin/sharing", {"object": "Account", "sharingModel": "Private"})
    try:
        prying = fire_credit_check(seller, account, "01-ABF0001")
        owners = fire_credit_check(sf, account)
        requests.wait_for(lambda r: r["key"] in (prying, owners), count=2)
    finally:
        emulator.admin("POST", "/admin/sharing", {"object": "Account", "sharingModel": "ReadWrite"})
    public = fire_credit_check(seller, account)
    requests.wait_for(lambda r: r["key"] == public)
    customer = {r["key"]: r["value"]["customer"] for r in requests.records}
    # no Account, no customer number: the responder answers as for an unknown customer (rule 5)
    assert customer[prying] == {
        "salesforce_account_id": None,
        "ar_division_no": None,
        "customer_no": None,
        "name": None,
    }
    assert customer[owners]["salesforce_account_id"] == account
    assert customer[public]["salesforce_account_id"] == account
    assert source.metric("sagesf_salesforce_credit_requests_not_visible_total") == 1
    assert source.metric("sagesf_salesforce_soql_queries_total", entity="UserRecordAccess") == 3


def test_a_mapped_field_the_org_lacks_stops_the_start(make_source, tmp_path) -> None:
    import yaml

    from connectors.salesforce.source_mapping import DEFAULT_MAPPING_FILE

    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    raw["objects"]["Account"]["fields"]["telephone_no"] = "Phone_Number__c"
    mapping = tmp_path / "salesforce_source.yaml"
    mapping.write_text(yaml.safe_dump(raw))
    source, _ = make_source(SAGESF_SALESFORCE__SOURCE__MAPPING_FILE=str(mapping))
    with pytest.raises(AssertionError, match="exited with 2") as failed:
        source.start()
    assert str(mapping) in str(failed.value)
    assert "objects.Account" in str(failed.value)
    assert "Phone_Number__c" in str(failed.value)


# --- what one record or one actor cannot do --------------------------------------------------------


def wait_for_health(source: SourceProcess, component: str, status: str, timeout: float = 20.0) -> str:
    """The component's /healthz detail once it reads `status`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = source.health() or {"components": {}}
        found = health["components"].get(component, {})
        if found.get("status") == status:
            return str(found.get("detail", ""))
        time.sleep(0.2)
    raise AssertionError(f"{component} did not read {status} within {timeout} s: {source.health()}")


@pytest.mark.parametrize("code", ["INSUFFICIENT_ACCESS", "INVALID_FIELD"])
def test_a_read_refused_for_permission_waits_with_an_alert_and_loses_nothing(
    make_source, reader, sf, emulator, code
) -> None:
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    dead = reader(topics["dlq.salesforce-source.v1"], None)
    refusal = {"object": "Account", "errorCode": code, "field": "Credit_Limit__c"}
    emulator.admin("POST", "/admin/faults/query-refusal", refusal)
    t = tag()
    waiting = sf.Account.create({"Name": f"Refused read {t}"})["id"]
    detail = wait_for_health(source, "salesforce-source", "degraded")
    assert code in detail
    assert "SELECT" not in detail  # a short reason; Salesforce's full answer is in the log
    assert source.metric("sagesf_salesforce_read_refusals_total", entity="Account", error_code=code) >= 1
    dead.poll()
    assert not [r for r in dead.records if r["key"] == waiting.encode()]  # not dead-lettered

    emulator.admin("DELETE", "/admin/faults")  # an admin gives the permission back
    customers.wait_for(lambda r: r["key"] == waiting)
    wait_for_health(source, "salesforce-source", "ok")
    dead.poll()
    assert not [r for r in dead.records if r["key"] == waiting.encode()]


def test_a_record_the_integration_user_cannot_see_is_dead_lettered_with_the_reason(
    make_source, reader, sf, emulator
) -> None:
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    dead = reader(topics["dlq.salesforce-source.v1"], None)
    t = tag()
    other = emulator.connect_other()
    private = other.Account.create({"Name": f"Private {t}"})["id"]
    customers.wait_for(lambda r: r["key"] == private)
    emulator.admin("POST", "/admin/faults/hide-records", {"ids": [private], "username": emulator.username})
    other.Account.update(private, {"Name": f"Private renamed {t}"})
    after = sf.Account.create({"Name": f"Visible {t}"})["id"]
    customers.wait_for(lambda r: r["key"] == after)  # the stream goes on
    (letter,) = dead.wait_for(lambda r: r["key"] == private.encode())
    reason = letter["headers"]["__connect.errors.exception.message"].decode()
    assert "cannot see" in reason
    assert letter["headers"]["salesforce.entity"] == b"Account"
    assert source.metric("sagesf_salesforce_source_records_total", outcome="not_visible") >= 1
    assert not [r for r in customers.records if r["value"]["name"] == f"Private renamed {t}"]


def test_a_record_deleted_before_its_update_is_read_is_not_a_dead_letter(make_source, reader, sf) -> None:
    source, topics = make_source(SAGESF_SALESFORCE__SOURCE__MAX_BATCH="1")  # each event alone
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    dead = reader(topics["dlq.salesforce-source.v1"], None)
    t = tag()
    account = sf.Account.create({"Name": f"Short-lived {t}"})["id"]
    customers.wait_for(lambda r: r["key"] == account)
    time.sleep(0.5)  # its replay ID stored
    source.stop()
    sf.Account.update(account, {"Name": f"Renamed {t}"})
    sf.Account.delete(account)  # the UPDATE is read after this: the record is gone
    source.start()
    customers.wait_for(lambda r: r["key"] == account and r["value"]["deleted"])
    assert source.metric("sagesf_salesforce_source_records_total", outcome="deleted_since") >= 1
    dead.poll()
    assert not [r for r in dead.records if r["key"] == account.encode()]


def test_a_spoofed_echo_header_from_another_user_comes_through(make_source, reader, sf, emulator) -> None:
    source, topics = make_source()
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    ours = source.env["SAGESF_SALESFORCE__CALL_OPTIONS_CLIENT"]
    t = tag()
    spoofed = emulator.connect_other(client=ours).Account.create({"Name": f"Spoofed origin {t}"})["id"]
    customers.wait_for(lambda r: r["key"] == spoofed)  # another user's change, whatever its header says


def test_an_edited_mapping_file_is_read_from_the_next_change_on_and_a_bad_edit_keeps_the_last_good_one(
    make_source, reader, sf, tmp_path
) -> None:
    import yaml

    from connectors.salesforce.source_mapping import DEFAULT_MAPPING_FILE

    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    mapping = tmp_path / "salesforce_source.yaml"
    mapping.write_text(yaml.safe_dump(raw))
    source, topics = make_source(
        SAGESF_SALESFORCE__SOURCE__MAPPING_FILE=str(mapping),
        SAGESF_SALESFORCE__SOURCE__MAPPING_RELOAD_INTERVAL="0.2",
    )
    source.start()
    customers = reader(topics["customer.v1"], "Customer")
    t = tag()
    account = sf.Account.create({"Name": f"Reload {t}", "Description": "before"})["id"]
    first = customers.wait_for(lambda r: r["key"] == account)[0]["value"]
    assert "account_description" not in first["custom_fields"]

    raw["objects"]["Account"]["custom_fields"]["account_description"] = "Description"  # as the console saves
    mapping.write_text(yaml.safe_dump(raw))
    deadline = time.monotonic() + 20
    while source.metric("sagesf_salesforce_source_mapping_reloads_total", result="ok") < 1:
        assert time.monotonic() < deadline, source.log_tail()
        time.sleep(0.2)
    sf.Account.update(account, {"Description": "mapped now"})
    customers.wait_for(
        lambda r: (
            r["key"] == account and r["value"]["custom_fields"].get("account_description") == "mapped now"
        )
    )

    raw["objects"]["Account"]["fields"]["telephone_no"] = "Phone_Number__c"  # the org has no such field
    mapping.write_text(yaml.safe_dump(raw))
    detail = wait_for_health(source, "source-mapping", "degraded")
    assert "objects.Account: Salesforce refused the mapped fields" in detail
    sf.Account.update(account, {"Description": "still read", "Phone": "555-0199"})
    [latest] = customers.wait_for(
        lambda r: (
            r["key"] == account and r["value"]["custom_fields"].get("account_description") == "still read"
        )
    )
    assert latest["value"]["telephone_no"] == "555-0199"  # the previous mapping, whole
