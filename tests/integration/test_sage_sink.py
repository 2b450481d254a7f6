"""The Sage 100 sink on the real broker, the sandbox registry and the sandbox database over ODBC.

What a user would notice: one Salesforce order makes exactly one Sage order with the right lines
and totals, whatever redeliveries and crashes happen; a bad command is dead-lettered with a
reason naming the field, answered as REJECTED, and does not stop the next one; customers are
created once and matched afterwards; a credit check is answered with Sage's figures within its
deadline, and a stale one is answered as expired.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyodbc
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import REGISTRY

from connectors.sage100.components import build_command_loop, build_credit_loop
from connectors.sage100.config import SageSinkSettings
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.reads import SqlSageReads
from sagesf.config import KafkaSettings, RegistrySettings, Settings
from sagesf.producer import ConfirmedProducer
from sagesf.runner import Process
from sagesf.serde import AvroSerde
from sagesf.topic_scan import ScannedRecord
from sandbox.sage100.simulator import SageSimulator
from tests.kit.kafka import committed, count, read_topic, wait_for_records
from tests.kit.stages import run_until

pytestmark = pytest.mark.integration

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
SF_USER = "SGSF"  # the sandbox settings' integration user


# --- the world -------------------------------------------------------------------------------


class World:
    """Topics, settings and Kafka/registry clients of one test."""

    def __init__(self, bootstrap: str, registry_url: str, db: Any, new_topic: Any) -> None:
        self.bootstrap = bootstrap
        self.db = db
        self.core = Settings(
            kafka=KafkaSettings(bootstrap_servers=bootstrap),
            registry=RegistrySettings(url=registry_url, auto_register=True),
        )
        self.sage = db.settings()
        self.sink = SageSinkSettings(
            commands_topic=new_topic("sage-commands"),
            results_topic=new_topic("sage-results"),
            dead_letter_topic=new_topic("sage-dlq"),
            credit_requests_topic=new_topic("credit-requests"),
            credit_replies_topic=new_topic("credit-replies"),
            credit_dead_letter_topic=new_topic("credit-dlq"),
            group_id=f"sink-{uuid.uuid4().hex[:8]}",
            credit_group_id=f"credit-{uuid.uuid4().hex[:8]}",
            consumer_config=FAST_GROUP,
        )
        self.registry = SchemaRegistryClient({"url": registry_url})
        self.producer = ConfirmedProducer(self.core.kafka)

    def serde(self, schema: str, topic: str) -> AvroSerde:
        return AvroSerde.canonical(self.registry, schema, topic, auto_register=True)

    def key_serde(self, topic: str) -> AvroSerde:
        return AvroSerde.string_key(self.registry, topic, auto_register=True)

    def send_commands(self, *commands: tuple[str, dict[str, Any]]) -> None:
        topic = self.sink.commands_topic
        value, key = self.serde("SageCommand", topic), self.key_serde(topic)
        for k, command in commands:
            self.producer.send(topic, value.encode(command), key.encode(k))
        self.producer.confirm()

    def results(self, expected: int) -> list[Any]:
        serde = self.serde("SageResult", self.sink.results_topic)
        return [
            serde.decode(m.value) for m in wait_for_records(self.bootstrap, self.sink.results_topic, expected)
        ]

    def result_count(self) -> int:
        return count(self.bootstrap, self.sink.results_topic)

    def dead_letters(self, expected: int = 0) -> list[ScannedRecord]:
        assert self.sink.dead_letter_topic is not None
        return read_topic(self.bootstrap, self.sink.dead_letter_topic, expected=expected)

    def process(self) -> Process:
        """What `sagesf run sage-sink` gives the builders, from this test's settings."""
        return Process.of("sage-sink", self.core, self.sage, self.sink)

    def committed(self) -> int:
        """The offset the command sink's group committed (below 0: nothing committed)."""
        return committed(self.bootstrap, self.sink.group_id, self.sink.commands_topic)[0]

    def run_sink(self, until_results: int, timeout: float = 60) -> None:
        process = self.process()
        try:
            loop = build_command_loop(process)
            run_until(loop, lambda: self.result_count() >= until_results, timeout, "the sink")
        finally:
            process.close()

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        odbc = self.db.odbc()
        try:
            rows: list[tuple[Any, ...]] = odbc.fetchall(query, list(params))
            return rows
        finally:
            odbc.close()


@pytest.fixture
def world(kafka_bootstrap, schema_registry_url, sage_db, new_topic) -> World:
    return World(kafka_bootstrap, schema_registry_url, sage_db, new_topic)


# --- canonical records -----------------------------------------------------------------------


def envelope(record_id: str, source: str = "SALESFORCE", correlation: str | None = None) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": source,
        "source_record_id": record_id,
        "correlation_id": correlation,
    }


def sf_id(prefix: str = "006") -> str:
    return (prefix + uuid.uuid4().hex.upper())[:18]


def line(no: int, item: str | None, qty: str, price: str, **kw: Any) -> dict[str, Any]:
    return {
        "line_no": no,
        "salesforce_line_id": sf_id("00k"),
        "item_code": item,
        "product_code": item,
        "quantity_ordered": Decimal(qty),
        "unit_price": Decimal(price),
        "extension_amount": (Decimal(qty) * Decimal(price)).quantize(Decimal("0.01")),
        **kw,
    }


def order_command(
    opportunity: str,
    lines: list[dict[str, Any]],
    customer_ref: dict[str, Any],
    customer: dict[str, Any] | None = None,
    **order_fields: Any,
) -> tuple[str, dict[str, Any]]:
    order = {
        "envelope": envelope(opportunity),
        "salesforce_opportunity_id": opportunity,
        "customer": customer_ref,
        "status": "NEW",
        "source_status": "Closed Won",
        "order_date": date(2025, 3, 7),
        "customer_po_no": "PO-4711",
        "currency_code": "USD",
        "total_amount": sum((ln["extension_amount"] for ln in lines), Decimal("0.00")),
        "lines": lines,
        **order_fields,
    }
    body = {
        "order": order,
        "customer": customer,
        "customer_columns": columns_of(customer) if customer else None,
    }
    command = {
        "envelope": envelope(opportunity, "SAGESF", correlation=f"corr-{opportunity}"),
        "command_id": f"cmd-{uuid.uuid4().hex[:8]}",
        "command": ("io.sagesf.canonical.CreateSalesOrder", body),
    }
    return opportunity, command


# the AR_Customer column of each canonical field the tests set, as the processors' mappings give
# them (processors/field_mapping.py; the sink writes whatever columns a command names)
_COLUMNS = {
    "name": "CustomerName",
    "telephone_no": "TelephoneNo",
    "terms_code": "TermsCode",
    "credit_limit": "CreditLimit",
}
_ADDRESS = {"line1": "AddressLine1", "city": "City", "state": "State", "postal_code": "ZipCode"}


def columns_of(customer: dict[str, Any]) -> dict[str, str]:
    columns = {c: str(customer[f]) for f, c in _COLUMNS.items() if customer.get(f) not in (None, "")}
    address = customer.get("billing_address") or {}
    columns.update({c: str(address[f]) for f, c in _ADDRESS.items() if address.get(f)})
    return columns


def customer_record(account: str | None, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "envelope": envelope(account or name),
        "salesforce_account_id": account,
        "name": name,
        "status": "ACTIVE",
        **fields,
    }


def upsert_command(customer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = customer.get("salesforce_account_id") or customer["name"]
    return key, {
        "envelope": envelope(key, "SAGESF", correlation=f"corr-{key}"),
        "command_id": f"cmd-{uuid.uuid4().hex[:8]}",
        "command": (
            "io.sagesf.canonical.UpsertCustomer",
            {"customer": customer, "columns": columns_of(customer)},
        ),
    }


def seeded(world: World) -> dict[str, Any]:
    """An active customer, two active items and an inactive one from the seeded company."""
    customers = world.sql(
        "SELECT ARDivisionNo, CustomerNo FROM AR_Customer WHERE CustomerStatus = ? ORDER BY CustomerNo", "A"
    )
    active = world.sql(
        "SELECT ItemCode FROM CI_Item WHERE InactiveItem = ? AND ItemType = ? ORDER BY ItemCode",
        "N",
        "1",
    )
    inactive = world.sql("SELECT ItemCode FROM CI_Item WHERE InactiveItem = ?", "Y")
    division, number = customers[0]
    return {
        "ref": {"ar_division_no": division, "customer_no": number},
        "items": [r[0] for r in active[:2]],
        "inactive": inactive[0][0],
    }


def orders_for(world: World, opportunity: str) -> list[tuple[Any, ...]]:
    return world.sql(
        "SELECT SalesOrderNo, OrderStatus, ARDivisionNo, CustomerNo, TaxableAmt, NonTaxableAmt, "
        "UserCreatedKey, UserUpdatedKey, DateCreated, TimeCreated FROM SO_SalesOrderHeader "
        "WHERE UDF_SALESFORCE_ID = ?",
        opportunity,
    )


def detail(world: World, sales_order_no: str) -> list[tuple[Any, ...]]:
    return world.sql(
        "SELECT LineKey, LineSeqNo, ItemCode, QuantityOrdered, UnitPrice, ExtensionAmt, WarehouseCode, "
        "UserCreatedKey FROM SO_SalesOrderDetail WHERE SalesOrderNo = ? ORDER BY LineSeqNo",
        sales_order_no,
    )


# --- orders ----------------------------------------------------------------------------------


def test_the_same_order_command_five_times_makes_exactly_one_order(world):
    data = seeded(world)
    item_a, item_b = data["items"]
    opportunity = sf_id()
    command = order_command(
        opportunity, [line(1, item_a, "3", "19.99"), line(2, item_b, "1.5", "10.333")], data["ref"]
    )
    next_no = world.sql("SELECT NextSalesOrderNo FROM SO_Options")[0][0]
    world.send_commands(*[command] * 5)

    world.run_sink(until_results=5)

    [header] = orders_for(world, opportunity)
    (
        sales_order_no,
        status,
        division,
        customer_no,
        taxable,
        non_taxable,
        created_by,
        updated_by,
        day,
        hours,
    ) = header
    assert sales_order_no == next_no  # the counter's number, 7 digits
    assert len(sales_order_no) == 7
    assert (status, division, customer_no) == ("N", data["ref"]["ar_division_no"], data["ref"]["customer_no"])
    assert Decimal(taxable) + Decimal(non_taxable) == Decimal("59.97") + Decimal("15.50")
    assert (created_by, updated_by) == (SF_USER, SF_USER)
    assert day is not None
    assert len(hours) == 7  # decimal hours like "14.5012"
    assert world.sql("SELECT NextSalesOrderNo FROM SO_Options")[0][0] == f"{int(next_no) + 1:07d}"
    lines = detail(world, sales_order_no)
    assert [(r[0], r[1], r[2]) for r in lines] == [
        ("000001", "00000100000000", item_a),
        ("000002", "00000200000000", item_b),
    ]
    assert [(Decimal(r[3]), Decimal(r[4]), Decimal(r[5])) for r in lines] == [
        (Decimal(3), Decimal("19.99"), Decimal("59.97")),
        (Decimal("1.5"), Decimal("10.333"), Decimal("15.50")),  # 15.4995 rounded half-up
    ]
    assert {r[6] for r in lines} == {"000"}  # the items' default warehouse
    assert {r[7] for r in lines} == {SF_USER}

    results = world.results(5)
    assert [r["outcome"] for r in results] == ["CREATED"] + ["EXISTING"] * 4
    assert {r["sales_order_no"] for r in results} == {sales_order_no}
    assert {r["salesforce_record_id"] for r in results} == {opportunity}
    first = results[0]
    assert first["order_status"] == "NEW"
    assert first["correlation_id"] == f"corr-{opportunity}"
    assert first["total_amount"] == Decimal("75.47")
    assert [(ln["line_key"], ln["extension_amount"]) for ln in first["lines"]] == [
        ("000001", Decimal("59.97")),
        ("000002", Decimal("15.50")),
    ]
    assert results[4]["lines"] == first["lines"]  # a redelivery answers with the same lines
    assert world.dead_letters() == []


CRASHING_SINK = textwrap.dedent("""
    import os, signal, sys, json
    from connectors.sage100.components import build_command_loop
    from connectors.sage100.config import Sage100Settings, SageSinkSettings
    from connectors.sage100.sql_writer import SqlSageWriter
    from sagesf.config import Settings
    from sagesf.runner import Process

    core = Settings.model_validate_json(sys.argv[1])
    sage = Sage100Settings(connection_string=sys.argv[2], udf_columns=json.loads(sys.argv[3]))
    sink = SageSinkSettings.model_validate_json(sys.argv[4])

    class CrashAfterCommit(SqlSageWriter):
        def create_sales_order(self, order, new_customer=None):
            written = super().create_sales_order(order, new_customer)  # committed in Sage
            print("committed", written.sales_order_no, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # before the result and the offset commit

    def crashing(odbc, reads):
        return CrashAfterCommit(odbc, sage.tables(), user_key=sage.integration_user_key, zone=sage.zone)

    process = Process.of("sage-sink", core, sage, sink)
    loop = build_command_loop(process, writer_factory=crashing)
    for _ in range(200):
        loop.run_once()
""")


def test_a_crash_between_the_sage_commit_and_the_offset_commit_does_not_duplicate_the_order(world):
    data = seeded(world)
    opportunity = sf_id()
    world.send_commands(order_command(opportunity, [line(1, data["items"][0], "2", "5.00")], data["ref"]))

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_SINK,
            world.core.model_dump_json(),
            world.db.connection_string,
            json.dumps(world.db.udf_columns),
            world.sink.model_dump_json(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [[sales_order_no, *_]] = orders_for(world, opportunity)
    assert f"committed {sales_order_no}" in proc.stdout
    assert world.result_count() == 0
    assert world.committed() < 1  # nothing committed

    world.run_sink(until_results=1)  # a new consumer in the same group: the command is redelivered

    assert len(orders_for(world, opportunity)) == 1
    assert len(detail(world, sales_order_no)) == 1
    [result] = world.results(1)
    assert (result["outcome"], result["sales_order_no"]) == ("EXISTING", sales_order_no)
    assert world.committed() == 1


def test_bad_commands_are_dead_lettered_with_the_reason_and_the_next_good_one_is_written(world):
    data = seeded(world)
    good_item = data["items"][0]
    customers_before = world.sql("SELECT COUNT(*) FROM AR_Customer")[0][0]
    headers_before = world.sql("SELECT COUNT(*) FROM SO_SalesOrderHeader")[0][0]
    unknown_account = sf_id("001")
    ref, no_account = data["ref"], {"salesforce_account_id": unknown_account}
    rocket = customer_record(unknown_account, "Zoë 🚀 Rockets")

    def order(lines: list[dict[str, Any]], customer_ref: dict[str, Any] = ref, **kw: Any) -> Any:
        return order_command(sf_id(), lines, customer_ref, **kw)

    # (command, field named in the error, value named, words of the reason)
    bad = [
        (
            order([line(1, "NO-SUCH-ITEM", "1", "1")]),
            "lines[1].ItemCode",
            "NO-SUCH-ITEM",
            "does not exist in CI_Item",
        ),
        (
            order([line(1, good_item, "1", "1"), line(2, data["inactive"], "1", "1")]),
            "lines[2].ItemCode",
            data["inactive"],
            "inactive",
        ),
        (order([line(1, "X" * 31, "1", "1")]), "lines[1].ItemCode", "X" * 31, "31 characters"),
        (order([line(1, good_item, "-2", "1")]), "lines[1].QuantityOrdered", "-2", "greater than 0"),
        (order([line(1, good_item, "1", "1")], no_account), "customer", None, "no customer data"),
        (order([line(1, good_item, "1", "1")], no_account, customer=rocket), "CustomerName", "🚀", "cp1252"),
        (order([line(1, good_item, "1", "1")], warehouse_code="999"), "WarehouseCode", "999", "IM_Warehouse"),
    ]
    good_opportunity = sf_id()
    good = order_command(good_opportunity, [line(1, good_item, "4", "2.50")], data["ref"])
    world.send_commands(*[c for c, *_ in bad], good)

    world.run_sink(until_results=len(bad) + 1)

    dead = world.dead_letters(expected=len(bad))
    assert len(dead) == len(bad)
    for i, (msg, (command, field, value, words)) in enumerate(zip(dead, bad, strict=True)):
        headers = dict(msg.headers)
        assert headers["__connect.errors.topic"] == world.sink.commands_topic.encode()
        assert headers["__connect.errors.offset"] == str(i).encode()
        assert headers["__connect.errors.stage"] == b"TASK_PUT"
        assert headers["__connect.errors.connector.name"] == b"sage-sink"
        assert words in headers["__connect.errors.exception.message"].decode(), headers
        assert headers["__sagesf.errors.field"] == field.encode()
        if value is not None:
            assert value in headers["__sagesf.errors.value"].decode()
        assert msg.value is not None
        assert (
            msg.value
            == world.serde("SageCommand", world.sink.commands_topic).encode(command[1])[:5] + msg.value[5:]
        )

    results = world.results(len(bad) + 1)
    assert [r["outcome"] for r in results] == ["REJECTED"] * len(bad) + ["CREATED"]
    assert [r["error"]["field"] for r in results[:-1]] == [field for _, field, _, _ in bad]
    assert "NO-SUCH-ITEM" in results[0]["error"]["reason"]
    assert results[0]["salesforce_record_id"] == bad[0][0][0]
    # nothing of the bad commands reached Sage, not even the customer of the cp1252 one
    assert world.sql("SELECT COUNT(*) FROM AR_Customer")[0][0] == customers_before
    assert world.sql("SELECT COUNT(*) FROM SO_SalesOrderHeader")[0][0] == headers_before + 1
    [[sales_order_no, *_]] = orders_for(world, good_opportunity)
    assert results[-1]["sales_order_no"] == sales_order_no
    assert [Decimal(r[5]) for r in detail(world, sales_order_no)] == [Decimal("10.00")]
    assert world.committed() == len(bad) + 1


# --- customers -------------------------------------------------------------------------------


def customer_row(world: World, account: str) -> list[tuple[Any, ...]]:
    return world.sql(
        "SELECT ARDivisionNo, CustomerNo, CustomerName, City, CreditLimit, CustomerStatus, UserCreatedKey, "
        "UserUpdatedKey FROM AR_Customer WHERE UDF_SALESFORCE_ID = ?",
        account,
    )


def test_upsert_customer_creates_once_then_matches_by_salesforce_id_and_by_number(world):
    account = sf_id("001")
    created = customer_record(
        account,
        "Zoë's Hardware",
        credit_limit=Decimal("7500.00"),
        billing_address={"line1": "1 Main St", "city": "Boston", "state": "MA", "postal_code": "02110"},
    )
    renamed = {**created, "name": "Zoë's Hardware Inc", "envelope": envelope(account)}
    seeded_customer = world.sql(
        "SELECT ARDivisionNo, CustomerNo, TelephoneNo FROM AR_Customer ORDER BY CustomerNo"
    )[0]
    by_number = customer_record(
        None,
        "ignored?",
        ar_division_no=seeded_customer[0],
        customer_no=seeded_customer[1],
        telephone_no="(617) 555-0100",
    )
    del by_number["name"]  # a partial update: only the phone
    by_number["name"] = world.sql(
        "SELECT CustomerName FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ?", *seeded_customer[:2]
    )[0][0]
    world.send_commands(
        upsert_command(created), upsert_command(created), upsert_command(renamed), upsert_command(by_number)
    )

    world.run_sink(until_results=4)

    [row] = customer_row(world, account)
    division, number, name, city, limit, status, created_by, updated_by = row
    assert (division, number) == ("01", "SF000001")  # the default scheme: prefix SF + 6 digits
    assert (name, city, Decimal(limit), status) == ("Zoë's Hardware Inc", "Boston", Decimal("7500.00"), "A")
    assert (created_by, updated_by) == (SF_USER, SF_USER)
    phone = world.sql(
        "SELECT TelephoneNo, UserUpdatedKey FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ?",
        *seeded_customer[:2],
    )
    assert phone == [("(617) 555-0100", SF_USER)]
    results = world.results(4)
    assert [r["outcome"] for r in results] == ["CREATED", "EXISTING", "UPDATED", "UPDATED"]
    assert [r["customer"]["customer_no"] for r in results] == ["SF000001"] * 3 + [seeded_customer[1]]
    assert results[0]["customer"]["salesforce_account_id"] == account
    assert results[0]["customer_created"] is True


def city_and_editor(world: World, division: str, number: str) -> list[tuple[Any, ...]]:
    return world.sql(
        "SELECT City, UserUpdatedKey FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ?",
        division,
        number,
    )


def test_a_replayed_old_customer_change_does_not_overwrite_a_newer_edit_made_in_sage(world):
    account = sf_id("001")
    changed_at = datetime.now(UTC) - timedelta(minutes=10)  # when the Account changed in Salesforce
    old = customer_record(account, "Harbor Supply", billing_address={"line1": "1 Dock St", "city": "Boston"})
    key, first = upsert_command(old)
    first["source_event_time"] = changed_at
    world.send_commands((key, first))
    world.run_sink(until_results=1)
    [(division, number, *_)] = customer_row(world, account)
    with SageSimulator(world.db, zone=world.sage.zone) as sage:  # a Sage user edits it afterwards
        sage.edit_customer(division, number, {"City": "Cambridge"}, user="0001")

    # the same old change again (a replay), then a change made after the Sage user's edit
    newer = {**old, "billing_address": {"line1": "1 Dock St", "city": "Salem"}, "envelope": envelope(account)}
    key, later = upsert_command(newer)
    later["source_event_time"] = datetime.now(UTC) + timedelta(seconds=5)
    world.send_commands((key, first))
    world.run_sink(until_results=2)
    assert city_and_editor(world, division, number) == [("Cambridge", "0001")]
    world.send_commands((key, later))
    world.run_sink(until_results=3)

    created, replayed, fresh = world.results(3)
    assert [r["outcome"] for r in (created, replayed, fresh)] == ["CREATED", "EXISTING", "UPDATED"]
    stale = replayed["stale"]
    assert stale["compared_with"] == "AR_Customer.DateUpdated+TimeUpdated"
    assert stale["source_event_time"] == changed_at.replace(microsecond=changed_at.microsecond // 1000 * 1000)
    assert stale["target_time"] > changed_at
    assert f"{division}-{number}" in stale["reason"]
    assert "user 0001" in stale["reason"]
    assert replayed["customer"]["customer_no"] == number  # the processors still learn the link
    assert fresh["stale"] is None
    assert world.dead_letters() == []
    assert city_and_editor(world, division, number) == [("Salem", SF_USER)]


def test_an_order_for_a_new_customer_creates_the_customer_first(world):
    data = seeded(world)
    account = sf_id("001")
    opportunity = sf_id()
    command = order_command(
        opportunity,
        [line(1, data["items"][0], "1", "99.00")],
        {"salesforce_account_id": account},
        customer_record(account, "Brand New Customer LLC"),
    )
    world.send_commands(command, command)

    world.run_sink(until_results=2)

    [(division, number, name, *_)] = customer_row(world, account)
    [header] = orders_for(world, opportunity)
    assert (header[2], header[3]) == (division, number)
    assert name == "Brand New Customer LLC"
    bill_to = world.sql("SELECT BillToName FROM SO_SalesOrderHeader WHERE SalesOrderNo = ?", header[0])
    assert bill_to == [("Brand New Customer LLC",)]  # defaulted from the customer, as BOI does
    first, again = world.results(2)
    assert (first["outcome"], first["customer_created"]) == ("CREATED", True)
    assert (first["customer"]["ar_division_no"], first["customer"]["customer_no"]) == (division, number)
    assert (again["outcome"], again["sales_order_no"]) == ("EXISTING", header[0])


# --- credit check ----------------------------------------------------------------------------

REP = sf_id("005")  # the Salesforce users who fire the requests (the event's CreatedById)
OTHER_REP = sf_id("005")
FIGURES = ("credit_limit", "current_balance", "open_order_total", "available_credit")


def credit_request(
    ref: dict[str, Any], amount: str, deadline: datetime, requester: str | None = REP
) -> dict[str, Any]:
    correlation = str(uuid.uuid4())
    return {
        "envelope": envelope(correlation, correlation=correlation),
        "correlation_id": correlation,
        "customer": {"salesforce_account_id": None, "name": None, **ref},
        "order_amount": Decimal(amount),
        "currency_code": "USD",
        "deadline": deadline,
        "salesforce_record_id": None,
        "requester_id": requester,
    }


def linked_customers(world: World, count: int) -> list[dict[str, Any]]:
    """`count` active customers with a credit limit and open orders, each linked (UDF_SALESFORCE_ID)
    to an Account of its own: {account, ref, limit, balance, open_total, available}."""
    rows = world.sql(
        "SELECT c.ARDivisionNo, c.CustomerNo, c.CreditLimit, c.CurrentBalance FROM AR_Customer c "
        "WHERE c.CustomerStatus = ? AND c.CreditLimit <> ? AND EXISTS (SELECT 1 FROM SO_SalesOrderHeader h "
        "WHERE h.ARDivisionNo = c.ARDivisionNo AND h.CustomerNo = c.CustomerNo) "
        "ORDER BY c.ARDivisionNo, c.CustomerNo",
        "A",
        "0.00",
    )
    assert len(rows) >= count, "the seeded company has too few customers with a limit and orders"
    linked = []
    odbc = world.db.odbc()
    try:
        for division, number, limit, balance in rows[:count]:
            account = sf_id("001")
            odbc.execute(
                "UPDATE AR_Customer SET UDF_SALESFORCE_ID = ? WHERE ARDivisionNo = ? AND CustomerNo = ?",
                [account, division, number],
            )
            open_total = open_order_total(world, division, number)
            linked.append(
                {
                    "account": account,
                    "ref": {
                        "salesforce_account_id": account,
                        "ar_division_no": division,
                        "customer_no": number,
                    },
                    "limit": Decimal(limit),
                    "balance": Decimal(balance),
                    "open_total": open_total,
                    "available": Decimal(limit) - Decimal(balance) - open_total,
                }
            )
    finally:
        odbc.close()
    return linked


def open_order_total(world: World, division: str, number: str) -> Decimal:
    open_orders = world.sql(
        "SELECT TaxableAmt, NonTaxableAmt, SalesTaxAmt, FreightAmt, DiscountAmt FROM SO_SalesOrderHeader "
        "WHERE ARDivisionNo = ? AND CustomerNo = ? AND OrderStatus IN (?, ?, ?)",
        division,
        number,
        "N",
        "O",
        "H",
    )
    return sum(
        (Decimal(a) + Decimal(b) + Decimal(c) + Decimal(d) - Decimal(e) for a, b, c, d, e in open_orders),
        Decimal(0),
    )


def ask(world: World, *requests: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run the credit responder over `requests`; its replies by correlation ID."""
    topic = world.sink.credit_requests_topic
    value, key = world.serde("CreditCheckRequest", topic), world.key_serde(topic)
    for request in requests:
        world.producer.send(topic, value.encode(request), key.encode(request["correlation_id"]))
    world.producer.confirm()
    replies_topic = world.sink.credit_replies_topic
    process = world.process()
    try:
        loop = build_credit_loop(process)
        run_until(
            loop, lambda: count(world.bootstrap, replies_topic) >= len(requests), 60, "the credit responder"
        )
    finally:
        process.close()
    serde = world.serde("CreditCheckReply", replies_topic)
    messages = wait_for_records(world.bootstrap, replies_topic, len(requests))
    assert [m.key for m in messages] == [key.encode(r["correlation_id"]) for r in requests]
    replies = [serde.decode(m.value) for m in messages]
    return {r["correlation_id"]: r for r in replies if isinstance(r, dict)}


def test_credit_check_answers_with_sages_figures_within_the_deadline_and_stale_requests_as_expired(world):
    [mine] = linked_customers(world, 1)
    now = datetime.now(UTC)
    fits = credit_request(mine["ref"], "1.00", now + timedelta(seconds=60))
    too_big = credit_request(
        mine["ref"], str(mine["available"] + Decimal("0.01")), now + timedelta(seconds=60)
    )
    by_account_only = credit_request(
        {"salesforce_account_id": mine["account"]}, "1.00", now + timedelta(seconds=60)
    )
    unknown = credit_request(
        {"salesforce_account_id": sf_id("001"), "ar_division_no": "01", "customer_no": "NOBODY"},
        "1.00",
        now + timedelta(seconds=60),
    )
    stale = credit_request(mine["ref"], "1.00", now - timedelta(seconds=1))

    replies = ask(world, fits, too_big, by_account_only, unknown, stale)

    approved = replies[fits["correlation_id"]]
    assert approved["decision"] == "APPROVED"
    assert approved["credit_limit"] == mine["limit"]
    assert approved["current_balance"] == mine["balance"]
    assert approved["open_order_total"] == mine["open_total"]
    assert mine["open_total"] > 0
    assert approved["available_credit"] == mine["available"]
    assert approved["customer"]["customer_no"] == mine["ref"]["customer_no"]
    assert approved["requester_id"] == REP
    assert approved["envelope"]["event_time"] <= fits["deadline"]
    assert replies[too_big["correlation_id"]]["decision"] == "OVER_LIMIT"
    found = replies[by_account_only["correlation_id"]]
    assert (found["decision"], found["customer"]["customer_no"]) == ("APPROVED", mine["ref"]["customer_no"])
    assert replies[unknown["correlation_id"]]["decision"] == "CUSTOMER_NOT_FOUND"
    expired = replies[stale["correlation_id"]]
    assert expired["decision"] in ("EXPIRED", "ERROR")
    assert expired["message"].startswith("expired")
    assert expired["credit_limit"] is None  # no stale figures


def test_a_requester_asking_about_another_accounts_customer_gets_the_not_found_answer(world):
    mine, theirs = linked_customers(world, 2)
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    # from my Account, naming the other Account's customer number
    prying = credit_request({**theirs["ref"], "salesforce_account_id": mine["account"]}, "1.00", deadline)

    reply = ask(world, prying)[prying["correlation_id"]]

    assert reply["decision"] == "CUSTOMER_NOT_FOUND"
    assert all(reply[f] is None for f in FIGURES)
    assert reply["customer"]["name"] is None


def test_an_unknown_customer_and_a_customer_the_requester_may_not_see_get_the_same_answer(world):
    mine, theirs = linked_customers(world, 2)
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    from_mine = {"salesforce_account_id": mine["account"], "ar_division_no": theirs["ref"]["ar_division_no"]}
    not_visible = credit_request({**from_mine, "customer_no": theirs["ref"]["customer_no"]}, "1.00", deadline)
    unknown = credit_request({**from_mine, "customer_no": "NOBODY"}, "1.00", deadline)
    unlinked = credit_request({"salesforce_account_id": sf_id("001")}, "1.00", deadline)
    # the Salesforce source publishes a request whose requester may not read its Account without it
    withheld = credit_request({}, "1.00", deadline)

    replies = ask(world, not_visible, unknown, unlinked, withheld)

    def answer(request: dict[str, Any]) -> tuple[Any, ...]:
        reply = replies[request["correlation_id"]]
        said = {k: v for k, v in request["customer"].items() if v is not None}
        assert {k: v for k, v in reply["customer"].items() if v is not None} == said  # nothing looked up
        return (reply["decision"], reply["message"], *(reply[f] for f in FIGURES))

    assert answer(not_visible) == answer(unknown) == answer(unlinked) == answer(withheld)
    assert answer(unknown)[0] == "CUSTOMER_NOT_FOUND"
    assert answer(unknown)[2:] == (None, None, None, None)


def test_a_negative_and_a_too_large_amount_are_refused_without_figures(world):
    [mine] = linked_customers(world, 1)
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    negative = credit_request(mine["ref"], "-5.00", deadline)
    zero = credit_request(mine["ref"], "0.00", deadline)
    too_large = credit_request(mine["ref"], "1000000000.01", deadline)  # the default bound is 1e9
    largest = credit_request(mine["ref"], "1000000000.00", deadline)

    replies = ask(world, negative, zero, too_large, largest)

    for refused in (negative, zero, too_large):
        reply = replies[refused["correlation_id"]]
        assert reply["decision"] == "ERROR"
        assert "order amount" in reply["message"]
        assert all(reply[f] is None for f in FIGURES)
    assert replies[largest["correlation_id"]]["decision"] == "OVER_LIMIT"


def test_the_request_over_the_limit_is_refused_while_another_requester_still_gets_answers(world):
    [mine] = linked_customers(world, 1)
    world.sink = world.sink.model_copy(
        update={"credit_requests_per_requester": 3, "credit_rate_period_seconds": 3600.0}
    )
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    busy = [credit_request(mine["ref"], "1.00", deadline, requester=REP) for _ in range(4)]
    other = credit_request(mine["ref"], "1.00", deadline, requester=OTHER_REP)

    replies = ask(world, *busy, other)

    decisions = sorted(replies[r["correlation_id"]]["decision"] for r in busy)
    assert decisions == ["APPROVED", "APPROVED", "APPROVED", "RATE_LIMITED"]
    limited = next(
        replies[r["correlation_id"]] for r in busy if replies[r["correlation_id"]]["decision"] != "APPROVED"
    )
    assert "too many requests" in limited["message"]
    assert all(limited[f] is None for f in FIGURES)
    assert replies[other["correlation_id"]]["decision"] == "APPROVED"


def test_while_sage_is_locked_the_command_waits_and_is_written_once_when_sage_is_back(world):
    data = seeded(world)
    world.db.timeout = 0.3  # the sink gives up on a lock after 0.3 s: Sage unavailable
    world.sage = world.db.settings()
    opportunity = sf_id()
    world.send_commands(order_command(opportunity, [line(1, data["items"][0], "1", "8.00")], data["ref"]))
    opened_before = (
        REGISTRY.get_sample_value("sagesf_sage_circuit_opened_total", {"component": "sage-sink"}) or 0
    )
    blocker = pyodbc.connect(world.db.connection_string, autocommit=False)
    blocker.execute("UPDATE AR_Division SET DivisionDesc = DivisionDesc")  # holds the write lock
    release = threading.Timer(3.0, blocker.rollback)
    release.start()
    started = time.monotonic()
    try:
        world.run_sink(until_results=1)
    finally:
        release.join()
        blocker.close()

    assert time.monotonic() - started >= 3.0  # it waited for Sage rather than failing the command
    assert len(orders_for(world, opportunity)) == 1
    [result] = world.results(1)
    assert result["outcome"] == "CREATED"
    assert world.dead_letters() == []
    opened = REGISTRY.get_sample_value("sagesf_sage_circuit_opened_total", {"component": "sage-sink"}) or 0
    assert opened > opened_before  # the circuit breaker opened while Sage was locked


def test_customer_numbers_by_name_skip_numbers_already_used(world):
    udf = world.sage.salesforce_id_udf
    odbc = world.db.odbc()
    try:
        reads = SqlSageReads(odbc, world.db.tables, order_udf=udf, customer_udf=udf)
        by_name = CustomerNumbering("name", name_length=8)
        assert by_name.next_number(reads, "01", "Zephyr Tools, Inc.") == "ZEPHYRTO"
        odbc.execute(
            "INSERT INTO AR_Customer (ARDivisionNo, CustomerNo, CustomerName) VALUES (?, ?, ?)",
            ["01", "ZEPHYRTO", "Zephyr Tools"],
        )
        assert by_name.next_number(reads, "01", "Zephyr Tools, Inc.") == "ZEPHYR01"
        assert by_name.next_number(reads, "02", "Zephyr Tools, Inc.") == "ZEPHYRTO"  # per division
        assert by_name.next_number(reads, "01", "!!!") == "SF000001"  # nothing to derive: sequence
        sequence = CustomerNumbering("sequence", prefix="W", digits=4)
        assert sequence.next_number(reads, "01", "x") == "W0001"
    finally:
        odbc.close()


# --- links, history, refused orders, reasons -------------------------------------------------


def customer_state(world: World, division: str, number: str) -> list[tuple[Any, ...]]:
    return world.sql(
        "SELECT CustomerName, TermsCode, CreditLimit, UDF_SALESFORCE_ID, UserUpdatedKey, DateUpdated, "
        "TimeUpdated FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ?",
        division,
        number,
    )


def test_commands_for_a_sage_customer_linked_to_another_account_are_refused_and_change_nothing(world):
    data = seeded(world)
    division, number = data["ref"]["ar_division_no"], data["ref"]["customer_no"]
    owner, intruder = sf_id("001"), sf_id("001")
    odbc = world.db.odbc()  # linked to its Account earlier
    odbc.execute("UPDATE AR_Customer SET UDF_SALESFORCE_ID = ? WHERE CustomerNo = ?", [owner, number])
    odbc.close()
    before = customer_state(world, division, number)
    hijack = customer_record(
        intruder, "Someone Else Entirely", ar_division_no=division, customer_no=number, terms_code="05"
    )
    hijacked_opportunity, owners_opportunity = sf_id(), sf_id()
    item = data["items"][0]
    world.send_commands(
        upsert_command(hijack),
        order_command(
            hijacked_opportunity,
            [line(1, item, "1", "10.00")],
            {"salesforce_account_id": intruder, "ar_division_no": division, "customer_no": number},
        ),
        order_command(
            owners_opportunity,
            [line(1, item, "1", "10.00")],
            {"salesforce_account_id": owner, "ar_division_no": division, "customer_no": number},
        ),
    )

    world.run_sink(until_results=3)

    upsert, order, owners = world.results(3)
    assert [upsert["outcome"], order["outcome"], owners["outcome"]] == ["REJECTED", "REJECTED", "CREATED"]
    for refused in (upsert, order):
        assert f"{division}-{number}" in refused["error"]["reason"]
        assert owner in refused["error"]["reason"]  # says which Account the customer belongs to
        assert refused["sales_order_no"] is None
    dead = world.dead_letters(expected=2)
    assert [owner in dict(m.headers)["__connect.errors.exception.message"].decode() for m in dead] == [
        True
    ] * 2
    assert customer_state(world, division, number) == before  # not renamed, not re-termed, link kept
    assert orders_for(world, hijacked_opportunity) == []
    assert len(orders_for(world, owners_opportunity)) == 1


def test_an_order_sage_moved_to_history_is_found_by_its_salesforce_id_and_never_written_again(world):
    from sandbox.sage100.simulator import SageSimulator

    data = seeded(world)
    commands = [
        order_command(sf_id(), [line(1, data["items"][0], "2", "5.00")], data["ref"]) for _ in range(4)
    ]
    world.send_commands(*commands)
    world.run_sink(until_results=4)
    first = world.results(4)
    assert [r["outcome"] for r in first] == ["CREATED"] * 4
    completed, deleted, invoiced, invoiced_no_history = (r["sales_order_no"] for r in first)
    with SageSimulator(world.db) as sage:  # period-end and invoicing, as Sage does them
        sage.set_order_status(completed, "C")
        sage.purge_order(completed)
        sage.delete_order(deleted)
        sage.invoice_order(invoiced)
        sage.invoice_order(invoiced_no_history, retain_history=False)  # only invoice history left
    assert world.sql(
        "SELECT COUNT(*) FROM SO_SalesOrderHistoryHeader WHERE SalesOrderNo = ?", invoiced_no_history
    ) == [(0,)]
    next_no = world.sql("SELECT NextSalesOrderNo FROM SO_Options")

    world.send_commands(*commands)  # a gap event, a catch-up read, a replay or a re-send: the same commands
    world.run_sink(until_results=8)

    again = world.results(8)[4:]
    assert [r["outcome"] for r in again] == ["EXISTING"] * 4
    assert [r["sales_order_no"] for r in again] == [completed, deleted, invoiced, invoiced_no_history]
    assert [r["order_status"] for r in again] == ["CLOSED", "DELETED", "CLOSED", "CLOSED"]
    for opportunity, _ in commands:
        assert orders_for(world, opportunity) == []  # no second order
    assert world.sql("SELECT NextSalesOrderNo FROM SO_Options") == next_no
    assert world.dead_letters() == []


REFUSE_LINES_OF = (
    "CREATE TRIGGER sage_refuses BEFORE INSERT ON SO_SalesOrderDetail WHEN NEW.ItemCode = '{item}' "
    "BEGIN SELECT RAISE(ABORT, '{message}'); END"
)


def test_an_order_sage_refuses_for_a_new_account_leaves_no_customer_behind(world):
    data = seeded(world)
    refused_item, good_item = data["items"]
    odbc = world.db.odbc()  # Sage refuses this item's lines when it writes them, after every check
    odbc.execute(REFUSE_LINES_OF.format(item=refused_item, message="constraint failed: item on stop"))
    odbc.close()
    customers_before = world.sql("SELECT COUNT(*) FROM AR_Customer")
    refused_account, good_account = sf_id("001"), sf_id("001")
    refused_opportunity, good_opportunity = sf_id(), sf_id()
    world.send_commands(
        order_command(
            refused_opportunity,
            [line(1, good_item, "1", "5.00"), line(2, refused_item, "1", "5.00")],
            {"salesforce_account_id": refused_account},
            customer_record(refused_account, "Refused Order Co"),
        ),
        order_command(
            good_opportunity,
            [line(1, good_item, "1", "5.00")],
            {"salesforce_account_id": good_account},
            customer_record(good_account, "Accepted Order Co"),
        ),
    )

    world.run_sink(until_results=2)

    refused, good = world.results(2)
    assert (refused["outcome"], refused["customer_created"]) == ("REJECTED", False)
    assert customer_row(world, refused_account) == []  # no customer, no link
    assert orders_for(world, refused_opportunity) == []
    assert (good["outcome"], good["customer_created"]) == ("CREATED", True)
    assert len(customer_row(world, good_account)) == 1
    assert world.sql("SELECT COUNT(*) FROM AR_Customer") == [(customers_before[0][0] + 1,)]
    assert len(world.dead_letters(expected=1)) == 1


def test_a_driver_error_reaches_the_result_as_a_short_reason_and_the_dead_letter_in_full(world):
    data = seeded(world)
    item = data["items"][0]
    driver_text = (
        "constraint failed: SQLSTATE=23000 [Sage][ODBC Driver] while writing with "
        "Driver={SQLite3};Database=C:/Sage/MAS90;UID=sagesf;PWD=Pw-9xq7-leaks"
    )
    odbc = world.db.odbc()
    odbc.execute(REFUSE_LINES_OF.format(item=item, message=driver_text))
    odbc.close()
    world.send_commands(order_command(sf_id(), [line(1, item, "1", "5.00")], data["ref"]))

    world.run_sink(until_results=1)

    [result] = world.results(1)
    reason = result["error"]["reason"]
    assert result["outcome"] == "REJECTED"
    assert reason.startswith("Sage 100 refused the write: ")
    for leak in ("SQLSTATE", "23000", "ODBC", "Driver=", "SQLite", "UID=", "PWD", "Pw-9xq7-leaks"):
        assert leak not in reason
    [dead] = world.dead_letters(expected=1)
    headers = dict(dead.headers)
    message = headers["__connect.errors.exception.message"].decode()
    assert "SQLSTATE=23000" in message  # operators get the whole text ...
    assert "Driver={SQLite3};Database=C:/Sage/MAS90;UID=sagesf" in message
    for name, value in headers.items():  # ... but never the password
        assert b"Pw-9xq7-leaks" not in value, name
