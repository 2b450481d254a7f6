"""`sagesf sandbox seed existing`: a company that already has data, written into the Salesforce
emulator and the Sage 100 sandbox database, with the truth about it in a file of its own.

What it owns: `seed_existing(sf, db, ...)`, which writes `generate()`'s company
(sandbox/existing_company.py) through the emulator's REST API (sObject Collections, 200 records a
call; as a sales user, so the records look like people's, not the integration's) and through
ODBC into Sage (one transaction), then writes the ground truth (which Account is which customer,
which Product2 which item, which opportunity which Sage order) as JSON; `create_accounts()`, the
quick way to make many Accounts (the load bench's 50,000); `canonical_records()`, the customer.v1
and item.v1 records an initial load would publish for the company; and the CLI command.

The ground truth goes to `.sandbox/linking/ground-truth.json` unless told otherwise. The linker
never reads it (tests/unit/test_linking.py runs it without the file); benches and tests compare
with it.

Idempotent: seeding again with the same seed and size when the truth file names them finds the
data there and writes nothing. A Salesforce org with Accounts, or a Sage database with customers,
that this seed did not make is refused: the truth would not describe them. `replace_sage`
recreates the Sage database first.

Limits: no contacts; the Salesforce side is not rolled back when the Sage side fails (seed a
fresh emulator again).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox.existing_company import ExistingCompany, generate
from sandbox.paths import state_dir
from sandbox.sage100.database import (
    DEMO_USERS,
    DIVISIONS,
    TERMS,
    WAREHOUSES,
    SandboxDatabase,
    _audit,
    _insert_rows,
    create_database,
)

__all__ = [
    "SeedRefused",
    "SeedResult",
    "canonical_records",
    "create_accounts",
    "default_truth_path",
    "seed_existing",
]

BATCH = 200  # sObject Collections' most records a call
Advance = Callable[[str, int], Callable[[int], None]]  # (what, total) -> advance(n)


class SeedRefused(RuntimeError):
    """The targets hold data this seed did not make (the message says what to do)."""


@dataclass
class SeedResult:
    company: ExistingCompany
    account_ids: list[str]
    product_ids: list[str]
    opportunity_ids: list[str]
    truth_path: Path
    written: bool  # False: found seeded already


def default_truth_path() -> Path:
    return state_dir() / "linking" / "ground-truth.json"


def _quiet(what: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def _chunks(items: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _create(
    sf: Any, sobject: str, records: Sequence[dict[str, Any]], advance: Callable[[int], None]
) -> list[str]:
    """Create `records` through sObject Collections; their IDs in order."""
    ids: list[str] = []
    for chunk in _chunks(records):
        body = {"allOrNone": True, "records": [{"attributes": {"type": sobject}, **r} for r in chunk]}
        results = sf.restful("composite/sobjects", method="POST", json=body)
        failed = [r for r in results if not r.get("success")]
        if failed:
            raise SeedRefused(f"Salesforce refused a {sobject}: {failed[0].get('errors')}")
        ids += [str(r["id"]) for r in results]
        advance(len(chunk))
    return ids


def create_accounts(sf: Any, accounts: Sequence[dict[str, Any]], progress: Advance = _quiet) -> list[str]:
    """Create Accounts quickly (200 a call); their IDs in order. For benches that need many."""
    return _create(sf, "Account", accounts, progress("Accounts", len(accounts)))


# --- Salesforce --------------------------------------------------------------------------------


def _salesforce(
    sf: Any, company: ExistingCompany, progress: Advance
) -> tuple[list[str], list[str], list[str]]:
    account_ids = create_accounts(sf, company.accounts, progress)
    products = [{k: v for k, v in p.items() if k != "UnitPrice"} for p in company.products]
    product_ids = _create(sf, "Product2", products, progress("Product2", len(products)))
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")["records"][0]["Id"]
    entries = [
        {"Pricebook2Id": standard, "Product2Id": pid, "UnitPrice": float(p["UnitPrice"]), "IsActive": True}
        for pid, p in zip(product_ids, company.products, strict=True)
    ]
    entry_ids = _create(sf, "PricebookEntry", entries, progress("PricebookEntry", len(entries)))
    opportunities = [
        {
            "Name": o.name,
            "AccountId": account_ids[o.account],
            "StageName": "Closed Won",
            "CloseDate": o.close_date.isoformat(),
            "Pricebook2Id": standard,
            "PO_Number__c": o.po_number,
            "Amount": float(sum(q * p for _, q, p in o.lines)),
        }
        for o in company.orders
    ]
    opportunity_ids = _create(sf, "Opportunity", opportunities, progress("Opportunity", len(opportunities)))
    lines = [
        {
            "OpportunityId": oid,
            "PricebookEntryId": entry_ids[product],
            "Quantity": float(quantity),
            "UnitPrice": float(price),
            "SortOrder": n,
        }
        for oid, o in zip(opportunity_ids, company.orders, strict=True)
        for n, (product, quantity, price) in enumerate(o.lines, start=1)
    ]
    _create(sf, "OpportunityLineItem", lines, progress("OpportunityLineItem", len(lines)))
    return account_ids, product_ids, opportunity_ids


# --- Sage 100 ----------------------------------------------------------------------------------


def _sage_rows(
    company: ExistingCompany, account_ids: list[str], go_live: date
) -> dict[str, list[dict[str, Any]]]:
    """Every row of the company's Sage side, stamped by demo users before go-live."""
    day = datetime.combine(go_live, datetime.min.time())

    def stamp(n: int) -> dict[str, Any]:
        return _audit(day - timedelta(days=1 + n % 700, minutes=n % 1440), DEMO_USERS[n % len(DEMO_USERS)])

    udf = {
        s: account_ids[a] for n, (a, s) in enumerate(company.customer_pairs) if n in company.linked_in_sage
    }
    rows: dict[str, list[dict[str, Any]]] = {
        "AR_Division": [{"ARDivisionNo": k, "DivisionDesc": v, **stamp(0)} for k, v in DIVISIONS.items()],
        "IM_Warehouse": [{"WarehouseCode": k, "WarehouseDesc": v, **stamp(0)} for k, v in WAREHOUSES.items()],
        "AR_TermsCode": [
            {
                "TermsCode": k,
                "TermsCodeDesc": d,
                "DaysBeforeDue": str(due),
                "DiscountDays": str(days),
                "DiscountRate": rate,
                **stamp(0),
            }
            for k, (d, due, days, rate) in TERMS.items()
        ],
        "AR_Customer": [
            {**c, "UDF_SALESFORCE_ID": udf.get(j, ""), **stamp(j)}
            for j, c in enumerate(company.sage_customers)
        ],
        "CI_Item": [],
        "IM_ItemWarehouse": [],
    }
    for n, item in enumerate(company.items):
        on_hand = (n * 37) % 400 if item["ItemType"] == "1" else 0
        rows["CI_Item"].append(
            {**item, "DefaultWarehouseCode": "000", "TotalQuantityOnHand": f"{on_hand}.000000", **stamp(n)}
        )
        if item["ItemType"] == "1":
            rows["IM_ItemWarehouse"].append(
                {
                    "ItemCode": item["ItemCode"],
                    "WarehouseCode": "000",
                    "QuantityOnHand": f"{on_hand}.000000",
                    "AverageCost": item.get("StandardUnitCost", "0"),
                    **stamp(n),
                }
            )
    _order_rows(company, rows, stamp)
    return rows


def _order_rows(
    company: ExistingCompany, rows: dict[str, list[dict[str, Any]]], stamp: Callable[[int], dict[str, Any]]
) -> None:
    """The won opportunities' orders as typed into Sage by hand: no UDF_SALESFORCE_ID."""
    sage_of = dict(company.customer_pairs)
    for name in (
        "SO_SalesOrderHistoryHeader",
        "AR_InvoiceHistoryHeader",
        "SO_SalesOrderHeader",
        "SO_SalesOrderDetail",
    ):
        rows[name] = []
    for n, order in enumerate(company.orders):
        customer = company.sage_customers[sage_of[order.account]]
        who = {"ARDivisionNo": customer["ARDivisionNo"], "CustomerNo": customer["CustomerNo"]}
        header = {
            "SalesOrderNo": order.sales_order_no,
            "OrderDate": order.close_date,
            "OrderType": "S",
            "BillToName": customer["CustomerName"],
            "CustomerPONo": order.po_number,
            **who,
            **stamp(n),
        }
        total = sum((q * p).quantize(Decimal("0.01")) for _, q, p in order.lines)
        if order.completed:
            invoice = {
                "InvoiceNo": order.sales_order_no,
                "HeaderSeqNo": "000000",
                "InvoiceType": "IN",
                "InvoiceDate": order.close_date + timedelta(days=3),
                "ModuleCode": "S/O",
                "SalesOrderNo": order.sales_order_no,
                "BillToName": customer["CustomerName"],
                "CustomerPONo": order.po_number,
                **who,
                **stamp(n),
            }
            rows["SO_SalesOrderHistoryHeader"].append(
                {
                    **header,
                    "OrderStatus": "C",
                    "LastInvoiceNo": order.sales_order_no,
                    "LastInvoiceDate": invoice["InvoiceDate"],
                    "DateCompleted": invoice["InvoiceDate"],
                }
            )
            rows["AR_InvoiceHistoryHeader"].append(invoice)
            continue
        rows["SO_SalesOrderHistoryHeader"].append({**header, "OrderStatus": "A"})
        rows["SO_SalesOrderHeader"].append(
            {
                **header,
                "OrderStatus": "O",
                "WarehouseCode": "000",
                "TermsCode": customer["TermsCode"],
                "TaxableAmt": f"{total:.2f}",
            }
        )
        for line, (product, quantity, price) in enumerate(order.lines, start=1):
            item = company.items[dict(company.item_pairs)[product]]
            rows["SO_SalesOrderDetail"].append(
                {
                    "SalesOrderNo": order.sales_order_no,
                    "LineKey": f"{line:06d}",
                    "LineSeqNo": f"{line:06d}00000000",
                    "ItemCode": item["ItemCode"],
                    "ItemType": "1",
                    "ItemCodeDesc": item["ItemCodeDesc"],
                    "WarehouseCode": "000",
                    "UnitOfMeasure": "EACH",
                    "QuantityOrdered": f"{quantity}.000000",
                    "UnitPrice": f"{price:.6f}",
                    "ExtensionAmt": f"{(quantity * price):.2f}",
                    **stamp(n),
                }
            )
    rows["SO_Options"] = [{"NextSalesOrderNo": f"{len(company.orders) + 1:07d}"}]


def _write_sage(db: SandboxDatabase, rows: dict[str, list[dict[str, Any]]]) -> None:
    odbc = db.odbc()
    try:
        with odbc.transaction() as cur:
            for name, table_rows in rows.items():
                _insert_rows(cur, db.tables[name], table_rows)
    finally:
        odbc.close()


# --- the truth -----------------------------------------------------------------------------------


def _truth(result: SeedResult, go_live: date) -> dict[str, Any]:
    company = result.company
    accounts, customers = company.accounts, company.sage_customers
    paired_accounts = {a for a, _ in company.customer_pairs}
    paired_customers = {s for _, s in company.customer_pairs}

    def sage_key(j: int) -> str:
        return f"{customers[j]['ARDivisionNo']}-{customers[j]['CustomerNo']}"

    return {
        "seed": company.seed,
        "customers": len(customers),
        "go_live": go_live.isoformat(),
        "customer_pairs": [
            {
                "account_id": result.account_ids[a],
                "sage_key": sage_key(s),
                "account_name": accounts[a]["Name"],
                "sage_name": customers[s]["CustomerName"],
                "linked_on_account": n in company.linked_on_account,
                "linked_in_sage": n in company.linked_in_sage,
            }
            for n, (a, s) in enumerate(company.customer_pairs)
        ],
        "item_pairs": [
            {"product_id": result.product_ids[p], "item_code": company.items[i]["ItemCode"]}
            for p, i in company.item_pairs
        ],
        "orders": [
            {"opportunity_id": oid, "sales_order_no": o.sales_order_no, "completed": o.completed}
            for oid, o in zip(result.opportunity_ids, company.orders, strict=True)
        ],
        "salesforce_only_accounts": [
            result.account_ids[a] for a in range(len(accounts)) if a not in paired_accounts
        ],
        "sage_only_customers": [sage_key(j) for j in range(len(customers)) if j not in paired_customers],
    }


def _seeded_already(sf: Any, db: SandboxDatabase, truth_path: Path, customers: int, seed: int) -> bool:
    accounts = int(sf.query("SELECT COUNT() FROM Account")["totalSize"])
    sage_customers = db.count("AR_Customer") if db.path.exists() else 0
    if truth_path.exists():
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        if truth.get("seed") == seed and truth.get("customers") == customers and accounts and sage_customers:
            return True
    if accounts:
        raise SeedRefused(
            f"the Salesforce org has {accounts} Accounts already; seed a fresh emulator "
            "(stop it and remove .sandbox/salesforce/org.sqlite3)"
        )
    if sage_customers:
        raise SeedRefused(
            f"the Sage database {db.path} has {sage_customers} customers already (--replace-sage)"
        )
    return False


def seed_existing(
    sf: Any,
    db: SandboxDatabase,
    *,
    customers: int = 2000,
    seed: int = 13,
    truth_path: Path | None = None,
    go_live: date | None = None,
    replace_sage: bool = False,
    progress: Advance = _quiet,
) -> SeedResult:
    """Write the company into Salesforce (`sf`, simple-salesforce) and Sage (`db`), then the truth."""
    truth_path = truth_path or default_truth_path()
    go_live = go_live or date.today()
    company = generate(customers, seed, go_live=go_live)
    if replace_sage or not db.path.exists():
        db = create_database(db.path, db.udf_columns, replace=True)
    if _seeded_already(sf, db, truth_path, customers, seed):
        return SeedResult(company, [], [], [], truth_path, written=False)
    account_ids, product_ids, opportunity_ids = _salesforce(sf, company, progress)
    _write_sage(db, _sage_rows(company, account_ids, go_live))
    result = SeedResult(company, account_ids, product_ids, opportunity_ids, truth_path, written=True)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_text(json.dumps(_truth(result, go_live), indent=1), encoding="utf-8")
    return result


# --- as the initial load would publish it ----------------------------------------------------------


def _envelope(source: str, record_id: str) -> dict[str, Any]:
    return {
        "event_id": "00000000-0000-0000-0000-000000000000",
        "event_time": datetime(2026, 1, 1),
        "source_system": source,
        "source_record_id": record_id,
        "correlation_id": None,
    }


def canonical_records(
    company: ExistingCompany, account_ids: Sequence[str], product_ids: Sequence[str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """(key, record) of customer.v1 and of item.v1 for both sides of `company`, as a load
    publishes them (mappings/salesforce_source.yaml: an Account keyed by ExternalID__c when set,
    else its ID; a Product2 by Sage_Item_Code__c, else its ProductCode)."""
    customers: list[tuple[str, dict[str, Any]]] = []
    udf = {
        s: account_ids[a] for n, (a, s) in enumerate(company.customer_pairs) if n in company.linked_in_sage
    }
    for account_id, a in zip(account_ids, company.accounts, strict=True):
        lines = str(a.get("BillingStreet") or "").split("\n")
        external = a.get("ExternalID__c")
        division, _, number = (external or "").partition("-")
        address = {
            "line1": lines[0],
            "line2": lines[1] if len(lines) > 1 else None,
            "city": a.get("BillingCity"),
            "state": a.get("BillingState"),
            "postal_code": a.get("BillingPostalCode"),
            "country_code": "US",
        }
        record = {
            "envelope": _envelope("SALESFORCE", account_id),
            "salesforce_account_id": account_id,
            "ar_division_no": division or None,
            "customer_no": number or None,
            "name": a["Name"],
            "status": "ACTIVE",
            "telephone_no": a.get("Phone"),
            "billing_address": address,
        }
        customers.append((external or account_id, record))
    for j, c in enumerate(company.sage_customers):
        key = f"{c['ARDivisionNo']}-{c['CustomerNo']}"
        address = {
            "line1": c["AddressLine1"],
            "line2": c["AddressLine2"] or None,
            "city": c["City"],
            "state": c["State"],
            "postal_code": c["ZipCode"],
            "country_code": "US",
        }
        record = {
            "envelope": _envelope("SAGE100", key),
            "salesforce_account_id": udf.get(j),
            "ar_division_no": c["ARDivisionNo"],
            "customer_no": c["CustomerNo"],
            "name": c["CustomerName"],
            "status": "ACTIVE" if c["CustomerStatus"] == "A" else "INACTIVE",
            "telephone_no": c["TelephoneNo"] or None,
            "billing_address": address,
        }
        customers.append((key, record))
    items: list[tuple[str, dict[str, Any]]] = []
    for product_id, p in zip(product_ids, company.products, strict=True):
        # mappings/salesforce_source.yaml: item_code is Sage_Item_Code__c, else the ProductCode,
        # and the key the same; a Product2 carries no price (PricebookEntry does)
        code = p.get("Sage_Item_Code__c") or p["ProductCode"]
        record = {
            "envelope": _envelope("SALESFORCE", product_id),
            "item_code": code,
            "salesforce_product_id": product_id,
            "product_code": p["ProductCode"],
            "description": p["Name"],
            "item_type": "REGULAR",
            "active": p["IsActive"],
        }
        items.append((code, record))
    for item in company.items:
        record = {
            "envelope": _envelope("SAGE100", item["ItemCode"]),
            "item_code": item["ItemCode"],
            "description": item["ItemCodeDesc"],
            "item_type": "REGULAR" if item["ItemType"] == "1" else "CHARGE",
            "standard_unit_price": Decimal(item["StandardUnitPrice"]),
            "active": item.get("InactiveItem") != "Y",
        }
        items.append((item["ItemCode"], record))
    return customers, items
