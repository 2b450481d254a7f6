"""Demo data and operator scenarios for the Salesforce emulator, driven through its REST API.

What it owns: `seed(sf)` loads a small sales org (accounts keyed by Sage's ARDivisionNo-CustomerNo
in ExternalID__c, their contacts, products keyed by Sage ItemCode with Standard Price Book entries,
and open opportunities with line items); the scenarios do what a sales rep would do in the UI:
`close_won` moves an opportunity to Closed Won, `edit_account` changes an account,
`request_credit_check` publishes a Credit_Check_Request__e platform event. Everything goes through
an unmodified simple-salesforce client, so each step also produces the CDC events a real org would.

How it works: seeding is idempotent: accounts, contacts and products are upserted by external ID
with sObject Collections, price book entries and opportunities are created only when missing (found
by SOQL), so running it twice changes nothing.

Limits: the data is fixed and small; it does not mirror the Sage sandbox database's customers
one to one (the demo maps what it needs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simple_salesforce.format import format_soql

ACCOUNTS: list[dict[str, Any]] = [
    {
        "ExternalID__c": "01-ABF",
        "Name": "American Business Futures",
        "Type": "Customer - Direct",
        "Industry": "Consulting",
        "Phone": "(949) 555-0142",
        "BillingStreet": "2131 Main Street",
        "BillingCity": "Irvine",
        "BillingState": "CA",
        "BillingPostalCode": "92614",
        "BillingCountry": "USA",
        "Credit_Limit__c": 25000,
        "Payment_Terms__c": "Net 30",
    },
    {
        "ExternalID__c": "01-AVNET",
        "Name": "Avnet Processing Corp",
        "Type": "Customer - Direct",
        "Industry": "Electronics",
        "Phone": "(602) 555-0187",
        "BillingStreet": "4420 E Camelback Rd",
        "BillingCity": "Phoenix",
        "BillingState": "AZ",
        "BillingPostalCode": "85018",
        "BillingCountry": "USA",
        "Credit_Limit__c": 50000,
        "Payment_Terms__c": "Net 45",
    },
    {
        "ExternalID__c": "01-BRESLIN",
        "Name": "Breslin Parts Supply",
        "Type": "Customer - Channel",
        "Industry": "Manufacturing",
        "Phone": "(303) 555-0110",
        "BillingStreet": "880 Blake St",
        "BillingCity": "Denver",
        "BillingState": "CO",
        "BillingPostalCode": "80202",
        "BillingCountry": "USA",
        "Credit_Limit__c": 10000,
        "Payment_Terms__c": "Net 30",
    },
    {
        "ExternalID__c": "02-ORANGE",
        "Name": "Orange Door & Window Co.",
        "Type": "Prospect",
        "Industry": "Construction",
        "Phone": "(714) 555-0199",
        "BillingStreet": "17 Chapman Ave",
        "BillingCity": "Orange",
        "BillingState": "CA",
        "BillingPostalCode": "92866",
        "BillingCountry": "USA",
        "Payment_Terms__c": "Due on Receipt",
    },
]

CONTACTS: list[dict[str, Any]] = [
    {
        "ExternalID__c": "01-ABF-ARTIE",
        "FirstName": "Artie",
        "LastName": "Johnson",
        "Title": "Buyer",
        "account": "01-ABF",
    },
    {
        "ExternalID__c": "01-ABF-DENISE",
        "FirstName": "Denise",
        "LastName": "Lee",
        "Title": "Accounts Payable",
        "account": "01-ABF",
    },
    {
        "ExternalID__c": "01-AVNET-PAT",
        "FirstName": "Pat",
        "LastName": "O'Brien",
        "Title": "Operations",
        "account": "01-AVNET",
    },
    {
        "ExternalID__c": "01-BRESLIN-SAM",
        "FirstName": "Sam",
        "LastName": "Breslin",
        "Title": "Owner",
        "account": "01-BRESLIN",
    },
    {
        "ExternalID__c": "02-ORANGE-KIM",
        "FirstName": "Kim",
        "LastName": "Nguyen",
        "Title": "Buyer",
        "account": "02-ORANGE",
    },
]

PRODUCTS: list[dict[str, Any]] = [
    {
        "code": "1001-HON-H252",
        "sage_item": "HRDW-1000",
        "Name": "HON 2 Drawer Letter File",
        "Family": "Hardware",
        "price": 89.00,
        "on_hand": 120,
    },
    {
        "code": "1001-HON-H254LK",
        "sage_item": "HRDW-1004",
        "Name": "HON 4 Drawer Letter File w/Lock",
        "Family": "Hardware",
        "price": 199.00,
        "on_hand": 40,
    },
    {
        "code": "2481-H-F",
        "sage_item": "ELEC-1001",
        "Name": "Ink Jet Cartridge (Black)",
        "Family": "Parts",
        "price": 24.50,
        "on_hand": 600,
    },
    {
        "code": "6655",
        "sage_item": "TOOL-1003",
        "Name": "Deluxe Stapler",
        "Family": "Parts",
        "price": 12.95,
        "on_hand": 250,
    },
    {
        "code": "D1000",
        "sage_item": "PLMB-1002",
        "Name": "Ergonomic Desk Chair",
        "Family": "Hardware",
        "price": 349.00,
        "on_hand": 15,
    },
    {
        "code": "SVC-INSTALL",
        "sage_item": "/HANDLING",
        "Name": "On-site Installation (hour)",
        "Family": "Service",
        "price": 95.00,
        "on_hand": None,
    },
]

OPPORTUNITIES: list[dict[str, Any]] = [
    {
        "account": "01-ABF",
        "Name": "ABF - office refresh",
        "lines": [("1001-HON-H252", 6), ("D1000", 4), ("SVC-INSTALL", 3)],
    },
    {"account": "01-AVNET", "Name": "Avnet - print supplies", "lines": [("2481-H-F", 40), ("6655", 12)]},
    {"account": "01-BRESLIN", "Name": "Breslin - secure storage", "lines": [("1001-HON-H254LK", 5)]},
    {"account": "02-ORANGE", "Name": "Orange Door - first order", "lines": [("D1000", 2), ("6655", 2)]},
]


@dataclass
class SeedSummary:
    accounts: int = 0
    contacts: int = 0
    products: int = 0
    opportunities_created: int = 0
    line_items_created: int = 0
    opportunity_ids: dict[str, str] = field(default_factory=dict)


def _upsert(sf: Any, sobject: str, ext_field: str, records: list[dict[str, Any]]) -> list[str]:
    body = {"allOrNone": True, "records": [{"attributes": {"type": sobject}, **r} for r in records]}
    results = sf.restful(f"composite/sobjects/{sobject}/{ext_field}", method="PATCH", json=body)
    failed = [r for r in results if not r["success"]]
    if failed:
        raise RuntimeError(f"seeding {sobject} failed: {failed[0]['errors']}")
    return [r["id"] for r in results]


def seed(sf: Any) -> SeedSummary:
    """Load the demo org through `sf` (a simple-salesforce client); safe to run again."""
    summary = SeedSummary()
    account_ids = dict(
        zip(
            [a["ExternalID__c"] for a in ACCOUNTS],
            _upsert(
                sf, "Account", "ExternalID__c", [dict(a, Sage_Sync_Status__c="Synced") for a in ACCOUNTS]
            ),
            strict=True,
        )
    )
    summary.accounts = len(account_ids)
    contacts = [
        {k: v for k, v in c.items() if k != "account"} | {"AccountId": account_ids[c["account"]]}
        for c in CONTACTS
    ]
    summary.contacts = len(_upsert(sf, "Contact", "ExternalID__c", contacts))
    products = [
        {
            "Sage_Item_Code__c": p["sage_item"],
            "ProductCode": p["code"],
            "Name": p["Name"],
            "Family": p["Family"],
            "IsActive": True,
            "QuantityUnitOfMeasure": "Hour" if p["Family"] == "Service" else "Each",
            "Quantity_On_Hand__c": p["on_hand"],
        }
        for p in PRODUCTS
    ]
    product_ids = dict(
        zip(
            [p["code"] for p in PRODUCTS],
            _upsert(sf, "Product2", "Sage_Item_Code__c", products),
            strict=True,
        )
    )
    summary.products = len(product_ids)

    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")["records"][0]["Id"]
    existing = {
        r["Product2Id"]: r["Id"]
        for r in sf.query_all(
            format_soql("SELECT Id, Product2Id FROM PricebookEntry WHERE Pricebook2Id = {}", standard)
        )["records"]
    }
    entries: dict[str, str] = {}
    for p in PRODUCTS:
        product_id = product_ids[p["code"]]
        if product_id not in existing:
            existing[product_id] = sf.PricebookEntry.create(
                {
                    "Pricebook2Id": standard,
                    "Product2Id": product_id,
                    "UnitPrice": p["price"],
                    "IsActive": True,
                }
            )["id"]
        entries[p["code"]] = existing[product_id]

    close = (datetime.now(UTC).date() + timedelta(days=21)).isoformat()
    prices = {p["code"]: p["price"] for p in PRODUCTS}
    for opp in OPPORTUNITIES:
        account_id = account_ids[opp["account"]]
        found = sf.query(
            format_soql(
                "SELECT Id FROM Opportunity WHERE Name = {} AND AccountId = {}", opp["Name"], account_id
            )
        )["records"]
        if found:
            summary.opportunity_ids[opp["Name"]] = found[0]["Id"]
            continue
        opportunity_id = sf.Opportunity.create(
            {
                "Name": opp["Name"],
                "AccountId": account_id,
                "StageName": "Proposal/Price Quote",
                "CloseDate": close,
                "Pricebook2Id": standard,
                "Type": "Existing Customer - Upgrade" if opp["account"] != "02-ORANGE" else "New Customer",
                "Amount": round(sum(prices[code] * qty for code, qty in opp["lines"]), 2),
            }
        )["id"]
        summary.opportunities_created += 1
        summary.opportunity_ids[opp["Name"]] = opportunity_id
        lines = [
            {
                "attributes": {"type": "OpportunityLineItem"},
                "OpportunityId": opportunity_id,
                "PricebookEntryId": entries[code],
                "Quantity": qty,
                "UnitPrice": prices[code],
                "SortOrder": number,
            }
            for number, (code, qty) in enumerate(opp["lines"], start=1)
        ]
        results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": lines})
        summary.line_items_created += sum(1 for r in results if r["success"])
    return summary


def _opportunity(sf: Any, opportunity: str | None) -> dict[str, Any]:
    if opportunity is None:
        query = (
            "SELECT Id, Name, StageName FROM Opportunity WHERE IsClosed = false ORDER BY CreatedDate LIMIT 1"
        )
    elif opportunity[:3] == "006" and len(opportunity) in (15, 18):
        query = format_soql("SELECT Id, Name, StageName FROM Opportunity WHERE Id = {}", opportunity)
    else:
        query = format_soql(
            "SELECT Id, Name, StageName FROM Opportunity WHERE Name = {} LIMIT 1", opportunity
        )
    records = sf.query(query)["records"]
    if not records:
        raise LookupError(f"no opportunity {opportunity!r}" if opportunity else "no open opportunity left")
    record: dict[str, Any] = records[0]
    return record


def close_won(sf: Any, opportunity: str | None = None) -> dict[str, Any]:
    """Move an opportunity (Id or Name; default the oldest open one) to Closed Won, closing today."""
    record = _opportunity(sf, opportunity)
    sf.Opportunity.update(
        record["Id"], {"StageName": "Closed Won", "CloseDate": datetime.now(UTC).date().isoformat()}
    )
    return {"Id": record["Id"], "Name": record["Name"], "from": record["StageName"], "to": "Closed Won"}


def edit_account(sf: Any, external_id: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Change an account found by ExternalID__c; by default its phone and billing street."""
    record = sf.Account.get_by_custom_id("ExternalID__c", external_id)
    if not changes:
        stamp = datetime.now(UTC).strftime("%H%M")
        changes = {"Phone": f"(555) 010-{stamp}", "BillingStreet": f"{stamp} Edited Street"}
    sf.Account.update(record["Id"], changes)
    return {"Id": record["Id"], "Name": record["Name"], **changes}


def request_credit_check(sf: Any, external_id: str, amount: float, correlation_id: str) -> dict[str, Any]:
    """Publish a Credit_Check_Request__e for the account with this ExternalID__c."""
    record = sf.Account.get_by_custom_id("ExternalID__c", external_id)
    deadline = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    result: dict[str, Any] = sf.Credit_Check_Request__e.create(
        {
            "Correlation_Id__c": correlation_id,
            "Account_Id__c": record["Id"],
            "External_Id__c": external_id,
            "Amount__c": amount,
            "Reply_Deadline__c": deadline,
        }
    )
    return result
