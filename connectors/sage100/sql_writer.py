"""The `odbc` writer backend: SQL writes that reproduce what BOI does, in one transaction.

For the sandbox database and SQL-backed installs (ARCHITECTURE: writes to a real Sage 100 go
through BOI, boi_writer.py; direct SQL bypasses Sage's business logic, so this backend reproduces
the effects the sink relies on and no more).

Owns, for a sales order, in ONE transaction on the sink's `SageOdbc` connection:
1. the next SalesOrderNo from the counter kept like Sage's next-number setting
   (`SO_Options.NextSalesOrderNo`, 7 characters, zero-padded), skipping numbers already used in
   SO_SalesOrderHeader or SO_SalesOrderHistoryHeader, as `nGetNextSalesOrderNo` does; the
   counter is advanced with a compare-and-set UPDATE (`... WHERE NextSalesOrderNo = <read>`),
   which is also the statement that takes the database's write lock;
2. the idempotency check under that lock: an order carrying the Salesforce ID in the UDF column,
   open or in history (reads.SalesforceOrderIndex), makes the transaction roll back (the counter
   is not consumed) and returns that order;
3. the order's new customer, when the command brings one: inserted in this same transaction
   (or, if a customer carrying its Account ID exists by now, that one is used), so an order
   refused at any later step leaves no customer behind;
4. the header (OrderStatus N; BillTo*, TermsCode, TaxSchedule and salesperson defaulted from the
   customer like BOI does when the command does not give them; TaxableAmt, NonTaxableAmt,
   SalesTaxAmt, FreightAmt, DiscountAmt) and the lines (LineKey "000001", "000002"...,
   LineSeqNo = LineKey + "00000000", ExtensionAmt = quantity x unit price rounded to cents);
5. the audit columns (DateCreated/TimeCreated/UserCreatedKey and the Updated ones) with the
   integration user and the Sage server's local time (decimal hours, sage100.values).
A crash or error anywhere before the commit leaves nothing; after it, a redelivered command
finds the order in step 2. For a customer alone it inserts or updates AR_Customer the same way (a new
one with CustomerStatus A and DateEstablished today unless given).

Every statement is built by sage100.odbc's `Q` from the table layouts; values are parameters,
decimals bound through `values.decimal_param` (exact, at the column's scale). Driver errors come
out classified (`SageUnavailable` Retriable: locked, busy, I/O; `SageRejected` Permanent).

Limits: side effects BOI has beyond these rows are not reproduced (IM_ItemWarehouse
QuantityOnSalesOrder, AR_Customer OpenOrderAmt, sales tax from tax schedules). Which key column
the real SO_Options has is unverified (tables.py), so the one counter row is addressed by its
current value only. Order numbers are numeric (Sage also allows letters; not supported here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyodbc

from connectors.sage100.odbc import Q, SageOdbc, SageUnavailable
from connectors.sage100.reads import SqlSageReads
from connectors.sage100.tables import ColumnKind, Table
from connectors.sage100.values import decimal_param, format_hours, text_value
from connectors.sage100.writes import (
    ColumnValue,
    CustomerWrite,
    OrderTotals,
    OrderWrite,
    WrittenCustomer,
    WrittenLine,
    WrittenOrder,
)
from sagesf.errors import Permanent

log = logging.getLogger(__name__)

__all__ = ["SqlSageWriter"]

ORDER_NO_LENGTH = 7
# customer columns BOI copies onto a new order header when the order does not say otherwise
_FROM_CUSTOMER = {
    "BillToName": "CustomerName",
    "BillToAddress1": "AddressLine1",
    "BillToAddress2": "AddressLine2",
    "BillToAddress3": "AddressLine3",
    "BillToCity": "City",
    "BillToState": "State",
    "BillToZipCode": "ZipCode",
    "BillToCountryCode": "CountryCode",
    "TermsCode": "TermsCode",
    "TaxSchedule": "TaxSchedule",
    "SalespersonDivisionNo": "SalespersonDivisionNo",
    "SalespersonNo": "SalespersonNo",
}
_TOTALS = ("TaxableAmt", "NonTaxableAmt", "SalesTaxAmt", "FreightAmt", "DiscountAmt")


class SqlSageWriter:
    """Writes orders and customers with SQL through the dialect layer (see the module doc)."""

    backend = "odbc"

    def __init__(
        self,
        odbc: SageOdbc,
        tables: Mapping[str, Table],
        *,
        user_key: str,
        zone: ZoneInfo,
        order_udf: str = "UDF_SALESFORCE_ID",
        customer_udf: str = "UDF_SALESFORCE_ID",
        time_pad: str = "0",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.odbc = odbc
        self.user_key = user_key
        self.zone = zone
        self.time_pad = time_pad
        self.clock = clock or (lambda: datetime.now(zone))
        self.order_udf = order_udf
        self.customer_udf = customer_udf
        self.header = Q(tables["SO_SalesOrderHeader"])
        self.detail = Q(tables["SO_SalesOrderDetail"])
        self.history = Q(tables["SO_SalesOrderHistoryHeader"])
        self.customers = Q(tables["AR_Customer"])
        self.items = Q(tables["CI_Item"])
        self.options = Q(tables["SO_Options"])
        self.customers.col(customer_udf)  # a UDF missing from the layouts fails here, naming it
        self.reads = SqlSageReads(odbc, tables, order_udf=order_udf, customer_udf=customer_udf)

    def check(self) -> None:
        """Fail at start-up, saying what to fix, when the next-number counter is missing."""
        try:
            rows = self.odbc.fetchall(self.options.select(["NextSalesOrderNo"]))
        except Permanent as exc:
            raise RuntimeError(f"the next sales order number setting cannot be read: {exc}") from exc
        if len(rows) != 1:
            raise RuntimeError(
                f"SO_Options must hold exactly one row with NextSalesOrderNo; it holds {len(rows)}"
            )

    def close(self) -> None:
        self.odbc.close()

    # --- sales order ---------------------------------------------------------------------

    def create_sales_order(
        self, order: OrderWrite, new_customer: CustomerWrite | None = None
    ) -> WrittenOrder:
        with self.odbc.transaction() as cur:
            sales_order_no = self._take_order_no(cur)
            existing = self.reads.orders.find(order.salesforce_id, _fetchone(cur))
            if existing is not None:
                cur.connection.rollback()  # give the number back: nothing of this attempt stays
                log.info("order for %s exists as %s; nothing written", order.salesforce_id, existing)
                return self._existing_order(order.salesforce_id)
            customer_created = False
            if new_customer is not None:
                placed = self._insert_customer(cur, new_customer)
                customer_created = placed.created
                order = replace(order, ar_division_no=placed.ar_division_no, customer_no=placed.customer_no)
            customer = self._customer_values(cur, order.ar_division_no, order.customer_no)
            audit = self._audit(created=True)
            header: dict[str, Any] = {
                "SalesOrderNo": sales_order_no,
                "OrderDate": order.order_date,
                "OrderType": order.order_type,
                "OrderStatus": "N",
                "ARDivisionNo": order.ar_division_no,
                "CustomerNo": order.customer_no,
            }
            for column, source in _FROM_CUSTOMER.items():
                if column not in order.header and customer.get(source):
                    header[column] = customer[source]
            header.update(order.header)
            header.update(zip(_TOTALS, _amounts(order.totals), strict=True))
            header[self.order_udf] = order.salesforce_id
            header.update(audit)
            self._insert(cur, self.header, header)
            written = []
            for position, line in enumerate(order.lines, start=1):
                line_key = f"{position:06d}"
                row: dict[str, Any] = {
                    "SalesOrderNo": sales_order_no,
                    "LineKey": line_key,
                    "LineSeqNo": f"{line_key}00000000",
                    "ItemCode": line.item_code,
                    "ItemType": line.item_type,
                    "ItemCodeDesc": line.item_code_desc,
                    "WarehouseCode": line.warehouse_code,
                    "UnitOfMeasure": line.unit_of_measure,
                    "QuantityOrdered": line.quantity_ordered,
                    "QuantityShipped": Decimal(0),
                    "QuantityBackordered": Decimal(0),
                    "UnitPrice": line.unit_price,
                    "UnitCost": line.unit_cost,
                    "ExtensionAmt": line.extension_amt,
                    "TaxClass": line.tax_class,
                    **({"CommentText": line.comment_text} if line.comment_text else {}),
                    **audit,
                }
                self._insert(cur, self.detail, row)
                written.append(
                    WrittenLine(
                        line.line_no, line_key, line.item_code, line.extension_amt, line.salesforce_line_id
                    )
                )
        log.info("wrote sales order %s for %s (%d lines)", sales_order_no, order.salesforce_id, len(written))
        return WrittenOrder(
            sales_order_no=sales_order_no,
            order_status="N",
            ar_division_no=order.ar_division_no,
            customer_no=order.customer_no,
            totals=order.totals,
            lines=tuple(written),
            created=True,
            customer_created=customer_created,
        )

    def _take_order_no(self, cur: pyodbc.Cursor) -> str:
        """Reserve the next free SalesOrderNo and advance the counter (compare-and-set).

        A counter that is missing, not a number or past the last number is `Permanent`: no retry
        mends it, an operator does (Sales Order Options), then replays the dead letters. Only a
        counter another writer moved meanwhile is worth retrying."""
        opts = self.options
        cur.execute(opts.select(["NextSalesOrderNo"]))
        row = cur.fetchone()
        if row is None:
            raise _counter_broken("SO_Options has no row: the next sales order number is not set up")
        current = text_value(row[0]) or "1"
        if not current.isdigit():
            raise _counter_broken(f"SO_Options.NextSalesOrderNo {current!r} is not a number", current)
        number = int(current)
        while True:
            candidate = f"{number:0{ORDER_NO_LENGTH}d}"
            if len(candidate) > ORDER_NO_LENGTH:
                raise _counter_broken("sales order numbers are exhausted (9999999 reached)", current)
            if not self._order_no_used(cur, candidate):
                break
            number += 1
        following = f"{number + 1:0{ORDER_NO_LENGTH}d}"
        cur.execute(opts.update(["NextSalesOrderNo"], opts.equals(["NextSalesOrderNo"])), following, row[0])
        if cur.rowcount != 1:
            # another writer took the number between our read and our update: try again later
            raise SageUnavailable("the next sales order number changed while it was being taken")
        return candidate

    def _order_no_used(self, cur: pyodbc.Cursor, sales_order_no: str) -> bool:
        for q in (self.header, self.history):
            cur.execute(q.select(["SalesOrderNo"], where=q.equals(["SalesOrderNo"])), sales_order_no)
            if cur.fetchone() is not None:
                return True
        return False

    def _existing_order(self, salesforce_id: str) -> WrittenOrder:
        found = self.reads.order_by_salesforce_id(salesforce_id)
        if found is None:  # deleted for good between the check and now
            raise SageUnavailable(f"the order for {salesforce_id} vanished while being read")
        return found

    def _customer_values(self, cur: pyodbc.Cursor, division: str, customer_no: str) -> dict[str, str]:
        q = self.customers
        names = list(dict.fromkeys(_FROM_CUSTOMER.values()))
        cur.execute(q.select(names, where=q.key_equals()), division, customer_no)
        row = cur.fetchone()
        if row is None:
            raise Permanent(
                f"customer {division}-{customer_no} does not exist in AR_Customer",
                field="CustomerNo",
                value=customer_no,
            )
        return {name: text_value(value) or "" for name, value in zip(names, row, strict=True)}

    # --- customer ------------------------------------------------------------------------

    def upsert_customer(self, customer: CustomerWrite) -> WrittenCustomer:
        with self.odbc.transaction() as cur:
            if customer.create:
                written = self._insert_customer(cur, customer)
                if not written.created:  # created by an earlier delivery of the same command
                    cur.connection.rollback()
                return written
            self._update_customer(cur, customer)
        return WrittenCustomer(customer.ar_division_no, customer.customer_no, False)

    def _insert_customer(self, cur: pyodbc.Cursor, customer: CustomerWrite) -> WrittenCustomer:
        """Insert a new AR_Customer row, unless one carries its Account ID already (that one,
        created=False). Retriable when its CustomerNo was taken meanwhile: the sink chooses again."""
        q = self.customers
        if customer.salesforce_account_id:
            cur.execute(
                q.select(list(q.table.key), where=q.equals([self.customer_udf]), order_by=q.table.key),
                customer.salesforce_account_id,
            )
            found = cur.fetchone()
            if found is not None:
                return WrittenCustomer(text_value(found[0]) or "", text_value(found[1]) or "", False)
        if self._customer_exists(cur, customer):
            raise SageUnavailable(f"CustomerNo {customer.customer_no!r} was taken meanwhile; choosing again")
        values: dict[str, Any] = {
            "ARDivisionNo": customer.ar_division_no,
            "CustomerNo": customer.customer_no,
            "CustomerStatus": "A",
            "DateEstablished": self.clock().date(),
            **customer.columns,
            **self._audit(created=True),
        }
        self._insert(cur, q, values)
        return WrittenCustomer(customer.ar_division_no, customer.customer_no, True)

    def _update_customer(self, cur: pyodbc.Cursor, customer: CustomerWrite) -> None:
        q = self.customers
        if not self._customer_exists(cur, customer):
            raise Permanent(
                f"customer {customer.ar_division_no}-{customer.customer_no} no longer exists in Sage",
                field="CustomerNo",
                value=customer.customer_no,
            )
        values: dict[str, Any] = {**customer.columns, **self._audit(created=False)}
        names = list(values)
        cur.execute(
            q.update(names, q.key_equals()),
            *self._params(q.table, names, values),
            customer.ar_division_no,
            customer.customer_no,
        )

    # --- item --------------------------------------------------------------------------------

    def update_item(self, item_code: str, columns: Mapping[str, ColumnValue]) -> None:
        q = self.items
        values: dict[str, Any] = {**columns, **self._audit(created=False)}
        names = list(values)
        with self.odbc.transaction() as cur:
            cur.execute(
                q.update(names, q.equals(["ItemCode"])), *self._params(q.table, names, values), item_code
            )
            if cur.rowcount == 0:
                raise Permanent(
                    f"ItemCode {item_code!r} no longer exists in CI_Item", field="ItemCode", value=item_code
                )

    def _customer_exists(self, cur: pyodbc.Cursor, customer: CustomerWrite) -> bool:
        q = self.customers
        cur.execute(
            q.select(list(q.table.key), where=q.key_equals()), customer.ar_division_no, customer.customer_no
        )
        return cur.fetchone() is not None

    # --- statements ----------------------------------------------------------------------

    def _audit(self, *, created: bool) -> dict[str, ColumnValue]:
        now = self.clock().astimezone(self.zone).replace(tzinfo=None)
        hours = format_hours(now, pad=self.time_pad)
        stamp: dict[str, ColumnValue] = {
            "DateUpdated": now.date(),
            "TimeUpdated": hours,
            "UserUpdatedKey": self.user_key,
        }
        if created:
            stamp = {
                "DateCreated": now.date(),
                "TimeCreated": hours,
                "UserCreatedKey": self.user_key,
                **stamp,
            }
        return stamp

    def _insert(self, cur: pyodbc.Cursor, q: Q, row: Mapping[str, Any]) -> None:
        names = list(row)
        cur.execute(q.insert(names), *self._params(q.table, names, row))

    @staticmethod
    def _params(table: Table, names: Sequence[str], row: Mapping[str, Any]) -> list[object]:
        params: list[object] = []
        for name in names:
            column, value = table.column(name), row[name]
            if column.kind is ColumnKind.DECIMAL:
                params.append(decimal_param(value, column))
            elif column.kind is ColumnKind.DATE:
                if not isinstance(value, date):
                    raise TypeError(f"{table.name}.{name} needs a date, got {value!r}")
                params.append(value)
            else:
                params.append(str(value))
        return params


def _fetchone(cur: pyodbc.Cursor) -> Callable[[str, Sequence[object]], Sequence[object] | None]:
    """A `SalesforceOrderIndex` fetchone that reads inside the writer's transaction."""

    def fetchone(sql: str, params: Sequence[object]) -> Sequence[object] | None:
        cur.execute(sql, *params)
        row: Sequence[object] | None = cur.fetchone()
        return row

    return fetchone


def _counter_broken(reason: str, value: str | None = None) -> Permanent:
    return Permanent(
        f"{reason}; fix it in Sales Order Options", field="SO_Options.NextSalesOrderNo", value=value
    )


def _amounts(totals: OrderTotals) -> tuple[Decimal, ...]:
    return (
        totals.taxable_amt,
        totals.non_taxable_amt,
        totals.sales_tax_amt,
        totals.freight_amt,
        totals.discount_amt,
    )
