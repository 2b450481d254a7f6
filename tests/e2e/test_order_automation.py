"""Sales order automation end to end, over the real broker, the registry and both emulators.

A sales rep works in Salesforce (simple-salesforce against the emulator); each test then looks
only at what a user sees: Sage 100's order tables over ODBC and the opportunity's Sage fields in
Salesforce. One sandbox serves the module (tests/e2e/conftest.py); each test uses its own
opportunities. A short crash test runs first, on the fresh sandbox it needs; the long one, which
kills every pipeline process in turn, runs last.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from simple_salesforce.format import format_soql

from sagesf.config import KafkaSettings
from sagesf.positions import PositionStore
from sandbox import pipeline, stack
from sandbox.order_flow import (
    SageDatabase,
    WonOpportunity,
    order_numbers,
    price_book,
    sage_customer_accounts,
    sales_rep,
    sell_new_product,
    wait_for,
    win_new_customer_opportunity,
    win_opportunity,
    write_back,
)
from sandbox.paths import REPO_ROOT
from sandbox.processes import pid_alive
from sandbox.salesforce.config import SALES_USERNAME
from tests.e2e.conftest import OrderSandbox

pytestmark = pytest.mark.timeout(420)  # per test; the first one also pays the sandbox start (~45 s)

INTEGRATION_USER = "integration@sagesf.sandbox"
# kill -9 order of the crash test: the sinks first, the sources last
KILL_ORDER = ["sage-sink", "salesforce-sink", "processors", "sage-source", "salesforce-source"]


@pytest.fixture(scope="module")
def sf(order_sandbox: OrderSandbox) -> Any:
    return sales_rep(order_sandbox.salesforce_url)


@pytest.fixture(scope="module")
def db(order_sandbox: OrderSandbox) -> Iterator[SageDatabase]:
    database = SageDatabase(pipeline.sage_database_path())
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(scope="module")
def entries(sf: Any) -> dict[str, tuple[str, float]]:
    return price_book(sf)


@pytest.fixture(scope="module")
def customers(sf: Any, db: SageDatabase) -> list[tuple[str, str]]:
    """Salesforce accounts of existing Sage customers (ExternalID__c = ARDivisionNo-CustomerNo)."""
    return sage_customer_accounts(sf, db, 12)


@pytest.fixture(scope="module")
def lookup(order_sandbox: OrderSandbox) -> dict[str, str]:
    """ProductCode -> ItemCode, the lookup table the running processors use."""
    table = yaml.safe_load((order_sandbox.mappings_dir / "products.yaml").read_text())["lookup"]
    return {str(k): str(v) for k, v in table.items()}


# --- helpers -------------------------------------------------------------------------------------


def sagesf(box: OrderSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """A `sagesf` command as an operator runs it against this sandbox."""
    return subprocess.run(
        [sys.executable, "-m", "sagesf", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO_ROOT,
        env={**os.environ, "SAGESF_ENV_FILE": str(box.env_file), "COLUMNS": "250"},
    )


def opportunity(sf: Any, opportunity_id: str) -> dict[str, Any]:
    return dict(sf.Opportunity.get(opportunity_id))


def lines_in_sage(db: SageDatabase, sales_order_no: str) -> list[tuple[str, Decimal]]:
    """(ItemCode, QuantityOrdered) of an order's lines in Sage, in line order."""
    return [(r["ItemCode"], Decimal(str(r["QuantityOrdered"]))) for r in db.lines_of(sales_order_no)]


def header_count(db: SageDatabase) -> int:
    return int(db.rows("SELECT COUNT(*) AS n FROM SO_SalesOrderHeader")[0]["n"])


def service(name: str) -> stack.Service:
    return {s.name: s for s in stack.services()}[name]


def kill_9(name: str) -> None:
    """SIGKILL a pipeline process (its whole process group) and wait until it is gone."""
    component = next(c for c in pipeline.COMPONENTS if c.name == name)
    state = pipeline.component_process(component).state
    assert state is not None, f"{name} was never started"
    assert state.alive, f"{name} is not running"
    os.killpg(state.pid, signal.SIGKILL)
    wait_for(f"{name} (pid {state.pid}) to die", lambda: None if pid_alive(state.pid) else True, 30, 0.05)


def processors_reloads() -> int:
    """How many times the running processors reloaded edited mappings (their /metrics)."""
    address = service("processors").address()
    assert address is not None, "the processors are not running"
    with urllib.request.urlopen(address, timeout=5) as response:  # noqa: S310 - the sandbox's own URL
        text = response.read().decode()
    found = re.search(r'^sagesf_processor_mapping_reloads_total\{result="ok"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def add_lookup_entry(mappings_dir: Path, product_code: str, item_code: str) -> None:
    """What an operator does to fix an unknown product: one more line in the lookup table."""
    path = mappings_dir / "products.yaml"
    text = path.read_text()
    assert "\nlookup:\n" in text
    path.write_text(text.replace("\nlookup:\n", f"\nlookup:\n  {product_code}: {item_code}\n", 1))


def deliveries(box: OrderSandbox, key: str, topic: str = "salesorder.v1") -> list[int]:
    """Timestamps (ms) of the records of `topic` whose key is `key` (a Salesforce ID): how often
    the CDC source published a won opportunity."""
    consumer = Consumer(
        {
            "bootstrap.servers": box.kafka,
            "group.id": f"e2e-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        ends = {}
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        found = []
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            if key.encode() in (msg.key() or b""):
                found.append(msg.timestamp()[1])
            if (msg.offset() or 0) + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
        assert not ends, f"could not read {topic} to its end"
        return found
    finally:
        consumer.close()


def modified_by_integration_since(sf: Any, opportunity_id: str, since_ms: int) -> Callable[[], bool | None]:
    """A probe: True once the integration user wrote the opportunity at or after `since_ms`."""
    users = sf.query(format_soql("SELECT Id FROM User WHERE Username = {}", INTEGRATION_USER))["records"]
    integration = users[0]["Id"]

    def probe() -> bool | None:
        row = opportunity(sf, opportunity_id)
        written = datetime.strptime(row["LastModifiedDate"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000
        return True if row["LastModifiedById"] == integration and written >= since_ms else None

    return probe


def all_order_numbers(sf: Any, db: SageDatabase, ids: list[str], timeout: float) -> dict[str, str]:
    """Wait until every opportunity shows its Sage order number; on timeout say what is missing."""
    deadline = time.monotonic() + timeout
    while True:
        found = order_numbers(sf, ids)
        missing = [i for i in ids if not found.get(i)]
        if not missing:
            return {i: str(found[i]) for i in ids}
        if time.monotonic() > deadline:
            in_sage = {i: [o["SalesOrderNo"] for o in db.orders_for(i)] for i in missing}
            lost = sorted(i for i, orders in in_sage.items() if orders)
            raise AssertionError(
                f"{len(missing)} of {len(ids)} opportunities without Sage_Order_No__c after {timeout:.0f} s; "
                f"{len(lost)} of them have their Sage order, so the write-back was lost: {in_sage}"
            )
        time.sleep(0.5)


def stays(what: str, check: Callable[[], bool], seconds: float) -> None:
    """Assert `check` holds throughout `seconds` (nothing late undoes it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.25)


# --- the tests -----------------------------------------------------------------------------------


def test_kill_9_of_the_processors_while_the_sage_sink_catches_up(
    order_sandbox: OrderSandbox,
    sf: Any,
    db: SageDatabase,
    entries: dict[str, tuple[str, float]],
    customers: list[tuple[str, str]],
) -> None:
    """Two crashes close together: the Sage sink restarts and writes a backlog of orders while the
    processors, killed too, are rejoining their group. Sage's answers must still come back.

    First in the module on purpose: on a fresh sandbox the partitions of sage.results.v1 are
    committed at 0 or not at all. aiokafka's seek_to_committed does not seek those, so before
    processors/transport.py the restarted processors resumed past the answers they had fetched
    and dropped while rebuilding their tables: every order of the backlog was in Sage and none
    had its number in Salesforce (8 of 8, every run)."""
    warm = win_opportunity(sf, *customers[2], [("6655", 1)], entries)
    wait_for("the order number of a first order", lambda: write_back(sf, warm.opportunity_id), 60)
    kill_9("sage-sink")
    time.sleep(1.0)
    service("sage-sink").start()  # back, but waiting for its group to drop the killed member
    backlog = [win_opportunity(sf, *customers[3 + i % 8], [("2481-H-F", i + 1)], entries) for i in range(8)]
    time.sleep(2.0)  # the processors command these orders, then die
    kill_9("processors")
    time.sleep(1.0)
    service("processors").start()
    numbers = all_order_numbers(sf, db, [won.opportunity_id for won in backlog], 90)
    for won in backlog:
        orders = [o["SalesOrderNo"] for o in db.orders_for(won.opportunity_id)]
        assert orders == [numbers[won.opportunity_id]], (won.opportunity_id, orders)


def test_unknown_product_is_dead_lettered_then_replayed_once_after_the_lookup_is_fixed(
    order_sandbox: OrderSandbox,
    sf: Any,
    db: SageDatabase,
    entries: dict[str, tuple[str, float]],
    customers: list[tuple[str, str]],
) -> None:
    # a product that Salesforce sells but the lookup table does not know
    code = f"E2E-WIDGET-{uuid.uuid4().hex[:6].upper()}"
    account_id, account_name = customers[0]
    won = win_opportunity(
        sf,
        account_id,
        account_name,
        [("1001-HON-H252", 2), (code, 3)],
        {**entries, code: sell_new_product(sf, code, 15.0)},
    )

    failed = wait_for(
        "Sage_Sync_Status__c = Error on the opportunity",
        lambda: (
            row if (row := opportunity(sf, won.opportunity_id))["Sage_Sync_Status__c"] == "Error" else None
        ),
        timeout=60,
    )
    assert code in (failed["Sage_Sync_Message__c"] or ""), failed["Sage_Sync_Message__c"]
    assert not failed["Sage_Order_No__c"]
    assert db.orders_for(won.opportunity_id) == []

    # the operator fixes the lookup table; the running processors pick the edit up
    reloads = processors_reloads()
    add_lookup_entry(order_sandbox.mappings_dir, code, "HRDW-1008")
    wait_for("the processors to reload the mappings", lambda: processors_reloads() > reloads or None, 30)

    replayed = sagesf(order_sandbox, "dlq", "replay", "orders", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert won.opportunity_id in replayed.stdout, replayed.stdout  # it was in dlq.orders.v1, and was sent

    synced = wait_for("the order number on the opportunity", lambda: write_back(sf, won.opportunity_id), 60)
    assert synced["Sage_Sync_Status__c"] == "Synced"
    # the error is gone; what is left says what Sage holds differently (descriptions cut to 30)
    message = synced["Sage_Sync_Message__c"] or ""
    assert code not in message
    assert not message or message.startswith("As Sage 100 holds it: "), message
    orders = db.orders_for(won.opportunity_id)
    assert [o["SalesOrderNo"] for o in orders] == [synced["Sage_Order_No__c"]]
    assert lines_in_sage(db, synced["Sage_Order_No__c"]) == [
        ("HRDW-1000", Decimal(2)),
        ("HRDW-1008", Decimal(3)),
    ]

    # a second replay of the same dead letter (forced) reaches Salesforce again and changes nothing
    since = int(time.time() * 1000)
    again = sagesf(order_sandbox, "dlq", "replay", "orders", "--all", "--again")
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for(
        "the forced replay's write-back", modified_by_integration_since(sf, won.opportunity_id, since), 60
    )
    assert [o["SalesOrderNo"] for o in db.orders_for(won.opportunity_id)] == [synced["Sage_Order_No__c"]]


def test_duplicate_change_events_make_one_order(
    order_sandbox: OrderSandbox,
    sf: Any,
    db: SageDatabase,
    entries: dict[str, tuple[str, float]],
    customers: list[tuple[str, str]],
) -> None:
    positions = PositionStore(KafkaSettings(bootstrap_servers=order_sandbox.kafka), "salesforce-source")
    try:
        before = positions.load()  # where the CDC source stood before this opportunity existed
        account_id, account_name = customers[1]
        won = win_opportunity(sf, account_id, account_name, [("2481-H-F", 4), ("6655", 1)], entries)
        first = wait_for(
            "the order number on the opportunity", lambda: write_back(sf, won.opportunity_id), 60
        )
        number = first["Sage_Order_No__c"]

        def published_again_and_written_back(since_ms: int) -> None:
            """Wait until the won opportunity is published at or after `since_ms` and the
            integration has written the opportunity after that (so the duplicate went all the way)."""
            published = wait_for(
                "the won opportunity published again",
                lambda: max(
                    (t for t in deliveries(order_sandbox, won.opportunity_id) if t >= since_ms), default=None
                ),
                60,
                every=0.5,
            )
            wait_for(
                "the write-back after the duplicate",
                modified_by_integration_since(sf, won.opportunity_id, published),
                60,
                every=0.5,
            )

        # the rep edits the won opportunity, then reopens it and wins it again
        since = int(time.time() * 1000)
        sf.Opportunity.update(
            won.opportunity_id, {"Description": "Deliver to the back door", "NextStep": "Ship"}
        )
        sf.Opportunity.update(won.opportunity_id, {"StageName": "Negotiation/Review"})
        sf.Opportunity.update(won.opportunity_id, {"StageName": "Closed Won"})
        published_again_and_written_back(since)

        # the source delivers all those change events again: stopped, moved back, restarted
        source = service("salesforce-source")
        assert source.stop()
        positions.put_many(before)
        since = int(time.time() * 1000)
        source.start()
        published_again_and_written_back(since)
    finally:
        positions.producer.close()

    stays(
        "exactly one Sage order for the opportunity",
        lambda: [o["SalesOrderNo"] for o in db.orders_for(won.opportunity_id)] == [number],
        3,
    )
    assert write_back(sf, won.opportunity_id) == first
    assert lines_in_sage(db, number) == [("ELEC-1001", Decimal(4)), ("TOOL-1003", Decimal(1))]


def test_customers_sync_both_ways(sf: Any, db: SageDatabase, customers: list[tuple[str, str]]) -> None:
    """A sales rep edits the Account of a Sage customer; a Sage user edits that customer, then
    creates one Salesforce has never seen. Each change arrives on the other side without undoing
    the other's, and the new customer becomes exactly one Account (upsert by ExternalID__c)."""
    from sandbox.sage100 import open_database
    from sandbox.sage100.simulator import SageSimulator

    account_id, _ = customers[11]
    external = sf.Account.get(account_id)["ExternalID__c"]
    division, number = external.split("-", 1)

    def sage_customer(no: str) -> dict[str, Any]:
        return db.rows("SELECT * FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ?", division, no)[0]

    # Salesforce -> Sage: the phone, a custom field to its UDF_ column (customers.yaml), and the
    # link to the Account in the Salesforce ID UDF
    phone = f"(312) 555-{random.randrange(1000, 9999)}"
    account_no = f"SF-{uuid.uuid4().hex[:8].upper()}"
    sf.Account.update(account_id, {"Phone": phone, "AccountNumber": account_no})
    row = wait_for(
        f"AR_Customer {external} TelephoneNo = {phone}",
        lambda: found if (found := sage_customer(number))["TelephoneNo"] == phone else None,
        60,
    )
    assert row["UDF_ACCOUNT_NUMBER"] == account_no
    assert row["UDF_SALESFORCE_ID"] == account_id

    # Sage -> Salesforce: the credit limit and the UDF
    limit = random.randrange(100, 900) * 100
    sage_no = f"SG-{uuid.uuid4().hex[:8].upper()}"
    with SageSimulator(open_database(pipeline.sage_database_path())) as sage:
        sage.edit_customer(division, number, {"CreditLimit": f"{limit}.00", "UDF_ACCOUNT_NUMBER": sage_no})
    account = wait_for(
        f"Account {account_id} Credit_Limit__c = {limit}",
        lambda: (
            got if float((got := sf.Account.get(account_id)).get("Credit_Limit__c") or 0) == limit else None
        ),
        60,
    )
    assert account["AccountNumber"] == sage_no  # the UDF back to its Salesforce field
    assert account["Phone"] == phone  # the rep's edit was not undone

    # a customer only Sage knows becomes one Account, found again (not duplicated) on its next change
    new_no = f"E2E{uuid.uuid4().hex[:5].upper()}"
    template = sage_customer(number)
    fresh = {
        k: v
        for k, v in template.items()
        if k not in ("UDF_SALESFORCE_ID",) and not k.startswith(("Date", "Time", "User"))
    }
    fresh.update(CustomerNo=new_no, CustomerName=f"Sage Only {new_no}", TelephoneNo="(312) 555-0100")
    fresh["CustomerStatus"] = "A"  # only active customers become Accounts
    with SageSimulator(open_database(pipeline.sage_database_path())) as sage:
        sage.write_row("AR_Customer", fresh)
    query = format_soql(
        "SELECT Id, Name, Phone FROM Account WHERE ExternalID__c = {}", f"{division}-{new_no}"
    )
    [created] = wait_for(
        f"an Account for {division}-{new_no}", lambda: sf.query(query)["records"] or None, 60
    )
    assert created["Name"] == f"Sage Only {new_no}"
    with SageSimulator(open_database(pipeline.sage_database_path())) as sage:
        sage.edit_customer(division, new_no, {"TelephoneNo": "(312) 555-0199"})
    wait_for(
        "the new Account's phone",
        lambda: True if sf.query(query)["records"][0]["Phone"] == "(312) 555-0199" else None,
        60,
    )
    assert len(sf.query(query)["records"]) == 1


def credit_replies(salesforce_url: str, correlations: set[str], timeout: float = 60.0) -> dict[str, Any]:
    """The Credit_Check_Reply__e of each correlation ID, as a requester in Salesforce sees them
    (CometD, replaying the retained events so none is missed)."""
    from sandbox.credit_flow import ReplyListener

    async def listen() -> dict[str, Any]:
        async with ReplyListener(salesforce_url, replay_all=True) as replies:
            return await replies.wait(correlations, timeout)

    return asyncio.run(listen())


def test_a_credit_check_asked_in_salesforce_is_answered_by_sage(
    order_sandbox: OrderSandbox, sf: Any, db: SageDatabase, customers: list[tuple[str, str]]
) -> None:
    """Use case 4: a Credit_Check_Request__e goes to Sage; Sage's figures land on a Credit_Check__c
    owned by the rep who asked, and the Credit_Check_Reply__e every subscriber receives names that
    record (same correlation ID) and carries no figures. The emulator does not enforce sharing, so
    what is checked is what the emulator can show: the event's fields and the record's owner."""
    from sandbox.credit_flow import answer_record
    from sandbox.salesforce.scenarios import request_credit_check

    for account_id, _ in reversed(customers):  # an active customer with a credit limit, if any
        external = sf.Account.get(account_id)["ExternalID__c"]
        division, number = external.split("-", 1)
        [row] = db.rows(
            "SELECT CreditLimit, CurrentBalance, CustomerStatus FROM AR_Customer "
            "WHERE ARDivisionNo = ? AND CustomerNo = ?",
            division,
            number,
        )
        if row["CustomerStatus"] == "A" and Decimal(str(row["CreditLimit"])) > 0:
            break
    assert row["CustomerStatus"] == "A"
    # Sage answers only about the customer linked to the asking Account: wait for the link
    wait_for(
        f"AR_Customer {external} linked to Account {account_id}",
        lambda: (
            db.rows(
                "SELECT 1 AS linked FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ? "
                "AND UDF_SALESFORCE_ID = ?",
                division,
                number,
                account_id,
            )
            or None
        ),
        60,
    )
    small, large = uuid.uuid4().hex, uuid.uuid4().hex
    request_credit_check(sf, external, 1.0, small)
    request_credit_check(sf, external, 10_000_000.0, large)
    replies = credit_replies(order_sandbox.salesforce_url, {small, large})

    for event in replies.values():
        assert sorted(k for k in event if k.endswith("__c")) == ["Correlation_Id__c", "Credit_Check_Id__c"]
    me = sf.query(format_soql("SELECT Id FROM User WHERE Username = {}", SALES_USERNAME))["records"][0]["Id"]
    yes, no = (answer_record(sf, replies[c]) for c in (small, large))
    assert yes is not None
    assert no is not None
    assert (yes["OwnerId"], no["OwnerId"]) == (me, me)
    assert (yes["Correlation_Id__c"], yes["Account_Id__c"]) == (small, account_id)
    limit, balance = Decimal(str(row["CreditLimit"])), Decimal(str(row["CurrentBalance"]))
    if limit == 0:  # no limit in Sage: everything fits, and there is no available figure
        assert (yes["Approved__c"], no["Approved__c"]) == (True, True)
        return
    assert yes["Approved__c"] is (limit - balance >= 1)
    assert (no["Approved__c"], no["Decision__c"]) == (False, "OVER_LIMIT")
    assert no["Message__c"]
    assert Decimal(str(yes["Credit_Limit__c"])) == limit
    assert Decimal(str(yes["Available_Credit__c"])) <= limit - balance  # open orders count against it


# Sage refuses, when it writes them, the lines of `item` in orders of the customer linked to
# `account`: a SQLite trigger stands for what Sage checks only at write time (an item put on stop
# meanwhile, a credit hold), after every check of the sink has passed
REFUSE_LINES = (
    "CREATE TRIGGER {name} BEFORE INSERT ON SO_SalesOrderDetail "
    "WHEN NEW.ItemCode = '{item}' AND EXISTS ("
    "SELECT 1 FROM SO_SalesOrderHeader h JOIN AR_Customer c "
    "ON c.ARDivisionNo = h.ARDivisionNo AND c.CustomerNo = h.CustomerNo "
    "WHERE h.SalesOrderNo = NEW.SalesOrderNo AND c.UDF_SALESFORCE_ID = '{account}') "
    "BEGIN SELECT RAISE(ABORT, 'item on stop for this customer'); END"
)


def test_an_order_sage_refuses_for_a_new_account_leaves_no_customer_behind(
    order_sandbox: OrderSandbox,
    sf: Any,
    db: SageDatabase,
    entries: dict[str, tuple[str, float]],
    lookup: dict[str, str],
) -> None:
    """The first opportunity of a new account, won, with a line Sage refuses when it writes the
    order: nothing of it stays in Sage (no AR_Customer, so no ExternalID__c on the Account) and the
    opportunity says why, shortly. Once the cause is gone, the replayed dead letter makes exactly
    one customer and one order."""
    from sandbox.sage100 import open_database

    suffix = uuid.uuid4().hex[:6].upper()
    name = f"Refused First Order {suffix}"
    account_id = sf.Account.create(
        {"Name": name, "BillingCity": "Irvine", "BillingState": "CA", "BillingCountry": "United States"}
    )["id"]
    trigger = f"e2e_refuse_{suffix}"
    sage = open_database(pipeline.sage_database_path()).odbc()
    try:
        sage.execute(REFUSE_LINES.format(name=trigger, item=lookup["6655"], account=account_id))
        won = win_opportunity(sf, account_id, name, [("1001-HON-H252", 2), ("6655", 1)], entries)

        failed = wait_for(
            "Sage_Sync_Status__c = Error on the opportunity",
            lambda: (
                row
                if (row := opportunity(sf, won.opportunity_id))["Sage_Sync_Status__c"] == "Error"
                else None
            ),
            timeout=60,
        )
        message = failed["Sage_Sync_Message__c"] or ""
        assert message.startswith("Sage 100 "), message
        assert not any(text in message for text in ("SQLite", "ODBC", "SQLSTATE", "RAISE")), message
        assert not failed["Sage_Order_No__c"]

        def customers_of_the_account() -> list[dict[str, Any]]:
            return db.rows(
                "SELECT ARDivisionNo, CustomerNo FROM AR_Customer WHERE UDF_SALESFORCE_ID = ?", account_id
            )

        stays(
            "no AR_Customer and no ExternalID__c for the account of the refused order",
            lambda: customers_of_the_account() == [] and not sf.Account.get(account_id)["ExternalID__c"],
            5,
        )
        assert db.orders_for(won.opportunity_id) == []
    finally:
        sage.execute(f"DROP TRIGGER IF EXISTS {trigger}")  # the cause fixed
        sage.close()

    replayed = sagesf(order_sandbox, "dlq", "replay", "orders", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert won.opportunity_id in replayed.stdout, replayed.stdout

    synced = wait_for("the order number on the opportunity", lambda: write_back(sf, won.opportunity_id), 60)
    assert synced["Sage_Sync_Status__c"] == "Synced"
    [customer] = customers_of_the_account()
    external = f"{customer['ARDivisionNo']}-{customer['CustomerNo']}"
    account = wait_for(
        f"ExternalID__c = {external} on the Account",
        lambda: got if (got := sf.Account.get(account_id))["ExternalID__c"] == external else None,
        60,
    )
    assert account["Sage_Sync_Status__c"] == "Synced"
    [order] = db.rows(
        "SELECT SalesOrderNo, ARDivisionNo, CustomerNo FROM SO_SalesOrderHeader WHERE UDF_SALESFORCE_ID = ?",
        won.opportunity_id,
    )
    assert order["SalesOrderNo"] == synced["Sage_Order_No__c"]
    assert (order["ARDivisionNo"], order["CustomerNo"]) == (customer["ARDivisionNo"], customer["CustomerNo"])
    assert lines_in_sage(db, order["SalesOrderNo"]) == [
        ("HRDW-1000", Decimal(2)),
        (lookup["6655"], Decimal(1)),
    ]
    stays("one customer for the account", lambda: len(customers_of_the_account()) == 1, 2)


def test_kill_9_of_each_process_in_turn_during_50_orders(
    order_sandbox: OrderSandbox,
    sf: Any,
    db: SageDatabase,
    entries: dict[str, tuple[str, float]],
    customers: list[tuple[str, str]],
    lookup: dict[str, str],
) -> None:
    count = 50
    rng = random.Random(6)
    codes = sorted(entries)
    # every fifth order is for a new customer (its customer is created in Sage first)
    plan = [
        (
            None if n % 5 == 4 else customers[n % len(customers)],
            [(c, rng.randint(1, 9)) for c in rng.sample(codes, rng.randint(1, 3))],
        )
        for n in range(count)
    ]
    headers_before = header_count(db)
    submitted: list[WonOpportunity] = []
    permits = threading.Semaphore(0)  # the main thread says how many more opportunities to win
    stop = threading.Event()
    started = time.monotonic()

    def note(event: str) -> None:  # the timeline, which pytest shows when the test fails
        print(f"{time.monotonic() - started:6.1f} s  {event}")

    def sell() -> None:  # a sales rep winning opportunities in the background, when permitted
        rep = sales_rep(order_sandbox.salesforce_url)  # its own session: simple-salesforce is not thread-safe
        for account, lines in plan:
            while not permits.acquire(timeout=0.5):
                if stop.is_set():
                    return
            if account is None:
                submitted.append(win_new_customer_opportunity(rep, lines, entries))
            else:
                submitted.append(win_opportunity(rep, account[0], account[1], lines, entries))
            time.sleep(0.1)

    def in_flight() -> list[str]:
        """Won opportunities without their order number yet."""
        ids = [won.opportunity_id for won in list(submitted)]
        found = order_numbers(sf, ids)
        return [i for i in ids if not found.get(i)]

    with ThreadPoolExecutor(1, thread_name_prefix="sales-rep") as pool:
        selling = pool.submit(sell)

        def won_at_least(n: int) -> Callable[[], bool | None]:
            return lambda: len(submitted) >= n or selling.done() or None

        try:
            for turn, name in enumerate(KILL_ORDER):
                # five orders won just before the kill, five more while the process is down
                permits.release(5)
                wait_for(f"order {10 * turn + 5} to be won", won_at_least(10 * turn + 5), 120, 0.05)
                flying = in_flight()
                kill_9(name)
                note(f"kill -9 {name}: {len(submitted)} won, {len(flying)} of them without an order number")
                assert flying, f"nothing in flight when {name} was killed: the test would prove nothing"
                permits.release(5)
                time.sleep(1.0)
                service(name).start()
                note(f"{name} restarted")
            selling.result(timeout=120)  # re-raises what went wrong while selling
        finally:
            stop.set()
    assert len(submitted) == count

    # the last restart's group rejoin (10 s) and the backlog behind it
    numbers = all_order_numbers(sf, db, [won.opportunity_id for won in submitted], 120)
    note("every opportunity has its order number")
    stays("no more Sage orders than opportunities", lambda: header_count(db) == headers_before + count, 3)
    for won in submitted:
        orders = [o["SalesOrderNo"] for o in db.orders_for(won.opportunity_id)]
        assert orders == [numbers[won.opportunity_id]], (
            won.opportunity_id,
            orders,
            numbers[won.opportunity_id],
        )
        expected = [(lookup[code], Decimal(quantity)) for code, quantity in won.lines]
        assert lines_in_sage(db, orders[0]) == expected, won.opportunity_id
    new_accounts = [
        won.account_id for won, (account, _) in zip(submitted, plan, strict=True) if account is None
    ]
    for account_id in new_accounts:
        created = db.rows("SELECT CustomerNo FROM AR_Customer WHERE UDF_SALESFORCE_ID = ?", account_id)
        assert len(created) == 1, (account_id, created)
