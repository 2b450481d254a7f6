"""Sage-side activity for demos and tests: changes made the way a Sage 100 user makes them.

Owns `SageSimulator`, which writes to the sandbox database through ODBC as Sage's own programs
would: every write stamps DateUpdated, TimeUpdated (decimal hours, Sage server local time) and
UserUpdatedKey (DateCreated/TimeCreated/UserCreatedKey on inserts), in one transaction per
business action:
- `move_stock(item, warehouse, delta)`: a receipt or an adjustment; IM_ItemWarehouse
  QuantityOnHand and CI_Item TotalQuantityOnHand move together.
- `advance_order(no)`: OrderStatus N -> O -> C; closing also marks SO_SalesOrderHistoryHeader C.
  `purge_order(no)` removes a closed order from SO_SalesOrderHeader/Detail (as invoicing and
  purging do) and `delete_order(no)` deletes an open one (history status X); both leave the
  order's header columns (its UDFs too) in SO_SalesOrderHistoryHeader. `invoice_order(no)`
  invoices an order in full: an AR_InvoiceHistoryHeader row naming it (with its UDFs), the open
  order removed, history C (or no history row at all when S/O Options do not retain history).
- `edit_customer(division, no, changes)`: a customer maintenance edit (random when no changes).
- `set_item_inactive(item)`, `delete_customer(...)`: deactivation and deletion.
- `write_row(table, row, user=...)`: insert or update any row by key with audit stamps; tests
  use it for precise interleavings (several writes within one TimeUpdated value, writes as the
  integration user).
- `import_raw(table, row, key=...)`: what a broken Visual Integrator import leaves behind: the
  values exactly as given (text where a number belongs, an hour of 25, a NULL key, a date in
  year 9999), stamps only if given, nothing checked.
- `step()` picks one of the actions at random; `run(steps, interval)` keeps doing so.

The clock is the Sage server's: local wall-clock time in `zone` (default America/New_York),
or any callable returning a naive local datetime, so tests can put many writes in the same
TimeUpdated value or cross a daylight-saving change. `time_pad` is how hours before 10:00 are
written ("0": "09.5012", the default; "": "9.5012", to test a Sage that does not pad).

Limits: no business rules beyond the stamps and the few quantities above (no costing, no
credit holds, no invoices); AR_Customer.OpenOrderAmt is not maintained by status changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sage100.odbc import Q, SageOdbc
from connectors.sage100.tables import AUDIT_COLUMNS, Table
from connectors.sage100.values import format_hours, quantize, to_decimal
from sandbox.sage100.database import DEMO_USERS, SandboxDatabase

__all__ = ["NEXT_STATUS", "SageSimulator", "SimulatedChange"]

NEXT_STATUS = {"N": "O", "O": "C", "H": "O"}
AUDIT_NAMES = frozenset(c.name for c in AUDIT_COLUMNS)


@dataclass(frozen=True)
class SimulatedChange:
    action: str
    table: str
    key: tuple[str, ...]
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action:<16} {self.table}[{'-'.join(self.key)}] {self.detail}".rstrip()


class SageSimulator:
    def __init__(
        self,
        db: SandboxDatabase,
        *,
        user_key: str | None = None,
        zone: ZoneInfo | str = "America/New_York",
        clock: Callable[[], datetime] | None = None,
        rng_seed: int | None = None,
        time_pad: str = "0",
    ) -> None:
        self.db = db
        self.time_pad = time_pad
        self.tables = db.tables
        self.odbc: SageOdbc = db.odbc()
        self.zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
        self.clock = clock
        self.rng = random.Random(rng_seed)  # noqa: S311 - simulated activity, not security
        self.user_key = user_key

    def close(self) -> None:
        self.odbc.close()

    def __enter__(self) -> SageSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- time and users ------------------------------------------------------------------------

    def now(self) -> datetime:
        """The Sage server's wall-clock time (naive local)."""
        if self.clock is not None:
            return self.clock()
        return datetime.now(self.zone).replace(tzinfo=None)

    def _user(self, user: str | None) -> str:
        return user or self.user_key or self.rng.choice(DEMO_USERS)

    def _updated(self, when: datetime, user: str) -> dict[str, Any]:
        hours = format_hours(when, pad=self.time_pad)
        return {"DateUpdated": when.date(), "TimeUpdated": hours, "UserUpdatedKey": user}

    def _created(self, when: datetime, user: str) -> dict[str, Any]:
        hours = format_hours(when, pad=self.time_pad)
        return {"DateCreated": when.date(), "TimeCreated": hours, "UserCreatedKey": user}

    # --- generic writes ------------------------------------------------------------------------

    def _key_values(self, table: Table, row: Mapping[str, Any]) -> list[Any]:
        return [row[k] for k in table.key]

    def _exists(self, cur: Any, table: Table, key: list[Any]) -> bool:
        q = Q(table)
        cur.execute(q.select([table.key[0]], where=q.key_equals()), *key)
        return cur.fetchone() is not None

    def _upsert(self, cur: Any, table: Table, row: Mapping[str, Any], user: str, when: datetime) -> str:
        q = Q(table)
        key = self._key_values(table, row)
        data = {k: v for k, v in row.items() if k not in table.key}
        if self._exists(cur, table, key):
            values = {**data, **self._updated(when, user)}
            cur.execute(q.update(list(values), q.key_equals()), *values.values(), *key)
            return "update"
        values = {**row, **self._created(when, user), **self._updated(when, user)}
        cur.execute(q.insert(list(values)), *values.values())
        return "insert"

    def write_row(
        self, table: str, row: Mapping[str, Any], *, user: str | None = None, at: datetime | None = None
    ) -> SimulatedChange:
        """Insert or update one row by its key, stamped as `user` at `at` (default: now)."""
        layout = self.tables[table]
        when = at or self.now()
        with self.odbc.transaction() as cur:
            action = self._upsert(cur, layout, row, self._user(user), when)
        return SimulatedChange(action, table, tuple(str(v) for v in self._key_values(layout, row)))

    def import_raw(
        self, table: str, row: Mapping[str, Any], *, key: tuple[Any, ...] | None = None
    ) -> SimulatedChange:
        """Write `row` exactly as given, as a Visual Integrator import that skips Sage's checks
        does: an UPDATE of the row with `key` (its key columns may be set too, even to NULL), or
        an INSERT without one. No audit stamp is added: give DateUpdated/TimeUpdated/UserUpdatedKey
        in `row` to stamp it (with any text), or leave them out for an unstamped change."""
        layout = self.tables[table]
        q = Q(layout)
        with self.odbc.transaction() as cur:
            if key is None:
                cur.execute(q.insert(list(row)), *row.values())
                action = "raw insert"
            else:
                cur.execute(q.update(list(row), q.key_equals()), *row.values(), *key)
                if cur.rowcount == 0:
                    raise KeyError(f"no {table} row {key}")
                action = "raw update"
        shown = key if key is not None else tuple(row.get(k) for k in layout.key)
        return SimulatedChange(action, table, tuple(str(v) for v in shown), ", ".join(row))

    def _get(self, table: str, key: list[Any], columns: list[str]) -> dict[str, Any] | None:
        layout = self.tables[table]
        q = Q(layout)
        found = self.odbc.fetchone(q.select(columns, where=q.key_equals()), key)
        return dict(zip(columns, found, strict=True)) if found else None

    def _keys(self, table: str, where: str = "", params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        layout = self.tables[table]
        return self.odbc.fetchall(Q(layout).select(list(layout.key), where=where), params)

    # --- business actions ----------------------------------------------------------------------

    def move_stock(
        self, item_code: str, warehouse_code: str, delta: Decimal | int, *, user: str | None = None
    ) -> SimulatedChange:
        """A receipt (delta > 0) or an adjustment/issue (delta < 0) of one item in one warehouse."""
        delta = Decimal(delta)
        when, who = self.now(), self._user(user)
        iw, item = self.tables["IM_ItemWarehouse"], self.tables["CI_Item"]
        with self.odbc.transaction() as cur:
            q = Q(iw)
            cur.execute(q.select(["QuantityOnHand"], where=q.key_equals()), item_code, warehouse_code)
            found = cur.fetchone()
            if found is None:
                raise KeyError(f"no IM_ItemWarehouse row {item_code}/{warehouse_code}")
            on_hand = quantize((to_decimal(found[0]) or Decimal(0)) + delta, 6)
            values = {"QuantityOnHand": on_hand, **self._updated(when, who)}
            cur.execute(q.update(list(values), q.key_equals()), *values.values(), item_code, warehouse_code)
            qi = Q(item)
            cur.execute(qi.select(["TotalQuantityOnHand"], where=qi.key_equals()), item_code)
            total_row = cur.fetchone()
            total = quantize((to_decimal(total_row[0]) if total_row else None) or Decimal(0), 6) + delta
            values = {"TotalQuantityOnHand": quantize(total, 6), **self._updated(when, who)}
            cur.execute(qi.update(list(values), qi.key_equals()), *values.values(), item_code)
        return SimulatedChange("move stock", "IM_ItemWarehouse", (item_code, warehouse_code), f"{delta:+}")

    def set_order_status(
        self, sales_order_no: str, status: str, *, user: str | None = None
    ) -> SimulatedChange:
        when, who = self.now(), self._user(user)
        header, history = self.tables["SO_SalesOrderHeader"], self.tables["SO_SalesOrderHistoryHeader"]
        with self.odbc.transaction() as cur:
            q = Q(header)
            values = {"OrderStatus": status, **self._updated(when, who)}
            cur.execute(q.update(list(values), q.key_equals()), *values.values(), sales_order_no)
            if cur.rowcount == 0:
                raise KeyError(f"no open order {sales_order_no}")
            if status == "C":
                qh = Q(history)
                hist = {"OrderStatus": "C", "DateCompleted": when.date(), **self._updated(when, who)}
                cur.execute(qh.update(list(hist), qh.key_equals()), *hist.values(), sales_order_no)
        return SimulatedChange("order status", "SO_SalesOrderHeader", (sales_order_no,), f"-> {status}")

    def advance_order(self, sales_order_no: str, *, user: str | None = None) -> SimulatedChange:
        """Move an order one step on: N -> O, H -> O, O -> C."""
        found = self._get("SO_SalesOrderHeader", [sales_order_no], ["OrderStatus"])
        if found is None:
            raise KeyError(f"no open order {sales_order_no}")
        new = NEXT_STATUS.get(str(found["OrderStatus"]))
        if new is None:
            raise ValueError(f"order {sales_order_no} is {found['OrderStatus']}; nothing to advance")
        return self.set_order_status(sales_order_no, new, user=user)

    def _remove_order(
        self,
        sales_order_no: str,
        history_status: str | None,
        user: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Take an order out of SO_SalesOrderHeader/Detail; its header columns (those the history
        layout has, UDFs included) go to SO_SalesOrderHistoryHeader with `history_status` and
        `extra`, or the history row goes too when `history_status` is None. The header as it was."""
        when, who = self.now(), self._user(user)
        header, detail = self.tables["SO_SalesOrderHeader"], self.tables["SO_SalesOrderDetail"]
        history = self.tables["SO_SalesOrderHistoryHeader"]
        qo, qh = Q(header), Q(history)
        shared = [c for c in history.names if header.has(c) and c not in history.key]
        with self.odbc.transaction() as cur:
            cur.execute(qo.select(shared, where=qo.key_equals()), sales_order_no)
            found = cur.fetchone()
            if found is None:
                raise KeyError(f"no open order {sales_order_no}")
            order = dict(zip(shared, found, strict=True))
            cur.execute(Q(detail).delete(Q(detail).equals(["SalesOrderNo"])), sales_order_no)
            cur.execute(qo.delete(qo.key_equals()), sales_order_no)
            if history_status is None:
                cur.execute(qh.delete(qh.key_equals()), sales_order_no)
                return order
            kept = {k: v for k, v in order.items() if not _audit_column(k)}
            row = {"SalesOrderNo": sales_order_no, **kept, "OrderStatus": history_status}
            row.update({"DateCompleted": when.date(), **(extra or {})})
            self._upsert(cur, history, row, who, when)
        return order

    def purge_order(self, sales_order_no: str, *, user: str | None = None) -> SimulatedChange:
        """Invoice and purge a closed order: it leaves SO_SalesOrderHeader, history says C."""
        self._remove_order(sales_order_no, "C", user)
        return SimulatedChange("purge order", "SO_SalesOrderHeader", (sales_order_no,))

    def delete_order(self, sales_order_no: str, *, user: str | None = None) -> SimulatedChange:
        """Delete an open order: it leaves SO_SalesOrderHeader, history says X."""
        self._remove_order(sales_order_no, "X", user)
        return SimulatedChange("delete order", "SO_SalesOrderHeader", (sales_order_no,))

    def invoice_order(
        self, sales_order_no: str, *, retain_history: bool = True, user: str | None = None
    ) -> SimulatedChange:
        """Invoice an order in full and post the invoice: AR_InvoiceHistoryHeader gets the invoice
        (SalesOrderNo and the order's UDFs), the open order goes, history says C with the invoice
        number; `retain_history` False is S/O Options keeping no order history (no history row)."""
        invoices = self.tables["AR_InvoiceHistoryHeader"]
        qi = Q(invoices)
        last = self.odbc.fetchone(f"SELECT MAX({qi.col('InvoiceNo')}) FROM {invoices.name}")  # noqa: S608
        invoice_no = f"{int((last or [None])[0] or 0) + 1:07d}"
        when, who = self.now(), self._user(user)
        extra = {"LastInvoiceNo": invoice_no, "LastInvoiceDate": when.date()}
        order = self._remove_order(sales_order_no, "C" if retain_history else None, who, extra)
        row = {
            "InvoiceNo": invoice_no,
            "HeaderSeqNo": "000000",
            "InvoiceType": "IN",
            "InvoiceDate": when.date(),
            "ModuleCode": "S/O",
            "SalesOrderNo": sales_order_no,
            **{k: v for k, v in order.items() if invoices.has(k) and not _audit_column(k)},
        }
        self.write_row("AR_InvoiceHistoryHeader", row, user=who, at=when)
        return SimulatedChange("invoice order", "AR_InvoiceHistoryHeader", (invoice_no,), sales_order_no)

    def edit_customer(
        self,
        ar_division_no: str,
        customer_no: str,
        changes: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
    ) -> SimulatedChange:
        """Customer maintenance: the given column changes, or a random plausible edit."""
        if changes is None:
            choice = self.rng.randrange(4)
            if choice == 0:
                changes = {
                    "TelephoneNo": f"({self.rng.randrange(200, 999)}) 555-{self.rng.randrange(1000, 9999)}"
                }
            elif choice == 1:
                changes = {"CreditLimit": f"{self.rng.choice((5000, 7500, 15000, 40000))}.00"}
            elif choice == 2:
                changes = {"AddressLine2": f"Suite {self.rng.randrange(100, 999)}"}
            else:
                changes = {
                    "EmailAddress": f"orders{self.rng.randrange(1, 99)}@{customer_no.lower()}.example.com"
                }
        row = {"ARDivisionNo": ar_division_no, "CustomerNo": customer_no, **changes}
        change = self.write_row("AR_Customer", row, user=user)
        return SimulatedChange("edit customer", change.table, change.key, ", ".join(changes))

    def delete_customer(self, ar_division_no: str, customer_no: str) -> SimulatedChange:
        customer, contacts = self.tables["AR_Customer"], self.tables["AR_CustomerContact"]
        with self.odbc.transaction() as cur:
            qc = Q(contacts)
            cur.execute(qc.delete(qc.equals(["ARDivisionNo", "CustomerNo"])), ar_division_no, customer_no)
            cur.execute(Q(customer).delete(Q(customer).key_equals()), ar_division_no, customer_no)
        return SimulatedChange("delete customer", "AR_Customer", (ar_division_no, customer_no))

    def set_item_inactive(
        self, item_code: str, inactive: bool = True, *, user: str | None = None
    ) -> SimulatedChange:
        self.write_row(
            "CI_Item", {"ItemCode": item_code, "InactiveItem": "Y" if inactive else "N"}, user=user
        )
        return SimulatedChange("item inactive" if inactive else "item active", "CI_Item", (item_code,))

    # --- random activity -----------------------------------------------------------------------

    def step(self) -> SimulatedChange:
        """One random action, weighted like a working day: mostly stock moves."""
        roll = self.rng.random()
        if roll < 0.2:
            orders = self._keys("SO_SalesOrderHeader")
            if orders:
                order_no = str(self.rng.choice(orders)[0])
                status = self._get("SO_SalesOrderHeader", [order_no], ["OrderStatus"])
                if status and status["OrderStatus"] == "C":
                    return self.purge_order(order_no)
                return self.advance_order(order_no)
        if roll < 0.4:
            customers = self._keys("AR_Customer")
            if customers:
                division, number = self.rng.choice(customers)
                return self.edit_customer(str(division), str(number))
        levels = self._keys("IM_ItemWarehouse")
        item_code, warehouse = self.rng.choice(levels)
        delta = self.rng.choice((-5, -2, -1, 1, 10, 25, 100))
        return self.move_stock(str(item_code), str(warehouse), delta)

    def run(
        self, steps: int, interval: float = 1.0, on_change: Callable[[SimulatedChange], None] | None = None
    ) -> int:
        """Make `steps` random changes (0: until interrupted), `interval` seconds apart."""
        import time

        done = 0
        while steps <= 0 or done < steps:
            change = self.step()
            done += 1
            if on_change is not None:
                on_change(change)
            if interval > 0 and (steps <= 0 or done < steps):
                time.sleep(interval)
        return done


def _audit_column(name: str) -> bool:
    return name in AUDIT_NAMES
