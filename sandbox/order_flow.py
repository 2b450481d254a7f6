"""The headline scenario, as a user and an operator see it: shared by the demo, e2e tests, bench.

A sales rep (through simple-salesforce against the emulator, as the emulator's sales user, so
their writes are not the integration's) creates an account and an opportunity with product lines
and marks it Closed Won. Everything after that is the pipeline's work; the `wait_*` functions
poll the target systems themselves (the Sage 100 database over ODBC, Salesforce over REST), never
the pipeline's internals, and return what they found or raise `TimeoutError` saying what is
missing. Each wait is bounded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pyodbc
from simple_salesforce.format import format_soql

from sandbox.sage100 import connection_string

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, every: float = 0.2) -> T:
    """Call `probe` until it returns something other than None (or a falsy empty result)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(every)


def sales_rep(url: str) -> Any:
    """simple-salesforce logged in as the emulator's sales user (not the integration user)."""
    from sandbox.salesforce import sandbox_credentials
    from sandbox.salesforce.client import connect
    from sandbox.salesforce.config import SALES_USERNAME

    creds = sandbox_credentials(url, username=SALES_USERNAME)
    return connect(
        creds.url,
        username=creds.username,
        password=creds.password,
        client_id=creds.client_id,
        client_secret=creds.client_secret,
    )


@dataclass
class WonOpportunity:
    account_id: str
    account_name: str
    opportunity_id: str
    lines: list[tuple[str, int]]  # (ProductCode, quantity)
    won_at: float = field(default_factory=time.monotonic)  # monotonic clock at Closed Won


def price_book(sf: Any) -> dict[str, tuple[str, float]]:
    """ProductCode -> (PricebookEntry Id, unit price) of the standard price book."""
    rows = sf.query_all(
        "SELECT Id, UnitPrice, Product2.ProductCode FROM PricebookEntry WHERE IsActive = true"
    )["records"]
    return {r["Product2"]["ProductCode"]: (r["Id"], float(r["UnitPrice"])) for r in rows if r.get("Product2")}


def sell_new_product(sf: Any, code: str, price: float) -> tuple[str, float]:
    """A new active Product2 `code` in the standard price book: its (PricebookEntry Id, price)."""
    product = sf.Product2.create({"Name": f"Widget {code}", "ProductCode": code, "IsActive": True})["id"]
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")["records"][0]["Id"]
    entry = sf.PricebookEntry.create(
        {"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": price, "IsActive": True}
    )["id"]
    return entry, price


def win_new_customer_opportunity(
    sf: Any, lines: list[tuple[str, int]], entries: dict[str, tuple[str, float]], name: str | None = None
) -> WonOpportunity:
    """A new account, an opportunity with `lines` (ProductCode, quantity), then Closed Won."""
    suffix = uuid.uuid4().hex[:6].upper()
    account_name = name or f"Demo Customer {suffix}"
    account_id = sf.Account.create(
        {
            "Name": account_name,
            "BillingStreet": "12 Harbor Way",
            "BillingCity": "Irvine",
            "BillingState": "CA",
            "BillingPostalCode": "92618",
            "BillingCountry": "United States",
            "Phone": "949-555-0100",
        }
    )["id"]
    opportunity_id = sf.Opportunity.create(
        {
            "Name": f"{account_name} - first order",
            "AccountId": account_id,
            "StageName": "Prospecting",
            "CloseDate": time.strftime("%Y-%m-%d"),
        }
    )["id"]
    for code, quantity in lines:
        entry_id, price = entries[code]
        sf.OpportunityLineItem.create(
            {
                "OpportunityId": opportunity_id,
                "PricebookEntryId": entry_id,
                "Quantity": quantity,
                "UnitPrice": price,
            }
        )
    sf.Opportunity.update(opportunity_id, {"StageName": "Closed Won"})
    return WonOpportunity(account_id, account_name, opportunity_id, lines)


class SageDatabase:
    """Read-only looks at the sandbox Sage 100 company, over ODBC like a report would."""

    def __init__(self, path: Path) -> None:
        self.connection = pyodbc.connect(connection_string(path), autocommit=True)

    def close(self) -> None:
        self.connection.close()

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        cursor = self.connection.execute(sql, *params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def customer_for(self, account_id: str) -> dict[str, Any] | None:
        found = self.rows(
            "SELECT ARDivisionNo, CustomerNo, CustomerName, UserCreatedKey FROM AR_Customer "
            "WHERE UDF_SALESFORCE_ID = ?",
            account_id,
        )
        return found[0] if found else None

    def order_for(self, salesforce_id: str) -> dict[str, Any] | None:
        found = self.rows(
            "SELECT SalesOrderNo, OrderStatus, ARDivisionNo, CustomerNo, TaxableAmt, NonTaxableAmt "
            "FROM SO_SalesOrderHeader WHERE UDF_SALESFORCE_ID = ?",
            salesforce_id,
        )
        return found[0] if found else None

    def orders_for(self, salesforce_id: str) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT SalesOrderNo FROM SO_SalesOrderHeader WHERE UDF_SALESFORCE_ID = ?", salesforce_id
        )

    def lines_of(self, sales_order_no: str) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT LineKey, ItemCode, QuantityOrdered, UnitPrice, ExtensionAmt FROM SO_SalesOrderDetail "
            "WHERE SalesOrderNo = ? ORDER BY LineSeqNo",
            sales_order_no,
        )

    def on_hand(self, item_code: str) -> Decimal:
        rows = self.rows("SELECT QuantityOnHand FROM IM_ItemWarehouse WHERE ItemCode = ?", item_code)
        return sum((Decimal(str(r["QuantityOnHand"])) for r in rows), Decimal(0))


def write_back(sf: Any, opportunity_id: str) -> dict[str, Any] | None:
    """The opportunity's Sage fields once the pipeline has written them (else None)."""
    row = sf.Opportunity.get(opportunity_id)
    if not row.get("Sage_Order_No__c"):
        return None
    return {
        k: row.get(k)
        for k in ("Sage_Order_No__c", "Sage_Order_Status__c", "Sage_Sync_Status__c", "Sage_Sync_Message__c")
    }


# --- many orders at once (the e2e tests' crash run, bench/e2e.py) ---------------------------------


def sage_customer_accounts(sf: Any, db: SageDatabase, count: int) -> list[tuple[str, str]]:
    """(Account Id, Name) of `count` Salesforce accounts that are existing Sage 100 customers.

    Upserted by ExternalID__c = ARDivisionNo-CustomerNo of the first `count` AR_Customer rows
    (one sObject Collections call), so orders for them need no customer step; safe to repeat.
    """
    customers = db.rows(
        "SELECT ARDivisionNo, CustomerNo, CustomerName FROM AR_Customer "
        "ORDER BY ARDivisionNo, CustomerNo LIMIT ?",
        count,
    )
    records = [
        {
            "attributes": {"type": "Account"},
            "ExternalID__c": f"{c['ARDivisionNo']}-{c['CustomerNo']}",
            "Name": c["CustomerName"],
        }
        for c in customers
    ]
    results = sf.restful(
        "composite/sobjects/Account/ExternalID__c",
        method="PATCH",
        json={"allOrNone": True, "records": records},
    )
    return [(r["id"], c["CustomerName"]) for r, c in zip(results, customers, strict=True)]


def open_opportunity(
    sf: Any,
    account_id: str,
    lines: list[tuple[str, int]],
    entries: dict[str, tuple[str, float]],
    name: str | None = None,
) -> str:
    """An open (Prospecting) opportunity of `account_id` with `lines`: two calls, not one per line."""
    opportunity_id: str = sf.Opportunity.create(
        {
            "Name": name or f"Order {uuid.uuid4().hex[:8].upper()}",
            "AccountId": account_id,
            "StageName": "Prospecting",
            "CloseDate": time.strftime("%Y-%m-%d"),
        }
    )["id"]
    records = []
    for number, (code, quantity) in enumerate(lines, start=1):
        entry_id, price = entries[code]
        records.append(
            {
                "attributes": {"type": "OpportunityLineItem"},
                "OpportunityId": opportunity_id,
                "PricebookEntryId": entry_id,
                "Quantity": quantity,
                "UnitPrice": price,
                "SortOrder": number,
            }
        )
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    failed = [r for r in results if not r["success"]]
    if failed:
        raise RuntimeError(f"creating the lines of {opportunity_id} failed: {failed[0]['errors']}")
    return opportunity_id


def win_opportunity(
    sf: Any,
    account_id: str,
    account_name: str,
    lines: list[tuple[str, int]],
    entries: dict[str, tuple[str, float]],
) -> WonOpportunity:
    """An opportunity of an existing account with `lines`, marked Closed Won."""
    opportunity_id = open_opportunity(sf, account_id, lines, entries, name=f"{account_name} - order")
    sf.Opportunity.update(opportunity_id, {"StageName": "Closed Won"})
    return WonOpportunity(account_id, account_name, opportunity_id, lines)


def order_numbers(sf: Any, opportunity_ids: list[str], chunk: int = 200) -> dict[str, str | None]:
    """Sage_Order_No__c of each opportunity, one SOQL query per `chunk` IDs (None: not there yet)."""
    found: dict[str, str | None] = {}
    for start in range(0, len(opportunity_ids), chunk):
        ids = opportunity_ids[start : start + chunk]
        soql = format_soql("SELECT Id, Sage_Order_No__c FROM Opportunity WHERE Id IN {}", ids)
        rows = sf.query_all(soql)["records"]
        found.update({r["Id"]: r.get("Sage_Order_No__c") or None for r in rows})
    return found
