"""The Salesforce sink on the real broker, the sandbox registry and the Salesforce emulator over sockets.

What a user would notice: stock updates for thousands of items cost a handful of API calls
(Collections: at most 25 calls for 5,000 records; Bulk API 2.0 above the threshold); a rate-limit
storm, a spent API budget or an expired token pause or slow the sink but every record is written
exactly once and nothing is dead-lettered; records Salesforce refuses are dead-lettered and
answered with Salesforce's statusCode and message while the rest are written; N updates of one
record inside the batch window cost one write carrying the latest values; every write carries our
`Sforce-Call-Options` client, which Salesforce puts in the change events' changeOrigin (the echo
guard). The emulator's admin API provides the request counter and the faults; its event log
(events.sqlite3, read-only) shows each change event Salesforce would publish, so "written once"
means exactly one UPDATE event per record.

The storm lasts 10 s here instead of 30 s: the code path (403 REQUEST_LIMIT_EXCEEDED ->
Backpressure -> pause -> retry) is the same at any length.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import REGISTRY

from connectors.salesforce.client import SalesforceConnection, connect
from connectors.salesforce.components import build_sink_loop
from connectors.salesforce.config import SalesforceSettings, SalesforceSinkOptions
from connectors.salesforce.sink import SalesforceSink
from connectors.salesforce.soql import quote, quote_like
from sagesf.config import KafkaSettings, RegistrySettings, Settings
from sagesf.producer import ConfirmedProducer
from sagesf.retry import RetryPolicy
from sagesf.runner import Process
from sagesf.serde import AvroSerde
from sagesf.sink import SinkLoop
from sagesf.topic_scan import ScannedRecord
from sandbox.salesforce.harness import RunningEmulator
from tests.kit.kafka import count, read_topic, wait_for_records
from tests.kit.stages import in_background, run_until

pytestmark = pytest.mark.integration

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
CLIENT = "sagesf-sink-test"


# --- the world -------------------------------------------------------------------------------------


@dataclass
class RunningSink:
    """The sink as `sagesf run salesforce-sink` builds it: its loop, and the process that closes
    its parts (the loop, the producer, the Salesforce connection it logged in with)."""

    process: Process
    loop: SinkLoop

    @property
    def connection(self) -> SalesforceConnection:
        sink = self.loop.sink
        assert isinstance(sink, SalesforceSink)
        return sink.writer.conn

    def close(self) -> None:
        self.process.close()


class World:
    """Topics, settings, Kafka/registry clients and emulator helpers of one test."""

    def __init__(self, bootstrap: str, registry_url: str, emulator: RunningEmulator, sf: Any, new_topic: Any):
        self.bootstrap = bootstrap
        self.emulator = emulator
        self.sf = sf  # the test's own simple-salesforce client (not the sink's)
        self.tag = uuid.uuid4().hex[:8].upper()
        self.core = Settings(
            kafka=KafkaSettings(bootstrap_servers=bootstrap),
            registry=RegistrySettings(url=registry_url, auto_register=True),
        )
        self.options = SalesforceSinkOptions(
            commands_topic=new_topic("sf-commands", partitions=3),
            results_topic=new_topic("sf-results"),
            dead_letter_topic=new_topic("sf-dlq"),
            group_id=f"sf-sink-{self.tag}",
            consumer_config=FAST_GROUP,
        )
        self.registry = SchemaRegistryClient({"url": registry_url})
        self.producer = ConfirmedProducer(self.core.kafka)
        self.last_replay_id = self._max_replay_id()

    def settings(self, **overrides: Any) -> SalesforceSettings:
        em = self.emulator
        values: dict[str, Any] = {
            "login_url": em.url,
            "auth_flow": "password",
            "client_id": em.client_id,
            "client_secret": em.client_secret,
            "username": em.username,
            "password": em.password,
            "call_options_client": CLIENT,
            "batch_window": 1.5,
            "rate_limit_pause": 1.0,
            "bulk_poll_interval": 0.2,
            "sink": self.options,
            **overrides,
        }
        return SalesforceSettings(**values)

    def build(self, **overrides: Any) -> RunningSink:
        process = Process.of("salesforce-sink", self.core, self.settings(**overrides))
        try:
            loop = build_sink_loop(process, retry=RetryPolicy(initial=0.2, maximum=2.0))
        except BaseException:
            process.close()
            raise
        return RunningSink(process, loop)

    # --- Kafka ---------------------------------------------------------------------------------

    def send(
        self, commands: list[tuple[str, dict[str, Any]]], headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        topic = self.options.commands_topic
        value = AvroSerde.canonical(self.registry, "SalesforceCommand", topic, auto_register=True)
        key = AvroSerde.string_key(self.registry, topic, auto_register=True)
        for k, command in commands:
            self.producer.send(topic, value.encode(command), key.encode(k), headers)
        self.producer.confirm()

    def results(self, expected: int) -> list[Any]:
        topic = self.options.results_topic
        serde = AvroSerde.canonical(self.registry, "SalesforceResult", topic, auto_register=True)
        return [serde.decode(m.value) for m in wait_for_records(self.bootstrap, topic, expected)]

    def dead_letters(self, expected: int = 0) -> list[ScannedRecord]:
        assert self.options.dead_letter_topic is not None
        return read_topic(self.bootstrap, self.options.dead_letter_topic, expected=expected)

    def result_count(self) -> int:
        return count(self.bootstrap, self.options.results_topic)

    def run_until(self, sink: RunningSink, results: int, timeout: float = 60) -> None:
        run_until(
            sink.loop, lambda: self.result_count() >= results, timeout, "the sink answering every command"
        )

    # --- the emulator --------------------------------------------------------------------------

    def api_used(self) -> int:
        return int(self.emulator.admin("GET", "/admin/api-usage")["used"])

    def _events_db(self) -> sqlite3.Connection:
        path = self.emulator.data_dir / "events.sqlite3"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)

    def _max_replay_id(self) -> int:
        db = self._events_db()
        try:
            return int(db.execute("SELECT COALESCE(MAX(replay_id), 0) FROM events").fetchone()[0])
        finally:
            db.close()

    def change_headers(self, record_ids: set[str], change_type: str = "UPDATE") -> list[dict[str, Any]]:
        """ChangeEventHeaders of this test's change events of `change_type` on these records."""
        db = self._events_db()
        try:
            rows = db.execute(
                "SELECT data FROM events WHERE is_cdc = 1 AND replay_id > ? ORDER BY replay_id",
                (self.last_replay_id,),
            ).fetchall()
        finally:
            db.close()
        found = []
        for (data,) in rows:
            header = json.loads(data)["payload"]["ChangeEventHeader"]
            if header["changeType"] == change_type and record_ids & set(header["recordIds"]):
                found.append(header)
        return found

    def seed_products(self, n: int) -> dict[str, str]:
        """n Product2 records with Sage_Item_Code__c <tag>-<i> (Bulk 2.0 insert); item code -> Id."""
        records = [
            {
                "Name": f"Item {self.tag}-{i}",
                "Sage_Item_Code__c": f"{self.tag}-{i}",
                "Quantity_On_Hand__c": "0",
            }
            for i in range(n)
        ]
        [job] = self.sf.bulk2.Product2.insert(records=records, wait=0.2)
        assert job["numberRecordsFailed"] == 0
        self.last_replay_id = self._max_replay_id()  # the inserts' CREATE events are not the test's
        return {
            r["Sage_Item_Code__c"]: r["Id"]
            for r in self.sf.query_all(
                "SELECT Id, Sage_Item_Code__c FROM Product2 WHERE Sage_Item_Code__c LIKE "  # noqa: S608
                + quote_like(f"{self.tag}-", "prefix")
            )["records"]
        }

    def quantities(self) -> dict[str, float]:
        rows = self.sf.query_all(
            "SELECT Sage_Item_Code__c, Quantity_On_Hand__c FROM Product2 WHERE Sage_Item_Code__c LIKE "  # noqa: S608
            + quote_like(f"{self.tag}-", "prefix")
        )["records"]
        return {r["Sage_Item_Code__c"]: r["Quantity_On_Hand__c"] for r in rows}


@pytest.fixture
def world(kafka_bootstrap, schema_registry_url, salesforce_emulator, sf, new_topic) -> Iterator[World]:
    w = World(kafka_bootstrap, schema_registry_url, salesforce_emulator, sf, new_topic)
    yield w
    salesforce_emulator.admin("DELETE", "/admin/faults")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


# --- commands --------------------------------------------------------------------------------------


def command(
    operation: str,
    sobject: str,
    fields: dict[str, Any],
    *,
    record_id: str | None = None,
    ext: tuple[str, str] | None = None,
    when: datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    key = record_id or f"{sobject}/{ext[1] if ext else ''}"
    command_id = f"cmd-{uuid.uuid4().hex[:10]}"
    return key, {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_time": datetime.now(UTC),
            "source_system": "SAGESF",
            "source_record_id": key,
            "correlation_id": f"corr-{command_id}",
        },
        "command_id": command_id,
        "operation": operation,
        "sobject": sobject,
        "record_id": record_id,
        "external_id_field": ext[0] if ext else None,
        "external_id": ext[1] if ext else None,
        "fields": fields,
        "source_event_time": when,
    }


def stock(item_code: str, quantity: float, when: datetime | None = None) -> tuple[str, dict[str, Any]]:
    return command(
        "UPSERT",
        "Product2",
        {"Quantity_On_Hand__c": quantity},
        ext=("Sage_Item_Code__c", item_code),
        when=when,
    )


def header(msg: ScannedRecord, name: str) -> str:
    value = msg.header_text(name)
    assert value is not None, f"no header {name} on {msg.position}"
    return value


# --- volume: Collections and Bulk ------------------------------------------------------------------


def test_5000_stock_updates_cost_at_most_25_collections_calls_and_carry_our_client(world: World):
    items = world.seed_products(5000)
    world.send([stock(code, 7.0 + i % 3) for i, code in enumerate(sorted(items))])
    # a 3 s window: the whole burst is one batch even on a slow machine (25 = 5,000 / 200 exactly)
    sink = world.build(bulk_threshold=10_000, max_batch_records=10_000, batch_window=3.0)
    before = world.api_used()
    requests_before = metric("sagesf_salesforce_records_per_call_count", api="collections")
    records_before = metric("sagesf_salesforce_records_per_call_sum", api="collections")
    try:
        world.run_until(sink, 5000)
    finally:
        sink.close()
    calls = world.api_used() - before
    results = world.results(5000)

    assert calls <= 25, f"{calls} API calls for 5,000 records"
    # what the dashboard shows: calls, records per call, usage versus the limit
    assert metric("sagesf_salesforce_records_per_call_count", api="collections") - requests_before == calls
    assert metric("sagesf_salesforce_records_per_call_sum", api="collections") - records_before == 5000
    assert metric("sagesf_salesforce_api_usage_used") == world.api_used()
    assert metric("sagesf_salesforce_api_usage_limit") == 100_000
    assert Counter(r["outcome"] for r in results) == {"UPDATED": 5000}
    assert {r["api"] for r in results} == {"COLLECTIONS"}
    assert {r["record_id"] for r in results} == set(items.values())
    expected = {code: 7.0 + i % 3 for i, code in enumerate(sorted(items))}
    assert world.quantities() == expected
    assert world.dead_letters() == []
    # echo guard: Salesforce names our client in the changeOrigin of every change we caused
    events = world.change_headers(set(items.values()))
    assert len(events) == 5000
    assert {e["changeOrigin"].rsplit(";", 1)[-1] for e in events} == {f"client={CLIENT}"}
    print(f"\nCollections: 5,000 records in {calls} API calls")


def test_above_the_threshold_the_updates_go_through_one_bulk_job_with_per_record_results(world: World):
    items = world.seed_products(5000)
    codes = sorted(items)
    commands = [stock(code, 3.0) for code in codes]
    too_long = "x" * 300
    for bad in codes[10], codes[4000]:  # Product2.Name is 255 characters at most
        commands.append(command("UPSERT", "Product2", {"Name": too_long}, ext=("Sage_Item_Code__c", bad)))
    world.send(commands)
    sink = world.build(bulk_threshold=2000, max_batch_records=10_000, batch_window=3.0)
    before = world.api_used()
    try:
        world.run_until(sink, 5002)
    finally:
        sink.close()
    calls = world.api_used() - before
    results = world.results(5002)

    # the two bad commands coalesce with the good ones for their items: both writes are refused
    outcomes = Counter(r["outcome"] for r in results)
    assert outcomes == {"UPDATED": 4998, "REJECTED": 4}
    assert {r["api"] for r in results} == {"BULK"}
    rejected = [r for r in results if r["outcome"] == "REJECTED"]
    assert {r["external_id"] for r in rejected} == {codes[10], codes[4000]}
    assert {r["error"]["status_code"] for r in rejected} == {"STRING_TOO_LONG"}
    assert all(r["coalesced_commands"] == 2 for r in rejected)
    assert calls <= 10, f"{calls} API calls for one Bulk job"
    quantities = world.quantities()
    assert sum(1 for q in quantities.values() if q == 3.0) == 4998
    dead = world.dead_letters(4)
    assert len(dead) == 4
    assert all(header(m, "__connect.errors.exception.message").startswith("STRING_TOO_LONG: ") for m in dead)
    events = world.change_headers(set(items.values()))
    assert len(events) == 4998
    assert {e["changeOrigin"].rsplit(";", 1)[-1] for e in events} == {f"client={CLIENT}"}
    print(f"\nBulk API 2.0: 5,000 records in {calls} API calls")


# --- limits, faults, expiry ------------------------------------------------------------------------


def test_a_rate_limit_storm_mid_run_loses_nothing_and_writes_each_record_once(world: World):
    items = world.seed_products(2000)
    ids = sorted(items.values())
    world.send([command("UPDATE", "Product2", {"Quantity_On_Hand__c": 42.0}, record_id=i) for i in ids])
    sink = world.build(bulk_threshold=10_000)
    world.emulator.admin("POST", "/admin/faults/latency", {"ms": 150})
    paused_before = metric("sagesf_salesforce_backpressure_total", reason="rate_limit")
    start = world.api_used()
    try:
        with in_background(sink.loop):
            wait_for(lambda: world.api_used() >= start + 3, 30, "the sink's first calls")
            world.emulator.admin("POST", "/admin/faults/storm", {"seconds": 10})
            storm_started = time.monotonic()
            wait_for(lambda: world.result_count() >= 2000, 60, "every result", every=0.2)
            finished = time.monotonic() - storm_started
    finally:
        sink.close()
    results = world.results(2000)
    assert Counter(r["outcome"] for r in results) == {"UPDATED": 2000}
    assert finished >= 9, "the sink finished while Salesforce refused every request"
    assert metric("sagesf_salesforce_backpressure_total", reason="rate_limit") > paused_before
    assert world.dead_letters() == []
    per_record = Counter(rid for e in world.change_headers(set(ids)) for rid in e["recordIds"])
    assert per_record == dict.fromkeys(ids, 1), "some record was written twice or not at all"
    assert set(world.quantities().values()) == {42.0}


def test_the_budget_governor_stops_at_its_share_and_resumes_when_the_window_frees_room(world: World):
    items = world.seed_products(2000)
    ids = sorted(items.values())
    world.send([command("UPDATE", "Product2", {"Quantity_On_Hand__c": 5.0}, record_id=i) for i in ids])
    em = world.emulator
    em.admin("PUT", "/admin/api-usage", {"max": 10_000, "used": 4_995})  # budget: 50% = 5,000
    sink = world.build(bulk_threshold=10_000, api_budget_share=0.5, budget_recheck_seconds=4)
    try:
        with in_background(sink.loop):
            wait_for(lambda: world.api_used() >= 5_000, 30, "the calls within the budget", every=0.05)
            time.sleep(1.5)  # the sink is paused now: no call may be made until the recheck
            assert world.api_used() == 5_000, "the sink went past its share of the daily limit"
            written = world.result_count()
            assert 0 < written <= 1000  # at most 5 calls x 200 records; the rest waits
            assert len(world.change_headers(set(ids))) == written
            assert world.dead_letters() == []
            em.admin("PUT", "/admin/api-usage", {"used": 0})  # the rolling window frees room
            wait_for(
                lambda: world.result_count() >= 2000, 30, "the rest after the window freed room", every=0.2
            )
    finally:
        sink.close()
        em.admin("PUT", "/admin/api-usage", {"max": 100_000, "used": 0})
    results = world.results(2000)
    assert Counter(r["outcome"] for r in results) == {"UPDATED": 2000}
    assert metric("sagesf_salesforce_backpressure_total", reason="budget") >= 1
    assert metric("sagesf_salesforce_api_budget") == 5000
    per_record = Counter(rid for e in world.change_headers(set(ids)) for rid in e["recordIds"])
    assert per_record == dict.fromkeys(ids, 1)


def test_token_expiry_during_writes_renews_the_jwt_login_and_loses_nothing(world: World, caplog):
    items = world.seed_products(2000)
    world.send([stock(code, 11.0) for code in sorted(items)])
    em = world.emulator
    sink = world.build(
        bulk_threshold=10_000,
        auth_flow="jwt",
        private_key_pem=em.private_key_pem,
        client_secret=None,
        password=None,
    )
    first_token = sink.connection.access_token
    refreshed = metric("sagesf_salesforce_token_refreshes_total", flow="jwt")
    em.admin("POST", "/admin/faults/latency", {"ms": 100})
    start = world.api_used()
    caplog.set_level(logging.DEBUG)
    try:
        with in_background(sink.loop):
            wait_for(lambda: world.api_used() >= start + 3, 30, "the sink's first calls")
            em.admin("POST", "/admin/tokens/expire")
            wait_for(lambda: world.result_count() >= 2000, 60, "every result", every=0.2)
    finally:
        sink.close()
    results = world.results(2000)
    assert Counter(r["outcome"] for r in results) == {"UPDATED": 2000}
    assert metric("sagesf_salesforce_token_refreshes_total", flow="jwt") == refreshed + 1
    assert sink.connection.access_token != first_token
    assert world.dead_letters() == []
    per_record = Counter(rid for e in world.change_headers(set(items.values())) for rid in e["recordIds"])
    assert per_record == dict.fromkeys(items.values(), 1)
    logged = caplog.text
    assert first_token not in logged
    assert sink.connection.access_token not in logged


# --- per-record failures, coalescing ---------------------------------------------------------------


def test_records_salesforce_refuses_are_dead_lettered_with_its_status_code_and_message(world: World):
    tag = world.tag
    good = [
        command(
            "UPSERT",
            "Account",
            {"Name": f"Good {tag} {i}", "Sage_Sync_Status__c": "Synced"},
            ext=("ExternalID__c", f"01-{tag}{i}"),
        )
        for i in range(3)
    ]
    picklist = command(
        "UPSERT",
        "Account",
        {"Name": f"Bad pick {tag}", "Sage_Sync_Status__c": "Bogus"},
        ext=("ExternalID__c", f"01-{tag}P"),
    )
    too_long = command(
        "UPSERT",
        "Account",
        {"Name": f"Bad len {tag}", "Sage_Sync_Message__c": "m" * 300},
        ext=("ExternalID__c", f"01-{tag}L"),
    )
    malformed = command("UPDATE", "Account", {"Name": "no id"})  # an UPDATE without record_id
    world.send([*good, picklist, too_long, malformed])
    dead_before = metric(
        "sagesf_salesforce_dead_letters_total", sobject="Account", status_code="STRING_TOO_LONG"
    )
    sink = world.build()
    try:
        world.run_until(sink, 6)
    finally:
        sink.close()
    results = {r["command_id"]: r for r in world.results(6)}
    for _, cmd in good:
        assert results[cmd["command_id"]]["outcome"] == "CREATED"
        assert results[cmd["command_id"]]["created"] is True
    pick = results[picklist[1]["command_id"]]
    assert pick["outcome"] == "REJECTED"
    assert pick["error"]["status_code"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert "Bogus" in pick["error"]["message"]
    assert pick["error"]["fields"] == ["Sage_Sync_Status__c"]
    length = results[too_long[1]["command_id"]]
    assert length["error"]["status_code"] == "STRING_TOO_LONG"
    assert length["error"]["fields"] == ["Sage_Sync_Message__c"]
    dead_now = metric(
        "sagesf_salesforce_dead_letters_total", sobject="Account", status_code="STRING_TOO_LONG"
    )
    assert dead_now == dead_before + 1
    bad = results[malformed[1]["command_id"]]
    assert bad["outcome"] == "REJECTED"
    assert bad["api"] == "NONE"
    assert bad["error"]["status_code"] is None

    dead = {header(m, "__connect.errors.exception.message"): m for m in world.dead_letters(3)}
    assert len(dead) == 3
    by_code = {message.split(":", 1)[0]: m for message, m in dead.items()}
    assert set(by_code) >= {"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "STRING_TOO_LONG"}
    pick_letter = by_code["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
    assert header(pick_letter, "__connect.errors.topic") == world.options.commands_topic
    assert header(pick_letter, "__sagesf.errors.field") == "Sage_Sync_Status__c"
    value = AvroSerde.canonical(
        world.registry, "SalesforceCommand", world.options.commands_topic, auto_register=True
    )
    assert pick_letter.value is not None
    assert value.decode(pick_letter.value)["command_id"] == picklist[1]["command_id"]  # original bytes
    names = {
        r["Name"]
        for r in world.sf.query_all(
            "SELECT Name FROM Account WHERE ExternalID__c LIKE " + quote_like(f"01-{tag}", "prefix")  # noqa: S608
        )["records"]
    }
    assert names == {f"Good {tag} {i}" for i in range(3)}


def test_n_updates_of_one_record_in_the_window_become_one_write_with_the_latest_fields(world: World):
    items = world.seed_products(1)
    [(code, record_id)] = items.items()
    base = datetime.now(UTC)
    commands = [stock(code, float(n), when=base + timedelta(seconds=n)) for n in range(1, 51)]
    commands[20] = command(  # an earlier change that also sets the description
        "UPSERT",
        "Product2",
        {"Quantity_On_Hand__c": 21.0, "Description": "restocked"},
        ext=("Sage_Item_Code__c", code),
        when=base + timedelta(seconds=21),
    )
    latest = commands.pop(49)
    commands.insert(10, latest)  # the latest change arrives in the middle of the burst
    world.send(commands)
    sink = world.build()
    before = world.api_used()
    try:
        world.run_until(sink, 50)
    finally:
        sink.close()
    assert world.api_used() - before == 1
    results = world.results(50)
    assert Counter(r["outcome"] for r in results) == {"UPDATED": 50}
    assert {r["coalesced_commands"] for r in results} == {50}
    assert {r["record_id"] for r in results} == {record_id}
    [event] = world.change_headers({record_id})
    assert set(event["changedFields"]) >= {"Quantity_On_Hand__c", "Description"}
    row = world.sf.query(
        f"SELECT Quantity_On_Hand__c, Description FROM Product2 WHERE Id = {quote(record_id)}"  # noqa: S608
    )
    assert row["records"][0]["Quantity_On_Hand__c"] == 50.0
    assert row["records"][0]["Description"] == "restocked"


# --- auth and SOQL ---------------------------------------------------------------------------------


def test_every_auth_flow_logs_in_stamps_our_client_and_renews_after_a_401(world: World):
    em = world.emulator
    refresh_token = em.admin(
        "POST", "/admin/oauth/refresh-token", {"client_id": em.client_id, "username": em.username}
    )["refresh_token"]
    flows: dict[str, dict[str, Any]] = {
        "password": {},
        "client_credentials": {"username": None, "password": None},
        "jwt": {"private_key_pem": em.private_key_pem, "client_secret": None, "password": None},
        "refresh_token": {"refresh_token": refresh_token, "client_secret": None, "password": None},
    }
    for flow, overrides in flows.items():
        conn = connect(world.settings(auth_flow=flow, **overrides))
        try:
            tag = f"{world.tag}-{flow}"
            created = conn.sf.Product2.create({"Name": tag, "Sage_Item_Code__c": tag})
            em.admin("POST", "/admin/tokens/expire")
            stale = conn.access_token
            conn.sf.Product2.update(created["id"], {"Description": "after expiry"})  # renews, retries once
            assert conn.access_token != stale, flow
            [event] = world.change_headers({created["id"]})
            assert event["changeOrigin"].endswith(f";client={CLIENT}"), flow
        finally:
            conn.close()


def test_quoted_values_select_exactly_the_record_they_name(world: World):
    nasty = [
        f"O'Brien {world.tag}",
        f"back\\slash {world.tag}",
        f"' OR Name != ' {world.tag}",
        f"50%_{world.tag}",
    ]
    for name in nasty:
        world.sf.Account.create({"Name": name})
    for name in nasty:
        found = world.sf.query(f"SELECT Name FROM Account WHERE Name = {quote(name)}")["records"]  # noqa: S608
        assert [r["Name"] for r in found] == [name]
    pattern = quote_like("50%_", "prefix")
    like = world.sf.query(f"SELECT Name FROM Account WHERE Name LIKE {pattern}")["records"]  # noqa: S608
    assert [r["Name"] for r in like] == [f"50%_{world.tag}"]


# --- old commands never overwrite newer changes ----------------------------------------------------


def test_a_replayed_old_account_change_does_not_overwrite_a_newer_value_and_a_fresh_change_goes_through(
    world: World,
):
    account = world.sf.Account.create({"Name": f"Harbor {world.tag}"})["id"]
    changed_at = datetime.now(UTC) - timedelta(minutes=10)  # when the customer changed in Sage
    old = command("UPDATE", "Account", {"Phone": "(617) 555-0100"}, record_id=account, when=changed_at)
    sink = world.build()
    try:
        world.send([old])
        world.run_until(sink, 1)  # old, so compared: nothing newer yet, written
        seller: Any = world.emulator.connect_other()
        seller.Account.update(account, {"Phone": "(617) 555-0199"})  # a seller edits it afterwards

        before = world.api_used()
        world.send([old])  # the same old change again: a replay, or the record re-read from Sage
        world.run_until(sink, 2)
        replay_calls = world.api_used() - before
        assert account_phone(world, account) == "(617) 555-0199"

        fresh_at = datetime.now(UTC)
        before = world.api_used()
        world.send(
            [command("UPDATE", "Account", {"Phone": "(617) 555-0123"}, record_id=account, when=fresh_at)]
        )
        world.run_until(sink, 3)
        fresh_calls = world.api_used() - before

        # seconds old (not compared by age) but replayed from a dead letter, and older than what
        # the sink wrote last: the version field says so
        replayed = command(
            "UPDATE",
            "Account",
            {"Phone": "(617) 555-0000"},
            record_id=account,
            when=fresh_at - timedelta(seconds=30),
        )
        world.send([replayed], headers=[("__sagesf.replayed.from", b"dlq.salesforce-sink.v1/0/7")])
        world.run_until(sink, 4)
    finally:
        sink.close()

    first, again, fresh, from_dlq = world.results(4)
    assert [r["outcome"] for r in (first, again, fresh, from_dlq)] == ["UPDATED", "STALE", "UPDATED", "STALE"]
    assert again["stale"]["compared_with"] == "Account.LastModifiedDate"
    assert again["stale"]["target_time"] > changed_at
    assert "changed it at" in again["stale"]["reason"]
    assert again["api"] == "NONE"
    assert from_dlq["stale"]["compared_with"] == "Account.Sage_Synced_At__c"
    assert from_dlq["stale"]["target_time"] == fresh_at.replace(
        microsecond=fresh_at.microsecond // 1000 * 1000
    )
    assert account_phone(world, account) == "(617) 555-0123"
    assert world.dead_letters() == []
    # the economy: live traffic pays nothing for the check, a checked batch one query
    assert fresh_calls == 1
    assert replay_calls == 1  # the query; nothing written
    print(f"\nAPI calls: fresh change {fresh_calls}, replayed old change {replay_calls} (the check)")


def account_phone(world: World, account: str) -> str:
    return str(world.sf.Account.get(account)["Phone"])
