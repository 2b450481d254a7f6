"""The sandbox Sage 100 company: a SQLite file reached only through unixODBC and pyodbc.

Owns creating the sandbox database from the Sage table layouts (connectors/sage100/tables.py),
its connection string, and the demo company's seed data. Everything, creation included, goes
through the `{SQLite3}` ODBC driver, so the connector code that reads and writes it is the code
that reads and writes a real Sage 100 over ODBC.

How it works:
- `create_database(path, udf_columns=...)` creates every table with Sage's column names, key
  (the PRIMARY KEY) and lengths (VARCHAR(n); SQLite does not enforce them, the sink checks
  them). Text and numbers are NOT NULL with blank/zero defaults, as ProvideX has no NULLs; dates
  may be NULL (an empty Sage date reads as NULL over ODBC), and so may key columns (SQLite lets
  a PRIMARY KEY column hold NULL without NOT NULL), so a test can write the NULL key a broken
  import leaves behind (SageSimulator.import_raw). Money and quantities are TEXT holding
  the exact decimal (the SQLite driver returns DECIMAL columns as strings with the scale lost);
  sage100.values converts them. TimeCreated/TimeUpdated hold decimal hours ("09.5012").
  Beyond the keys it creates the indexes a SQL-backed install would have: KCUSTOMER on
  SO_SalesOrderHeader, the UDF Salesforce ID, and (DateUpdated, TimeUpdated) on the tables the
  source polls, so a poll of a large table reads only its changed rows.
- `connection_string(path, timeout=...)`: WAL journal (readers never wait for a writer), a busy
  timeout (a second writer waits that long for the lock, then gets "database is locked", which
  the connector treats as Sage unavailable) and NoCreat (a missing file is an error, not a new
  empty database).
- `seed(path)`: a demo company, reproducible from `rng_seed`: 2 divisions, 4 terms codes, 3
  warehouses, 60 customers with contacts, 200 items (regular, a few charge and inactive ones)
  with stock in every warehouse, open orders (status N, O, H) with lines and the matching
  QuantityOnSalesOrder, some completed orders in SO_SalesOrderHistoryHeader with their invoices
  in AR_InvoiceHistoryHeader, and the SO_Options row holding the next SalesOrderNo. Every row is
  stamped by demo users (never the integration user) at times before `now`.

Limits: one database per file; SQLite serialises writers (the busy timeout bounds the wait).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sage100.config import Sage100Settings
from connectors.sage100.odbc import Q, SageOdbc
from connectors.sage100.tables import Column, ColumnKind, Table, layouts
from connectors.sage100.values import format_hours, quantize

__all__ = [
    "DEFAULT_UDF_COLUMNS",
    "DEMO_USERS",
    "WAREHOUSES",
    "SandboxDatabase",
    "add_missing_udfs",
    "connection_string",
    "create_database",
    "open_database",
    "seed",
]

DEFAULT_UDF_COLUMNS: dict[str, list[str]] = {
    # custom fields synced with Account fields, one of each type (mappings/customers.yaml); a
    # typed UDF is NAME:TYPE (connectors/sage100/tables.py udf_column)
    "AR_Customer": [
        "UDF_SALESFORCE_ID",
        "UDF_ACCOUNT_NUMBER",
        "UDF_ANNUAL_REVENUE:N15.2",
        "UDF_CUSTOMER_SINCE:date",
        "UDF_LAST_REVIEWED:S20",
        "UDF_TAX_EXEMPT:S1",
        "UDF_REGION:S2",
        "UDF_ACCOUNT_OWNER:S10",
    ],
    # custom fields synced with Product2 fields (mappings/products.yaml)
    "CI_Item": ["UDF_WEIGHT:N10.3", "UDF_WEB_ACTIVE:S1"],
    "SO_SalesOrderHeader": ["UDF_SALESFORCE_ID"],
    # the order's UDF follows it into history, as Custom Office does for a UDF of the same name
    "SO_SalesOrderHistoryHeader": ["UDF_SALESFORCE_ID"],
    "AR_InvoiceHistoryHeader": ["UDF_SALESFORCE_ID"],
}
DEMO_USERS = ("0000000002", "0000000003", "0000000004")  # Sage user keys of the demo staff
WAREHOUSES = {"000": "Central Warehouse", "001": "East Coast Warehouse", "002": "West Coast Warehouse"}
DIVISIONS = {"01": "Main Division", "02": "West Division"}
TERMS = {
    "00": ("Cash on Delivery", 0, 0, "0.000"),
    "01": ("Net 30 Days", 30, 0, "0.000"),
    "02": ("2% 10 Net 30", 30, 10, "2.000"),
    "05": ("Net 60 Days", 60, 0, "0.000"),
    # one code per Salesforce Payment_Terms__c value, so each comes back as it went (customers.yaml)
    "03": ("Net 15 Days", 15, 0, "0.000"),
    "04": ("Net 45 Days", 45, 0, "0.000"),
    "06": ("Due on Receipt", 0, 0, "0.000"),
}
# the codes the demo's customers are given; the others draw nothing from the seed's random numbers,
# so the demo data (and every test that counts on it) stays as it was before they were added
DEMO_TERMS = ("00", "01", "02", "05")
CHANGE_INDEXED = ("AR_Customer", "AR_CustomerContact", "CI_Item", "IM_ItemWarehouse", "SO_SalesOrderHeader")


def connection_string(path: str | Path, timeout: float = 5.0, *, create: bool = False) -> str:
    """The ODBC connection string of the sandbox file (`timeout`: seconds to wait for a lock)."""
    text = str(Path(path).resolve())
    if any(c in text for c in ";{}"):
        raise ValueError(f"the sandbox database path may not contain ';', '{{' or '}}': {text}")
    cs = f"Driver={{SQLite3}};Database={text};JournalMode=WAL;Timeout={int(timeout * 1000)}"
    return cs if create else cs + ";NoCreat=1"


@dataclass
class SandboxDatabase:
    """A sandbox database file and how to reach it."""

    path: Path
    udf_columns: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_UDF_COLUMNS))
    timeout: float = 5.0

    @property
    def connection_string(self) -> str:
        return connection_string(self.path, self.timeout)

    @property
    def tables(self) -> dict[str, Table]:
        return layouts(self.udf_columns)

    def odbc(self) -> SageOdbc:
        """A new connection to this database (close it when done)."""
        return SageOdbc(self.connection_string, name=f"sandbox:{self.path.name}")

    def settings(self, **overrides: Any) -> Sage100Settings:
        """Connector settings pointing at this database (overrides: any Sage100Settings field)."""
        values: dict[str, Any] = {
            "connection_string": self.connection_string,
            "udf_columns": self.udf_columns,
        }
        values.update(overrides)
        return Sage100Settings(**values)

    def count(self, table: str) -> int:
        odbc = self.odbc()
        try:
            row = odbc.fetchone(f"SELECT COUNT(*) FROM {self.tables[table].name}")  # noqa: S608 - layout name
        finally:
            odbc.close()
        return int(row[0]) if row else 0


def _ddl_type(column: Column, *, key: bool = False) -> str:
    if column.kind is ColumnKind.DATE:
        return "DATE"
    if column.kind is ColumnKind.DECIMAL:
        assert column.scale is not None
        zero = "0" if column.scale == 0 else "0." + "0" * column.scale
        return f"TEXT NOT NULL DEFAULT '{zero}'"
    if key:
        return f"VARCHAR({column.length}) DEFAULT ''"
    return f"VARCHAR({column.length}) NOT NULL DEFAULT ''"


def _create_table_sql(table: Table) -> str:
    cols = ", ".join(f"{c.name} {_ddl_type(c, key=c.name in table.key)}" for c in table.columns)
    return f"CREATE TABLE {table.name} ({cols}, PRIMARY KEY ({', '.join(table.key)}))"


def _index_sql(table: Table) -> list[str]:
    out = []
    if table.name in CHANGE_INDEXED:
        out.append(
            f"CREATE INDEX {table.name}_KCHANGED ON {table.name} "
            f"(DateUpdated, TimeUpdated, {', '.join(table.key)})"
        )
    if table.name == "SO_SalesOrderHeader":
        out.append(
            f"CREATE INDEX {table.name}_KCUSTOMER ON {table.name} (ARDivisionNo, CustomerNo, SalesOrderNo)"
        )
    for udf in table.udfs:
        if "SALESFORCE" in udf:
            out.append(f"CREATE INDEX {table.name}_K{udf} ON {table.name} ({udf})")
    return out


def create_database(
    path: str | Path,
    udf_columns: Mapping[str, Sequence[str]] | None = None,
    *,
    replace: bool = False,
    timeout: float = 5.0,
) -> SandboxDatabase:
    """Create an empty sandbox database with every Sage table (and the given UDF columns)."""
    path = Path(path)
    udfs = {k: list(v) for k, v in (DEFAULT_UDF_COLUMNS if udf_columns is None else udf_columns).items()}
    if path.exists():
        if not replace:
            raise FileExistsError(f"{path} exists (replace=True to start over)")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    odbc = SageOdbc(connection_string(path, timeout, create=True), name="sandbox-create")
    try:
        with odbc.transaction() as cur:
            for table in layouts(udfs).values():
                cur.execute(_create_table_sql(table))
                for sql in _index_sql(table):
                    cur.execute(sql)
    finally:
        odbc.close()
    return SandboxDatabase(path, udfs, timeout)


def add_missing_udfs(db: SandboxDatabase) -> list[str]:
    """Add the UDF columns `db` is configured with but its file lacks (a database made before a
    UDF was added to DEFAULT_UDF_COLUMNS), and whole tables it lacks (made before the layouts had
    them, with their UDFs); returns them as `Table.Column` and `Table` names."""
    added: list[str] = []
    odbc = db.odbc()
    try:
        with odbc.transaction() as cur:
            present_tables = {str(row.table_name).upper() for row in cur.tables(tableType="TABLE").fetchall()}
            for table in db.tables.values():
                if table.name.upper() not in present_tables:
                    cur.execute(_create_table_sql(table))
                    for sql in _index_sql(table):
                        cur.execute(sql)
                    added.append(table.name)
                    continue
                cur.execute(f"SELECT * FROM {table.name} WHERE 1 = 0")  # noqa: S608 - a known table
                present = {d[0].upper() for d in cur.description}
                for name in table.udfs:
                    if name.upper() not in present:
                        kind = _ddl_type(table.column(name))
                        cur.execute(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")
                        added.append(f"{table.name}.{name}")
    finally:
        odbc.close()
    return added


def open_database(
    path: str | Path, udf_columns: Mapping[str, Sequence[str]] | None = None
) -> SandboxDatabase:
    """An existing sandbox database (FileNotFoundError when there is none)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sandbox Sage 100 database at {path} (run `sagesf sandbox sage100 init`)")
    udfs = {k: list(v) for k, v in (DEFAULT_UDF_COLUMNS if udf_columns is None else udf_columns).items()}
    return SandboxDatabase(path, udfs)


# --- seed data ---------------------------------------------------------------------------------

_COMPANY_WORDS = (
    "Acme Hardware",
    "Blue Ridge Supply",
    "Cascade Outfitters",
    "Delta Marine",
    "Evergreen Foods",
    "Falcon Electric",
    "Granite Builders",
    "Harbor Freight Co",
    "Ironwood Tools",
    "Juniper Health",
    "Keystone Auto",
    "Lakeside Market",
    "Midland Farms",
    "Northstar Labs",
    "Oakridge Office",
    "Pioneer Plumbing",
    "Quarry Stoneworks",
    "Redwood Cabinets",
    "Summit Sports",
    "Tidewater Paper",
)
_SUFFIXES = ("Inc.", "LLC", "Corp.", "& Sons", "Group", "Ltd.")
_CITIES = (
    ("Irvine", "CA", "92618"),
    ("Boston", "MA", "02110"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Chicago", "IL", "60601"),
    ("Seattle", "WA", "98101"),
    ("Atlanta", "GA", "30303"),
    ("Portland", "OR", "97201"),
    ("Phoenix", "AZ", "85004"),
)
_STREETS = ("Main St", "Oak Ave", "Industrial Pkwy", "Harbor Blvd", "Commerce Dr", "Elm St", "Market St")
_FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kara", "Liam")
_LAST = ("Garcia", "Nguyen", "Smith", "Okafor", "Rossi", "Kim", "Novak", "Haddad", "Silva", "Berg")
_PRODUCT_LINES = {
    "HRDW": ("Hinge", "Bracket", "Hasp", "Latch", "Hook"),
    "ELEC": ("Cable", "Switch", "Outlet", "Breaker", "Conduit"),
    "PLMB": ("Valve", "Elbow", "Coupling", "Faucet", "Trap"),
    "TOOL": ("Wrench", "Hammer", "Drill Bit", "Clamp", "Saw Blade"),
}
_SIZES = ("Small", "Medium", "Large", "XL", "Steel", "Brass", "Chrome", "Black", "1/2in", "3/4in")


def _audit(when: datetime, user: str) -> dict[str, Any]:
    return {
        "DateCreated": when.date(),
        "TimeCreated": format_hours(when),
        "UserCreatedKey": user,
        "DateUpdated": when.date(),
        "TimeUpdated": format_hours(when),
        "UserUpdatedKey": user,
    }


def _insert_rows(cur: Any, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        names = tuple(row)
        by_columns.setdefault(names, []).append(tuple(row[n] for n in names))
    count = 0
    for names, values in by_columns.items():
        cur.executemany(Q(table).insert(names), values)
        count += len(values)
    return count


@dataclass
class SeedSummary:
    customers: int
    contacts: int
    items: int
    item_warehouses: int
    open_orders: int
    order_lines: int
    history_orders: int


def seed(
    path: str | Path | SandboxDatabase,
    *,
    customers: int = 60,
    items: int = 200,
    open_orders: int = 25,
    completed_orders: int = 10,
    now: datetime | None = None,
    zone: str = "America/New_York",
    rng_seed: int = 100,
) -> SeedSummary:
    """Fill an empty sandbox database with the demo company (see the module docstring).

    Stamps are the Sage server's local time in `zone` (naive `now` is taken as such), the same
    clock the simulator and the connector's settings use: rows never look newer than changes
    made after them.
    """
    db = path if isinstance(path, SandboxDatabase) else open_database(path)
    tables = db.tables
    rng = random.Random(rng_seed)  # noqa: S311 - demo data, not security
    now = (now or datetime.now(ZoneInfo(zone)).replace(tzinfo=None)).replace(microsecond=0)

    def stamp() -> dict[str, Any]:
        # created some time in the last 90 days, always at least a minute before `now`
        when = now - timedelta(minutes=1 + rng.randrange(90 * 24 * 60))
        return _audit(when, rng.choice(DEMO_USERS))

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
    for code, desc in DIVISIONS.items():
        rows["AR_Division"].append({"ARDivisionNo": code, "DivisionDesc": desc, **stamp()})
    for code, desc in WAREHOUSES.items():
        rows["IM_Warehouse"].append({"WarehouseCode": code, "WarehouseDesc": desc, **stamp()})
    for code, (desc, due, disc_days, rate) in TERMS.items():
        rows["AR_TermsCode"].append(
            {
                "TermsCode": code,
                "TermsCodeDesc": desc,
                "DaysBeforeDue": str(due),
                "DiscountDays": str(disc_days),
                "DiscountRate": rate,
                **(stamp() if code in DEMO_TERMS else _audit(now - timedelta(days=90), DEMO_USERS[0])),
            }
        )

    customer_keys: list[tuple[str, str]] = []
    contact_count = 0
    for i in range(customers):
        division = "01" if i % 4 else "02"
        base = _COMPANY_WORDS[i % len(_COMPANY_WORDS)]
        name = f"{base} {_SUFFIXES[(i // len(_COMPANY_WORDS)) % len(_SUFFIXES)]}"[:30]
        customer_no = (base.split()[0][:4].upper() + f"{i + 1:03d}")[:20]
        city, state, zipcode = rng.choice(_CITIES)
        credit = Decimal(rng.choice((0, 5000, 10000, 25000, 50000, 100000)))
        balance = quantize(Decimal(rng.randrange(0, 2_000_000)) / 100, 2)
        contact_code = ""
        contacts = rng.randrange(0, 4)
        for c in range(contacts):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            code = f"{first[0]}{last}"[:10].upper()
            if any(
                r["ContactCode"] == code and r["CustomerNo"] == customer_no
                for r in rows["AR_CustomerContact"]
            ):
                code = f"{code[:8]}{c}"
            contact_code = contact_code or code
            rows["AR_CustomerContact"].append(
                {
                    "ARDivisionNo": division,
                    "CustomerNo": customer_no,
                    "ContactCode": code,
                    "ContactName": f"{first} {last}",
                    "Salutation": rng.choice(("Mr.", "Ms.", "Dr.", "")),
                    "ContactTitle": rng.choice(("Buyer", "Owner", "Accounts Payable", "Operations")),
                    "TelephoneNo1": f"({rng.randrange(200, 999)}) 555-{rng.randrange(1000, 9999)}",
                    "EmailAddress": f"{first.lower()}.{last.lower()}@example.com",
                    "City": city,
                    "State": state,
                    "ZipCode": zipcode,
                    "CountryCode": "USA",
                    **stamp(),
                }
            )
            contact_count += 1
        rows["AR_Customer"].append(
            {
                "ARDivisionNo": division,
                "CustomerNo": customer_no,
                "CustomerName": name,
                "AddressLine1": f"{rng.randrange(10, 9999)} {rng.choice(_STREETS)}",
                "City": city,
                "State": state,
                "ZipCode": zipcode,
                "CountryCode": "USA",
                "TelephoneNo": f"({rng.randrange(200, 999)}) 555-{rng.randrange(1000, 9999)}",
                "EmailAddress": f"ap@{base.split()[0].lower()}{i + 1}.example.com",
                "ContactCode": contact_code,
                "TermsCode": rng.choice(DEMO_TERMS),
                "SalespersonDivisionNo": division,
                "SalespersonNo": rng.choice(("0100", "0200", "0300")),
                "CustomerType": rng.choice(("RETL", "WHSL", "DIST")),
                "PriceLevel": rng.choice(("", "A", "B")),
                "CustomerStatus": "A" if i % 17 else "I",
                "CreditLimit": f"{credit:.2f}",
                "CurrentBalance": f"{balance:.2f}",
                "DateEstablished": (now - timedelta(days=rng.randrange(100, 4000))).date(),
                **stamp(),
            }
        )
        customer_keys.append((division, customer_no))

    item_rows: list[dict[str, Any]] = []
    charge_items = [("/FREIGHT", "Freight charge"), ("/HANDLING", "Handling charge")]
    for code, desc in charge_items:
        item_rows.append(
            {
                "ItemCode": code,
                "ItemType": "3",
                "ItemCodeDesc": desc,
                "StandardUnitPrice": "0.000000",
                "InactiveItem": "N",
                "TaxClass": "NT",
                **stamp(),
            }
        )
    lines = list(_PRODUCT_LINES.items())
    for i in range(items - len(charge_items)):
        line, nouns = lines[i % len(lines)]
        noun = nouns[(i // len(lines)) % len(nouns)]
        size = _SIZES[(i // (len(lines) * len(nouns))) % len(_SIZES)]
        cost = quantize(Decimal(rng.randrange(50, 50000)) / 100, 6)
        price = quantize(cost * Decimal(rng.choice(("1.25", "1.4", "1.6", "2"))), 2)
        item_rows.append(
            {
                "ItemCode": f"{line}-{1000 + i}",
                "ItemType": "1",
                "ItemCodeDesc": f"{noun} {size}"[:30],
                "ProductLine": line,
                "ProductType": "F",
                "Valuation": "2",
                "StandardUnitOfMeasure": "EACH",
                "SalesUnitOfMeasure": "EACH",
                "PurchaseUnitOfMeasure": "EACH",
                "TaxClass": "TX",
                "StandardUnitPrice": f"{quantize(price, 6)}",
                "StandardUnitCost": f"{cost}",
                "InactiveItem": "Y" if i % 37 == 36 else "N",
                "DefaultWarehouseCode": "000",
                **stamp(),
            }
        )
    stock: dict[tuple[str, str], dict[str, Any]] = {}
    for item in item_rows:
        if item["ItemType"] != "1":
            continue
        for wh in WAREHOUSES:
            stock[(item["ItemCode"], wh)] = {
                "ItemCode": item["ItemCode"],
                "WarehouseCode": wh,
                "BinLocation": f"{wh}-{rng.choice('ABCDEF')}{rng.randrange(1, 40):02d}",
                "QuantityOnHand": Decimal(rng.randrange(0, 500)),
                "QuantityOnPurchaseOrder": Decimal(rng.choice((0, 0, 0, 50, 100))),
                "QuantityOnSalesOrder": Decimal(0),
                "QuantityOnBackOrder": Decimal(0),
                "AverageCost": item["StandardUnitCost"],
                **stamp(),
            }

    regular = [i for i in item_rows if i["ItemType"] == "1" and i["InactiveItem"] == "N"]
    active_customers = [r for r in rows["AR_Customer"] if r["CustomerStatus"] == "A"]
    order_line_count = 0
    open_amount: dict[tuple[str, str], Decimal] = {}
    for n in range(open_orders + completed_orders):
        cust = active_customers[n % len(active_customers)]
        order_no = f"{n + 1:07d}"
        order_stamp = stamp()
        order_date = order_stamp["DateCreated"]
        if n >= open_orders:  # completed and purged: only the history row remains
            rows["SO_SalesOrderHistoryHeader"].append(
                {
                    "SalesOrderNo": order_no,
                    "OrderDate": order_date,
                    "OrderType": "S",
                    "OrderStatus": "C",
                    "ARDivisionNo": cust["ARDivisionNo"],
                    "CustomerNo": cust["CustomerNo"],
                    "BillToName": cust["CustomerName"],
                    "LastInvoiceNo": f"{n + 1:07d}",
                    "LastInvoiceDate": order_date,
                    "DateCompleted": order_date,
                    **order_stamp,
                }
            )
            rows["AR_InvoiceHistoryHeader"].append(
                {
                    "InvoiceNo": f"{n + 1:07d}",
                    "HeaderSeqNo": "000000",
                    "InvoiceType": "IN",
                    "InvoiceDate": order_date,
                    "ModuleCode": "S/O",
                    "SalesOrderNo": order_no,
                    "ARDivisionNo": cust["ARDivisionNo"],
                    "CustomerNo": cust["CustomerNo"],
                    "BillToName": cust["CustomerName"],
                    **order_stamp,
                }
            )
            continue
        warehouse = rng.choice(tuple(WAREHOUSES))
        taxable = Decimal("0.00")
        for ln in range(rng.randrange(1, 6)):
            item = rng.choice(regular)
            qty = Decimal(rng.randrange(1, 20))
            price = Decimal(item["StandardUnitPrice"])
            extension = quantize(qty * price, 2)
            taxable += extension
            stock[(item["ItemCode"], warehouse)]["QuantityOnSalesOrder"] += qty
            rows["SO_SalesOrderDetail"].append(
                {
                    "SalesOrderNo": order_no,
                    "LineKey": f"{ln + 1:06d}",
                    "LineSeqNo": f"{ln + 1:06d}00000000",
                    "ItemCode": item["ItemCode"],
                    "ItemType": "1",
                    "ItemCodeDesc": item["ItemCodeDesc"],
                    "WarehouseCode": warehouse,
                    "UnitOfMeasure": "EACH",
                    "QuantityOrdered": f"{quantize(qty, 6)}",
                    "QuantityBackordered": "0.000000",
                    "QuantityShipped": "0.000000",
                    "UnitPrice": f"{quantize(price, 6)}",
                    "UnitCost": item["StandardUnitCost"],
                    "ExtensionAmt": f"{extension}",
                    "TaxClass": "TX",
                    **order_stamp,
                }
            )
            order_line_count += 1
        key = (cust["ARDivisionNo"], cust["CustomerNo"])
        open_amount[key] = open_amount.get(key, Decimal("0.00")) + taxable
        header = {
            "SalesOrderNo": order_no,
            "OrderDate": order_date,
            "OrderType": "S",
            "OrderStatus": ("N", "O", "O", "H")[n % 4],
            "ARDivisionNo": cust["ARDivisionNo"],
            "CustomerNo": cust["CustomerNo"],
            "BillToName": cust["CustomerName"],
            "BillToAddress1": cust["AddressLine1"],
            "BillToCity": cust["City"],
            "BillToState": cust["State"],
            "BillToZipCode": cust["ZipCode"],
            "BillToCountryCode": "USA",
            "ShipToName": cust["CustomerName"],
            "ShipToAddress1": cust["AddressLine1"],
            "ShipToCity": cust["City"],
            "ShipToState": cust["State"],
            "ShipToZipCode": cust["ZipCode"],
            "ShipToCountryCode": "USA",
            "ShipVia": rng.choice(("UPS GROUND", "FEDEX", "WILL CALL")),
            "CustomerPONo": f"PO-{rng.randrange(10000, 99999)}",
            "WarehouseCode": warehouse,
            "TermsCode": cust["TermsCode"],
            "TaxSchedule": "DEFAULT",
            "SalespersonDivisionNo": cust["SalespersonDivisionNo"],
            "SalespersonNo": cust["SalespersonNo"],
            "TaxableAmt": f"{taxable}",
            **order_stamp,
        }
        rows["SO_SalesOrderHeader"].append(header)
        rows["SO_SalesOrderHistoryHeader"].append(
            {
                "SalesOrderNo": order_no,
                "OrderDate": order_date,
                "OrderType": "S",
                "OrderStatus": "A",
                "ARDivisionNo": cust["ARDivisionNo"],
                "CustomerNo": cust["CustomerNo"],
                "BillToName": cust["CustomerName"],
                "CustomerPONo": header["CustomerPONo"],
                **order_stamp,
            }
        )
    rows["SO_Options"].append({"NextSalesOrderNo": f"{open_orders + completed_orders + 1:07d}"})
    for cust in rows["AR_Customer"]:
        cust["OpenOrderAmt"] = (
            f"{open_amount.get((cust['ARDivisionNo'], cust['CustomerNo']), Decimal('0.00'))}"
        )
    totals: dict[str, Decimal] = {}
    for (item_code, _), level in stock.items():
        totals[item_code] = totals.get(item_code, Decimal(0)) + level["QuantityOnHand"]
        for qty_col in (
            "QuantityOnHand",
            "QuantityOnPurchaseOrder",
            "QuantityOnSalesOrder",
            "QuantityOnBackOrder",
        ):
            level[qty_col] = f"{quantize(level[qty_col], 6)}"
    for item in item_rows:
        item["TotalQuantityOnHand"] = f"{quantize(totals.get(item['ItemCode'], Decimal(0)), 6)}"
    rows["CI_Item"] = item_rows
    rows["IM_ItemWarehouse"] = list(stock.values())

    odbc = db.odbc()
    try:
        with odbc.transaction() as cur:
            for name, table_rows in rows.items():
                _insert_rows(cur, tables[name], table_rows)
    finally:
        odbc.close()
    return SeedSummary(
        customers=len(rows["AR_Customer"]),
        contacts=contact_count,
        items=len(item_rows),
        item_warehouses=len(stock),
        open_orders=open_orders,
        order_lines=order_line_count,
        history_orders=len(rows["SO_SalesOrderHistoryHeader"]),
    )
