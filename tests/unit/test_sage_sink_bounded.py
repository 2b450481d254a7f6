"""The Sage sink gives up, with a reason, on work that can never succeed, rather than retrying it
forever: customer numbers used up, a next-order-number counter that is not a number, order
numbers used up. Runs `SageCommandSink.write` on the sandbox database (SQLite over unixODBC, the
real driver); the Kafka loop around it is tested in tests/integration/test_sage_sink.py."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.commands import parse_command
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.reads import SqlSageReads
from connectors.sage100.sink import SageCommandSink
from connectors.sage100.sql_writer import SqlSageWriter
from connectors.sage100.validation import CommandValidator
from sagesf.errors import Permanent
from sagesf.sink import Inbound, Outcome


@pytest.fixture
def odbc(sage_db):
    connection = sage_db.odbc()
    yield connection
    connection.close()


def sink(sage_db, odbc, numbering: CustomerNumbering | None = None) -> SageCommandSink:
    tables = sage_db.tables
    reads = SqlSageReads(odbc, tables)
    return SageCommandSink(
        reads=reads,
        writer=SqlSageWriter(odbc, tables, user_key="SGSF", zone=sage_db.settings().zone),
        validator=CommandValidator(reads, tables=tables),
        numbering=numbering or CustomerNumbering(),
        results_topic="sage.results.v1",
        breaker=CircuitBreaker("sage-sink"),
    )


def envelope(record_id: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": "SAGESF",
        "source_record_id": record_id,
        "correlation_id": None,
    }


def new_customer_command(name: str) -> Inbound:
    account = ("001" + uuid.uuid4().hex.upper())[:18]
    customer = {"salesforce_account_id": account, "name": name, "status": "ACTIVE"}
    value = {
        "envelope": envelope(account),
        "command_id": f"cmd-{uuid.uuid4().hex[:8]}",
        "command": (
            "io.sagesf.canonical.UpsertCustomer",
            {"customer": customer, "columns": {"CustomerName": name}},
        ),
    }
    return Inbound("sage.commands.v1", 0, 0, None, None, key=account, value=parse_command(value))


def order_command(odbc) -> Inbound:
    [(division, number)] = odbc.fetchall(
        "SELECT ARDivisionNo, CustomerNo FROM AR_Customer WHERE CustomerStatus = ? "
        "ORDER BY CustomerNo LIMIT 1",
        ["A"],
    )
    [(item,)] = odbc.fetchall(
        "SELECT ItemCode FROM CI_Item WHERE InactiveItem = ? AND ItemType = ? ORDER BY ItemCode LIMIT 1",
        ["N", "1"],
    )
    opportunity = ("006" + uuid.uuid4().hex.upper())[:18]
    order = {
        "envelope": envelope(opportunity),
        "salesforce_opportunity_id": opportunity,
        "customer": {"ar_division_no": division, "customer_no": number},
        "order_date": date(2025, 3, 7),
        "lines": [
            {"line_no": 1, "item_code": item, "quantity_ordered": Decimal(1), "unit_price": Decimal(2)}
        ],
    }
    value = {
        "envelope": envelope(opportunity),
        "command_id": f"cmd-{uuid.uuid4().hex[:8]}",
        "command": ("io.sagesf.canonical.CreateSalesOrder", {"order": order, "customer": None}),
    }
    return Inbound("sage.commands.v1", 0, 0, None, None, key=opportunity, value=parse_command(value))


def refused(outcome: Outcome) -> tuple[Permanent, dict[str, Any]]:
    """The outcome's error (a Permanent: dead-lettered, not retried) and its REJECTED result."""
    assert isinstance(outcome.error, Permanent), outcome.error
    assert not outcome.again
    assert outcome.result is not None
    result = outcome.result.value
    assert result is not None
    assert result["outcome"] == "REJECTED"
    return outcome.error, result


def test_a_new_customer_when_every_customer_number_is_used_is_refused_not_retried(sage_db, odbc):
    for n in range(1, 10):
        odbc.execute(
            "INSERT INTO AR_Customer (ARDivisionNo, CustomerNo, CustomerName) VALUES (?, ?, ?)",
            ["01", f"W{n}", f"Customer {n}"],
        )
    one_digit = CustomerNumbering("sequence", prefix="W", digits=1)

    [outcome] = sink(sage_db, odbc, one_digit).write([new_customer_command("Tenth Customer")])

    _, result = refused(outcome)
    assert "W9 are exhausted" in result["error"]["reason"]


def test_an_order_when_the_next_order_number_is_not_a_number_is_refused_not_retried(sage_db, odbc):
    odbc.execute("UPDATE SO_Options SET NextSalesOrderNo = ?", ["A0017"])

    [outcome] = sink(sage_db, odbc).write([order_command(odbc)])

    error, result = refused(outcome)
    assert "NextSalesOrderNo 'A0017' is not a number" in result["error"]["reason"]
    assert error.field == "SO_Options.NextSalesOrderNo"
    assert odbc.fetchall("SELECT NextSalesOrderNo FROM SO_Options") == [("A0017",)]


def test_an_order_when_sales_order_numbers_are_used_up_is_refused_not_retried(sage_db, odbc):
    odbc.execute("UPDATE SO_Options SET NextSalesOrderNo = ?", ["9999999"])
    odbc.execute(
        "INSERT INTO SO_SalesOrderHistoryHeader (SalesOrderNo, OrderStatus) VALUES (?, ?)", ["9999999", "C"]
    )

    [outcome] = sink(sage_db, odbc).write([order_command(odbc)])

    _, result = refused(outcome)
    assert "exhausted" in result["error"]["reason"]
