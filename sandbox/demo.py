"""`sagesf demo` (what `make demo` runs): a Closed Won opportunity becomes a Sage 100 sales order.

Steps, each verified by reading the target system and timed from the moment the opportunity was
marked Closed Won; the command exits 1 on the first step that fails:
0. bring the sandbox up (Kafka, schema registry, Salesforce emulator, topics, schemas, both
   connectors and the processors) and seed the demo Salesforce org (idempotent);
1. as a sales rep, through simple-salesforce against the emulator: a new account and an
   opportunity with three product lines, marked Closed Won;
2. the change event is detected: a canonical SalesOrder for it on salesorder.v1;
3. the customer is created in Sage 100 (AR_Customer, found by the Account ID in its UDF);
4. the products are mapped (ProductCode -> ItemCode, mappings/products.yaml);
5. SO_SalesOrderHeader and SO_SalesOrderDetail are written;
6. the SalesOrderNo and status are back on the opportunity (Sage_Sync_Status__c Synced);
7. stock moves in Sage (a receipt of an ordered item) and is synced back to Product2;
8. a Sage-side status change (N -> O) arrives on the opportunity;
9. the customer sync, both ways: the rep edits the account (Phone, and AccountNumber, a custom
   field paired with the UDF_ACCOUNT_NUMBER column) and AR_Customer follows; a Sage user sets the
   credit limit and the Account follows;
10. the credit check: the rep fires a Credit_Check_Request__e from the new customer's Account;
   Sage's figures land on a Credit_Check__c record the rep owns, and the Credit_Check_Reply__e a
   CometD subscriber receives (same correlation ID) names that record and carries no figures;
   the figures shown are read from the record.
Steps 9 and 10 are timed on their own. It leaves the sandbox running and prints where the
metrics are and how to stop it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import typer
import yaml
from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from simple_salesforce.format import format_soql

from sagesf import topic_names
from sandbox import stack, web_console
from sandbox.order_flow import (
    SageDatabase,
    WonOpportunity,
    price_book,
    sales_rep,
    wait_for,
    win_new_customer_opportunity,
    write_back,
)
from sandbox.paths import REPO_ROOT
from sandbox.pipeline import sage_database_path

app = typer.Typer(help="Run the sandbox demo (what `make demo` runs).")
console = Console(highlight=False)
LINES = [("1001-HON-H252", 6), ("D1000", 4), ("SVC-INSTALL", 3)]
TIMEOUT = 90.0


class Steps:
    """Numbered steps; the time printed is since Closed Won (or the step's own, before it)."""

    def __init__(self) -> None:
        self.won_at: float | None = None

    def run(self, number: int, title: str, work: Callable[[], str]) -> None:
        console.print(f"[bold]{number}. {title}[/bold]", soft_wrap=True)
        began = time.monotonic()
        try:
            detail = work()
        except Exception as exc:  # noqa: BLE001 - any failure ends the demo with its reason
            console.print(f"   [red]FAILED[/red] {type(exc).__name__}: {exc}", soft_wrap=True)
            raise typer.Exit(1) from None
        now = time.monotonic()
        when = f"+{now - self.won_at:.2f} s after Closed Won" if self.won_at else f"{now - began:.1f} s"
        console.print(f"   [green]ok[/green] {detail}  [dim]({when})[/dim]", soft_wrap=True)


def _end_offsets(bootstrap: str, topic: str) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = []
        for p in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends.append(TopicPartition(topic, p, high))
        return ends
    finally:
        consumer.close()


def _find_record(bootstrap: str, start: list[TopicPartition], needle: str, timeout: float) -> str:
    """Where the first record after `start` whose key holds `needle` landed: topic[partition]@offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(start)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            if needle.encode() in (msg.key() or b""):
                return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        raise TimeoutError(f"no record for {needle} on {start[0].topic} within {timeout:.0f} s")
    finally:
        consumer.close()


def _lookup() -> dict[str, str]:
    data = yaml.safe_load((REPO_ROOT / "mappings" / "products.yaml").read_text())
    return {str(k): str(v) for k, v in (data.get("lookup") or {}).items()}


def _status_value(code: str) -> str:
    data = yaml.safe_load((REPO_ROOT / "mappings" / "orders.yaml").read_text())
    return str(data["order_status"]["sage_codes"][code])


@app.callback(invoke_without_command=True)
def demo() -> None:
    """Closed Won in Salesforce -> a Sage 100 sales order, and Sage's answers back, step by step."""
    steps = Steps()
    sandbox = stack.Sandbox()
    state: dict[str, Any] = {}

    def bring_up() -> str:
        nonlocal sandbox
        sandbox = stack.up(lambda line: console.print("   " + line, soft_wrap=True))
        from sandbox.salesforce import scenarios

        state["sf"] = sales_rep(sandbox.addresses["salesforce"])
        summary = scenarios.seed(state["sf"])
        state["entries"] = price_book(state["sf"])
        state["db"] = SageDatabase(sage_database_path())
        return f"sandbox up; Salesforce org seeded ({summary.products} products with prices)"

    steps.run(
        0, "Start the sandbox: Kafka, registry, Salesforce emulator, Sage 100 database, pipeline", bring_up
    )
    sf, db = state["sf"], state["db"]
    bootstrap = sandbox.addresses["kafka"]
    orders_start = _end_offsets(bootstrap, topic_names.SALES_ORDERS)
    won: WonOpportunity | None = None

    def close_won() -> str:
        nonlocal won
        won = win_new_customer_opportunity(sf, LINES, state["entries"])
        steps.won_at = time.monotonic()
        lines = ", ".join(f"{code} x {qty}" for code, qty in LINES)
        return f"account {won.account_name!r} ({won.account_id}), opportunity {won.opportunity_id}: {lines}"

    steps.run(1, "As a sales rep in Salesforce: new account, opportunity with 3 lines, Closed Won", close_won)
    assert won is not None
    opp = won.opportunity_id
    steps.run(
        2,
        "Change event detected and published as a canonical SalesOrder",
        lambda: "SalesOrder at " + _find_record(bootstrap, orders_start, opp, TIMEOUT),
    )

    def customer() -> str:
        row = wait_for("AR_Customer for the account", lambda: db.customer_for(won.account_id), TIMEOUT)
        state["customer"] = row
        return (
            f"AR_Customer {row['ARDivisionNo']}-{row['CustomerNo']} {row['CustomerName']!r}, "
            f"created by Sage user {row['UserCreatedKey']}"
        )

    steps.run(3, "Customer created in Sage 100", customer)

    def order() -> str:
        header = wait_for("SO_SalesOrderHeader for the opportunity", lambda: db.order_for(opp), TIMEOUT)
        state["order"] = header
        state["lines"] = db.lines_of(header["SalesOrderNo"])
        lookup = _lookup()
        mapped = [(code, lookup.get(code, code)) for code, _ in LINES]
        got = [line["ItemCode"] for line in state["lines"]]
        if got != [item for _, item in mapped]:
            raise AssertionError(f"order lines carry {got}, expected {[item for _, item in mapped]}")
        return ", ".join(f"{code} -> {item}" for code, item in mapped)

    steps.run(4, "Products mapped to Sage items", order)

    def written() -> str:
        header, lines = state["order"], state["lines"]
        total = Decimal(header["TaxableAmt"]) + Decimal(header["NonTaxableAmt"])
        detail = "; ".join(
            f"{ln['LineKey']} {ln['ItemCode']} x {Decimal(ln['QuantityOrdered']).normalize()}"
            f" = {ln['ExtensionAmt']}"
            for ln in lines
        )
        if len(db.orders_for(opp)) != 1:
            raise AssertionError("more than one Sage order for the opportunity")
        return (
            f"SO_SalesOrderHeader {header['SalesOrderNo']} (status {header['OrderStatus']}, "
            f"customer {header['ARDivisionNo']}-{header['CustomerNo']}, total {total}); "
            f"SO_SalesOrderDetail {detail}"
        )

    steps.run(5, "Sage sales order written", written)

    def back() -> str:
        fields = wait_for("Sage_Order_No__c on the opportunity", lambda: write_back(sf, opp), TIMEOUT)
        if fields["Sage_Order_No__c"] != state["order"]["SalesOrderNo"]:
            raise AssertionError(
                f"opportunity says {fields['Sage_Order_No__c']}, Sage says {state['order']['SalesOrderNo']}"
            )
        if fields["Sage_Sync_Status__c"] != "Synced":
            raise AssertionError(f"Sage_Sync_Status__c is {fields['Sage_Sync_Status__c']}")
        return (
            f"Sage_Order_No__c={fields['Sage_Order_No__c']}, Sage_Order_Status__c="
            f"{fields['Sage_Order_Status__c']}, Sage_Sync_Status__c={fields['Sage_Sync_Status__c']}"
        )

    steps.run(6, "Order number and status back on the opportunity", back)

    def stock() -> str:
        from sandbox.sage100 import open_database
        from sandbox.sage100.simulator import SageSimulator

        code, item = LINES[0][0], _lookup()[LINES[0][0]]
        with SageSimulator(open_database(sage_database_path())) as sage:
            sage.move_stock(item, "000", 25)
        expected = float(db.on_hand(item))
        query = format_soql("SELECT Id FROM Product2 WHERE ProductCode = {}", code)
        product = sf.query(query)["records"][0]["Id"]

        def synced() -> float | None:
            value = sf.Product2.get(product).get("Quantity_On_Hand__c")
            return value if value is not None and abs(float(value) - expected) < 0.005 else None

        wait_for(f"Product2 {code} Quantity_On_Hand__c = {expected:g}", synced, TIMEOUT)
        return f"receipt of 25 {item} in warehouse 000; Product2 {code} Quantity_On_Hand__c = {expected:g}"

    steps.run(7, "Stock updated in Sage and synced back to Product2", stock)

    def status_change() -> str:
        from sandbox.sage100 import open_database
        from sandbox.sage100.simulator import SageSimulator

        number = state["order"]["SalesOrderNo"]
        with SageSimulator(open_database(sage_database_path())) as sage:
            sage.advance_order(number)
        wanted = _status_value("O")
        wait_for(
            f"Sage_Order_Status__c = {wanted}",
            lambda: wanted if sf.Opportunity.get(opp).get("Sage_Order_Status__c") == wanted else None,
            TIMEOUT,
        )
        return f"Sage order {number} N -> O; opportunity Sage_Order_Status__c = {wanted}"

    steps.run(8, "A Sage-side status change arrives in Salesforce", status_change)
    steps.won_at = None  # the next steps are timed on their own

    def customer_sync() -> str:
        from sandbox.sage100 import open_database
        from sandbox.sage100.simulator import SageSimulator

        account = won.account_id
        division, number = state["customer"]["ARDivisionNo"], state["customer"]["CustomerNo"]
        phone, account_no = "(312) 555-0142", f"DEMO-{uuid.uuid4().hex[:6].upper()}"
        sf.Account.update(account, {"Phone": phone, "AccountNumber": account_no})

        def in_sage() -> bool | None:
            [row] = db.rows(
                "SELECT TelephoneNo, UDF_ACCOUNT_NUMBER FROM AR_Customer "
                "WHERE ARDivisionNo = ? AND CustomerNo = ?",
                division,
                number,
            )
            return (row["TelephoneNo"], row["UDF_ACCOUNT_NUMBER"]) == (phone, account_no) or None

        wait_for(f"AR_Customer {division}-{number} TelephoneNo and UDF_ACCOUNT_NUMBER", in_sage, TIMEOUT)
        limit = 25_000
        with SageSimulator(open_database(sage_database_path())) as sage:
            sage.edit_customer(division, number, {"CreditLimit": f"{limit}.00"})
        wait_for(
            f"Account Credit_Limit__c = {limit}",
            lambda: float(sf.Account.get(account).get("Credit_Limit__c") or 0) == limit or None,
            TIMEOUT,
        )
        return (
            f"Account Phone {phone}, AccountNumber {account_no} -> AR_Customer TelephoneNo, "
            f"UDF_ACCOUNT_NUMBER; Sage CreditLimit {limit} -> Account Credit_Limit__c"
        )

    steps.run(
        9, "Customer changes flow both ways (Account <-> AR_Customer, custom field <-> UDF)", customer_sync
    )

    def credit_check() -> str:
        import asyncio

        from sandbox.credit_flow import ReplyListener, answer_record
        from sandbox.salesforce.scenarios import request_credit_check

        external = f"{state['customer']['ARDivisionNo']}-{state['customer']['CustomerNo']}"
        correlation = uuid.uuid4().hex

        async def ask() -> dict[str, Any]:
            async with ReplyListener(sandbox.addresses["salesforce"]) as replies:
                request_credit_check(sf, external, 1_000.0, correlation)
                return (await replies.wait({correlation}, TIMEOUT))[correlation]

        event = asyncio.run(ask())
        broadcast = sorted(k for k in event if k.endswith("__c"))
        if broadcast != ["Correlation_Id__c", "Credit_Check_Id__c"]:
            raise AssertionError(
                f"the reply event carries {broadcast}, not only the correlation and record IDs"
            )
        record = answer_record(sf, event)
        if record is None:
            raise AssertionError(f"the reply names no Credit_Check__c: {event.get('Message__c')!r}")
        [owner] = sf.query(format_soql("SELECT Username FROM User WHERE Id = {}", record["OwnerId"]))[
            "records"
        ]
        return (
            f"Credit_Check_Request__e for {external}, 1000.00 -> Credit_Check_Reply__e "
            f"{{Correlation_Id__c, Credit_Check_Id__c={record['Id']}}} -> Credit_Check__c owned by "
            f"{owner['Username']}: Approved__c={record['Approved__c']}, "
            f"Available_Credit__c={record['Available_Credit__c']}, {record['Message__c']!r}"
        )

    steps.run(10, "Credit check: Salesforce asks, Sage answers", credit_check)
    db.close()
    console.print("\n[bold]Sandbox running.[/bold] Metrics and health of each process:")
    for service in stack.services():
        address = service.address()
        if service.pipeline and address:
            console.print(
                f"   {service.name:<17} {address}  ({address.removesuffix('/metrics')}/healthz)",
                soft_wrap=True,
            )
    console.print(
        f"Kafka {bootstrap}, schema registry {sandbox.addresses['registry']}, Salesforce emulator "
        f"{sandbox.addresses['salesforce']}; logs in .sandbox/<process>/.\n"
        f"Use it: export SAGESF_ENV_FILE={sandbox.env_file}; .venv/bin/sagesf dlq list\n"
        f"The web console: {web_console.console_url()} (users and passwords in "
        f"{web_console.passwords_file()})\n"
        "Stop it: .venv/bin/sagesf sandbox down",
        soft_wrap=True,
    )
