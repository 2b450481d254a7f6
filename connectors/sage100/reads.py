"""What the Sage sink reads from Sage 100 (over ODBC, read-only) to check and answer commands.

Owns the sink's point lookups: an item (CI_Item), whether a warehouse, division or terms code
exists (IM_Warehouse, AR_Division, AR_TermsCode), a customer by key or by the Salesforce Account
ID in its UDF column (AR_Customer, with who changed it last and when), an order by the Salesforce
record ID in its UDF column wherever Sage keeps it (`SalesforceOrderIndex`: open with its lines,
SO_SalesOrderHeader/Detail; else SO_SalesOrderHistoryHeader; else the invoice made from it,
AR_InvoiceHistoryHeader), a customer's open orders (credit check), and the CustomerNos already
used under a prefix (customer numbering).

How it works: every query is built with the dialect layer's `Q` over the installation's table
layouts (UDF columns included) and run through `SageOdbc` with `?` parameters only; values are
converted by sage100.values (money exact, text right-trimmed as ProvideX pads it). The same
queries run on a ProvideX DSN (read-only, for the `boi` writer) and on the sandbox database.

Limits: lookups by UDF need the UDF in the ODBC data dictionary (Sage's "update ODBC data
dictionary" step after adding it in Custom Office) and are full scans on ProvideX (no UDF key),
acceptable for the sink's one lookup per command. Two customers carrying the same Salesforce
Account ID are a data problem; the lowest key wins and a warning is logged. An order that left
SO_SalesOrderHeader is found only through a history table the UDF is configured on (and defined
on in Custom Office, with the same name, so Sage copies it there); without one a warning at
start-up says that a re-sent order Sage already moved to history would be written again. An order
not found costs a look in each configured table, the invoice history (often the largest) last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from connectors.sage100.odbc import Q, SageOdbc
from connectors.sage100.tables import AUDIT_COLUMNS, Table
from connectors.sage100.values import change_stamp, stamp_local, text_value, to_date, to_decimal, typed_value
from connectors.sage100.writes import ColumnValue, OrderTotals, WrittenLine, WrittenOrder
from sagesf.errors import Retriable

log = logging.getLogger(__name__)

__all__ = ["CustomerRow", "ItemRow", "OrderPlace", "SageReads", "SalesforceOrderIndex", "SqlSageReads"]

FetchOne = Callable[[str, Sequence[object]], Sequence[object] | None]
_WARNED: set[str] = set()

_ITEM_COLUMNS = (
    "ItemCode",
    "ItemType",
    "ItemCodeDesc",
    "StandardUnitOfMeasure",
    "SalesUnitOfMeasure",
    "TaxClass",
    "StandardUnitCost",
    "InactiveItem",
    "DefaultWarehouseCode",
)
# the AR_Customer columns the sink writes (compared before an update) and the credit figures
CUSTOMER_COLUMNS = (
    "ARDivisionNo",
    "CustomerNo",
    "CustomerName",
    "AddressLine1",
    "AddressLine2",
    "AddressLine3",
    "City",
    "State",
    "ZipCode",
    "CountryCode",
    "TelephoneNo",
    "EmailAddress",
    "TermsCode",
    "SalespersonDivisionNo",
    "SalespersonNo",
    "CustomerType",
    "PriceLevel",
    "CustomerStatus",
    "CreditLimit",
    "CurrentBalance",
)
_MONEY = ("CreditLimit", "CurrentBalance")
# who changed a customer last and when (Sage server local time): the sink's stale-command check
_CUSTOMER_STAMP = ("DateUpdated", "TimeUpdated", "UserUpdatedKey")
_TOTAL_COLUMNS = ("TaxableAmt", "NonTaxableAmt", "SalesTaxAmt", "FreightAmt", "DiscountAmt")


@dataclass(frozen=True)
class ItemRow:
    item_code: str
    item_type: str
    description: str
    unit_of_measure: str
    tax_class: str
    unit_cost: Decimal
    inactive: bool
    default_warehouse_code: str | None


@dataclass(frozen=True)
class CustomerRow:
    ar_division_no: str
    customer_no: str
    values: Mapping[str, ColumnValue | None]  # the layout's columns as stored (text trimmed)
    salesforce_account_id: str | None
    updated_on: date | None = None  # DateUpdated
    updated_hours: str | None = None  # TimeUpdated, decimal hours as stored
    updated_by: str | None = None  # UserUpdatedKey

    @property
    def updated_local(self) -> datetime | None:
        """When the row was last changed, in the Sage server's local time (None: no DateUpdated)."""
        if self.updated_on is None:
            return None
        try:
            return stamp_local(change_stamp(self.updated_on, self.updated_hours))
        except ValueError:  # a TimeUpdated that is no decimal-hour time: the start of that day
            return stamp_local(change_stamp(self.updated_on, None))

    @property
    def credit_limit(self) -> Decimal:
        value = self.values.get("CreditLimit")
        return value if isinstance(value, Decimal) else Decimal("0.00")

    @property
    def current_balance(self) -> Decimal:
        value = self.values.get("CurrentBalance")
        return value if isinstance(value, Decimal) else Decimal("0.00")

    @property
    def status(self) -> str:
        return str(self.values.get("CustomerStatus") or "")

    @property
    def name(self) -> str | None:
        value = self.values.get("CustomerName")
        return str(value) if value else None


@dataclass(frozen=True)
class OrderPlace:
    """Where the order carrying a Salesforce ID is: its number and the table that holds it."""

    sales_order_no: str
    table: str  # SO_SalesOrderHeader, SO_SalesOrderHistoryHeader or AR_InvoiceHistoryHeader


class SalesforceOrderIndex:
    """Finds the order carrying a Salesforce ID in the order UDF, wherever Sage keeps it.

    Sage moves an order out of SO_SalesOrderHeader when it is completed, deleted or invoiced in
    full; its UDF goes along where Custom Office defines a UDF of the same name. So an order is
    looked for, in this order: open (SO_SalesOrderHeader), in order history
    (SO_SalesOrderHistoryHeader: A active, C completed, X/Z deleted) and in invoice history
    (AR_InvoiceHistoryHeader, whose SalesOrderNo names the order; for installs that keep no
    order history). A history table without the UDF in the layouts is skipped. `find` runs the
    queries through the caller's `fetchone`, so the writer asks inside its own transaction."""

    ORDER_TABLES = ("SO_SalesOrderHeader", "SO_SalesOrderHistoryHeader", "AR_InvoiceHistoryHeader")

    def __init__(self, tables: Mapping[str, Table], udf: str) -> None:
        Q(tables["SO_SalesOrderHeader"]).col(udf)  # fail at start-up when the open table lacks it
        self.queries = [
            (name, q.select(["SalesOrderNo"], where=q.equals([udf]), order_by=["SalesOrderNo"]))
            for name, q in ((n, Q(tables[n])) for n in self.ORDER_TABLES)
            if q.table.has(udf)
        ]
        missing = [name for name in self.ORDER_TABLES[1:] if not tables[name].has(udf)]
        if len(missing) == len(self.ORDER_TABLES) - 1 and udf not in _WARNED:
            _WARNED.add(udf)  # once per process, however many connections read orders
            log.warning(
                "%s is configured on neither %s: an order Sage moved to history cannot be found by "
                "its Salesforce ID, and a re-sent order would be written again",
                udf,
                " nor ".join(missing),
            )

    def find(self, salesforce_id: str, fetchone: FetchOne) -> OrderPlace | None:
        for table, sql in self.queries:
            row = fetchone(sql, [salesforce_id])
            if row is not None and text_value(row[0]):
                return OrderPlace(text_value(row[0]) or "", table)
        return None


class SageReads(Protocol):
    def item(self, item_code: str) -> ItemRow | None: ...
    def item_values(self, item_code: str, columns: Sequence[str]) -> dict[str, ColumnValue | None] | None: ...
    def warehouse_exists(self, warehouse_code: str) -> bool: ...
    def division_exists(self, ar_division_no: str) -> bool: ...
    def terms_code_exists(self, terms_code: str) -> bool: ...
    def customer(self, ar_division_no: str, customer_no: str) -> CustomerRow | None: ...
    def customer_by_salesforce_id(self, account_id: str) -> CustomerRow | None: ...
    def customer_numbers(self, ar_division_no: str, prefix: str) -> list[str]: ...
    def order_by_salesforce_id(self, salesforce_id: str) -> WrittenOrder | None: ...
    def open_orders(
        self, ar_division_no: str, customer_no: str, statuses: tuple[str, ...]
    ) -> list[OrderTotals]: ...


class SqlSageReads:
    """`SageReads` over one ODBC connection (a ProvideX DSN or the sandbox database)."""

    def __init__(
        self,
        odbc: SageOdbc,
        tables: Mapping[str, Table],
        *,
        order_udf: str = "UDF_SALESFORCE_ID",
        customer_udf: str = "UDF_SALESFORCE_ID",
    ) -> None:
        self.odbc = odbc
        self.item_q = Q(tables["CI_Item"])
        self.warehouse_q = Q(tables["IM_Warehouse"])
        self.division_q = Q(tables["AR_Division"])
        self.terms_q = Q(tables["AR_TermsCode"])
        self.customer_q = Q(tables["AR_Customer"])
        self.header_q = Q(tables["SO_SalesOrderHeader"])
        self.detail_q = Q(tables["SO_SalesOrderDetail"])
        self.history_q = Q(tables["SO_SalesOrderHistoryHeader"])
        self.invoice_q = Q(tables["AR_InvoiceHistoryHeader"])
        self.orders = SalesforceOrderIndex(tables, order_udf)
        self.order_udf = order_udf
        self.customer_udf = customer_udf
        # fail at start-up, naming the column, when the configured UDFs are not in the layouts
        self.header_q.col(order_udf)
        self.customer_q.col(customer_udf)
        # every other column of the layout (UDFs too), read with the customer so an update can
        # tell which of the columns its command names change
        layout = tables["AR_Customer"]
        self.customer_columns = [
            c.name
            for c in layout.columns
            if c.name not in CUSTOMER_COLUMNS and c.name != customer_udf and c not in AUDIT_COLUMNS
        ]
        self.customer_udfs = [u for u in self.customer_columns if u.startswith("UDF_")]
        self._customer_layout = layout
        self._customer_select = [*CUSTOMER_COLUMNS, customer_udf, *self.customer_columns, *_CUSTOMER_STAMP]

    # --- reference data ------------------------------------------------------------------

    def item(self, item_code: str) -> ItemRow | None:
        q = self.item_q
        row = self.odbc.fetchone(q.select(_ITEM_COLUMNS, where=q.equals(["ItemCode"])), [item_code])
        if row is None:
            return None
        code, item_type, desc, std_uom, sales_uom, tax_class, cost, inactive, warehouse = row
        return ItemRow(
            item_code=text_value(code) or item_code,
            item_type=text_value(item_type) or "1",
            description=text_value(desc) or "",
            unit_of_measure=text_value(sales_uom) or text_value(std_uom) or "",
            tax_class=text_value(tax_class) or "",
            unit_cost=to_decimal(cost, 6) or Decimal("0"),
            inactive=(text_value(inactive) or "N").upper() == "Y",
            default_warehouse_code=text_value(warehouse) or None,
        )

    def item_values(self, item_code: str, columns: Sequence[str]) -> dict[str, ColumnValue | None] | None:
        """`columns` of CI_Item row `item_code` as stored (decimals, dates, trimmed text); None
        when there is no such item."""
        q = self.item_q
        names = list(dict.fromkeys(["ItemCode", *columns]))
        row = self.odbc.fetchone(q.select(names, where=q.equals(["ItemCode"])), [item_code])
        if row is None:
            return None
        return {n: typed_value(q.table.column(n), v) for n, v in zip(names, row, strict=True)}

    def warehouse_exists(self, warehouse_code: str) -> bool:
        return self._exists(self.warehouse_q, warehouse_code)

    def division_exists(self, ar_division_no: str) -> bool:
        return self._exists(self.division_q, ar_division_no)

    def terms_code_exists(self, terms_code: str) -> bool:
        return self._exists(self.terms_q, terms_code)

    def _exists(self, q: Q, key: str) -> bool:
        return self.odbc.fetchone(q.select(q.table.key, where=q.key_equals()), [key]) is not None

    # --- customers -----------------------------------------------------------------------

    def customer(self, ar_division_no: str, customer_no: str) -> CustomerRow | None:
        q = self.customer_q
        sql = q.select(self._customer_select, where=q.key_equals())
        row = self.odbc.fetchone(sql, [ar_division_no, customer_no])
        return None if row is None else self._customer_row(row)

    def customer_by_salesforce_id(self, account_id: str) -> CustomerRow | None:
        q = self.customer_q
        sql = q.select(
            self._customer_select,
            where=q.equals([self.customer_udf]),
            order_by=q.table.key,
        )
        rows = self.odbc.fetchall(sql, [account_id])
        if len(rows) > 1:
            keys = [f"{text_value(r[0])}-{text_value(r[1])}" for r in rows]
            log.warning(
                "Salesforce Account %s is on several Sage customers %s; using the first", account_id, keys
            )
        return self._customer_row(rows[0]) if rows else None

    def _customer_row(self, row: tuple[object, ...]) -> CustomerRow:
        values: dict[str, ColumnValue | None] = {}
        for name, value in zip(CUSTOMER_COLUMNS, row, strict=False):
            values[name] = to_decimal(value, 2) if name in _MONEY else text_value(value)
        udfs_end = len(CUSTOMER_COLUMNS) + 1 + len(self.customer_columns)
        more = row[len(CUSTOMER_COLUMNS) + 1 : udfs_end]
        for name, value in zip(self.customer_columns, more, strict=True):
            values[name] = typed_value(self._customer_layout.column(name), value)
        updated_on, updated_hours, updated_by = row[udfs_end:]
        return CustomerRow(
            ar_division_no=str(values["ARDivisionNo"]),
            customer_no=str(values["CustomerNo"]),
            values=values,
            salesforce_account_id=text_value(row[len(CUSTOMER_COLUMNS)]) or None,
            updated_on=_date_or_none(updated_on),
            updated_hours=text_value(updated_hours) or None,
            updated_by=text_value(updated_by) or None,
        )

    def customer_numbers(self, ar_division_no: str, prefix: str) -> list[str]:
        """CustomerNos of the division that start with `prefix` (non-empty).

        A key range (`CustomerNo >= prefix AND CustomerNo < prefix-with-last-character-bumped`)
        rather than LIKE: ProvideX answers a range on the key from the key, and LIKE's escape
        syntax differs between drivers."""
        q = self.customer_q
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        cno = q.col("CustomerNo")
        sql = q.select(["CustomerNo"], where=f"{q.equals(['ARDivisionNo'])} AND {cno} >= ? AND {cno} < ?")
        found = (text_value(r[0]) or "" for r in self.odbc.fetchall(sql, [ar_division_no, prefix, upper]))
        return [n for n in found if n.startswith(prefix)]

    # --- orders --------------------------------------------------------------------------

    def order_by_salesforce_id(self, salesforce_id: str) -> WrittenOrder | None:
        """The order carrying `salesforce_id`, open or in history (`SalesforceOrderIndex`)."""
        moving = ""
        for _ in range(2):  # once more when Sage moved the order between the two reads
            place = self.orders.find(salesforce_id, self.odbc.fetchone)
            if place is None:
                return None
            moving = place.sales_order_no
            if place.table == "SO_SalesOrderHeader":
                found = self._open_order(place.sales_order_no)
            else:
                found = self._history_order(place.sales_order_no)
            if found is not None:
                return found
        raise Retriable(f"sales order {moving} kept moving while being read")

    def _history_order(self, sales_order_no: str) -> WrittenOrder | None:
        """An order in SO_SalesOrderHistoryHeader, else invoiced with no order history kept (C)."""
        q, inv = self.history_q, self.invoice_q
        row = self.odbc.fetchone(
            q.select(["OrderStatus", "ARDivisionNo", "CustomerNo"], where=q.key_equals()), [sales_order_no]
        )
        if row is None:
            row = self.odbc.fetchone(
                inv.select(["ARDivisionNo", "CustomerNo"], where=inv.equals(["SalesOrderNo"])),
                [sales_order_no],
            )
            row = None if row is None else ("C", *row)
        if row is None:
            return None
        status, division, number = (text_value(v) or "" for v in row)
        return WrittenOrder(sales_order_no, status or "C", division, number, None, (), created=False)

    def _open_order(self, sales_order_no: str) -> WrittenOrder | None:
        q = self.header_q
        row = self.odbc.fetchone(
            q.select(["OrderStatus", "ARDivisionNo", "CustomerNo", *_TOTAL_COLUMNS], where=q.key_equals()),
            [sales_order_no],
        )
        if row is None:
            return None
        d = self.detail_q
        sql = d.select(
            ["LineKey", "ItemCode", "ExtensionAmt"], where=d.equals(["SalesOrderNo"]), order_by=["LineSeqNo"]
        )
        lines = self.odbc.fetchall(sql, [sales_order_no])
        return WrittenOrder(
            sales_order_no=sales_order_no,
            order_status=text_value(row[0]) or "",
            ar_division_no=text_value(row[1]) or "",
            customer_no=text_value(row[2]) or "",
            totals=_totals(row[3:]),
            lines=tuple(
                WrittenLine(
                    i, text_value(key) or "", text_value(item) or "", to_decimal(ext, 2) or Decimal("0.00")
                )
                for i, (key, item, ext) in enumerate(lines, start=1)
            ),
            created=False,
        )

    def open_orders(
        self, ar_division_no: str, customer_no: str, statuses: tuple[str, ...]
    ) -> list[OrderTotals]:
        """Totals of the customer's orders whose OrderStatus is one of `statuses`."""
        q = self.header_q
        marks = ", ".join("?" for _ in statuses)
        where = f"{q.equals(['ARDivisionNo', 'CustomerNo'])} AND {q.col('OrderStatus')} IN ({marks})"
        rows = self.odbc.fetchall(
            q.select(_TOTAL_COLUMNS, where=where), [ar_division_no, customer_no, *statuses]
        )
        return [_totals(row) for row in rows]


def _date_or_none(value: object) -> date | None:
    """DateUpdated as read; None when a driver gives something that is no date (the row then
    has no stamp to compare, which the sink treats as older than any command)."""
    try:
        return to_date(value)
    except (TypeError, ValueError):
        return None


def _totals(values: tuple[object, ...]) -> OrderTotals:
    amounts = [to_decimal(v, 2) or Decimal("0.00") for v in values]
    return OrderTotals(*amounts)
