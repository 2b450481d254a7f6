"""The `boi` writer backend: Sage 100's Business Object Interface (COM, through pywin32).

Owns the documented BOI call sequence for the two writes the sink makes:

- session (once per writer): `ProvideX.Script` -> `Init(<MAS90 home>)` -> `NewObject("SY_Session")`
  -> `nSetUser(user, password)` -> `nSetCompany(company)`; per write: `nSetDate(module, YYYYMMDD)`
  -> `nSetModule(module)` -> `nSetProgram(nLookupTask(<task>_ui))`.
- sales order: `NewObject("SO_SalesOrder_bus", session)` -> `nGetNextSalesOrderNo(byref no)` ->
  `nSetKeyValue("SalesOrderNo$", no)` -> `nSetKey()` (2 = new record) -> header `nSetValue` calls
  (ARDivisionNo$ and CustomerNo$ first: setting the customer loads Sage's defaults) -> per line
  `oLines.nAddLine()`, `oLines.nSetValue(..)`, `oLines.nWrite()` -> read LineKey, ExtensionAmt
  and the header totals back -> `nWrite()`.
- customer: `NewObject("AR_Customer_bus", session)` -> `nSetKeyValue("ARDivisionNo$")`,
  `nSetKeyValue("CustomerNo$")` -> `nSetKey()` (2 new, 1 existing) -> `nSetValue` -> `nWrite()`.

String columns take a `$` suffix, numeric ones none, dates are `YYYYMMDD` strings. Every call
returns 1 (success), -1 (success with a warning: logged with `sLastErrorMsg`) or 0 (failure:
`sLastErrorMsg` says why). A 0 on the session or on getting a number, or a message that says a
record is locked or in use, is `Retriable` (Sage is busy or unavailable; the sink retries with
backoff); a 0 on the data (a column value, a line, the final write) is `Permanent`, naming the
column and value. A COM error (pvxcom.exe gone, Sage not installed) is `Retriable`. After a
failure the business object is `nClear()`ed, so BOI writes nothing of a half-built order: BOI
keeps header and lines in memory until the header's `nWrite()`.

Idempotency is the sink's: it looks the Salesforce ID up (ODBC, read-only) before writing, and
the order carries it in its UDF column, so a redelivered command finds the order.

An order for a customer Sage does not have yet comes with that customer: BOI writes the customer
(AR_Customer_bus) and then the order (SO_SalesOrder_bus), two writes that cannot be one
transaction. When Sage refuses the order for good, the customer just created for it is deleted
again (`nSetKey` + `nDelete`), so a refused order leaves no customer behind.

Limits:
- Runs only on the Windows host of the Sage 100 client, with pywin32 installed and "Allow
  External Access" on; elsewhere constructing the writer raises `BoiUnavailable` (importing this
  module works everywhere, so the connector and its tests import it on Linux).
- Numbers are handed to COM as doubles (VT_R8), which is what BOI's numeric columns take: every
  Sage numeric column has at most 15 significant digits, which a double carries exactly after
  rounding to the column's scale.
- The compensation above is not atomic: if the process dies between the customer's write and
  the order's, or Sage is unreachable then (Retriable), the customer stays, linked to its Account
  by its UDF; the redelivered command finds it and writes the order to it. If Sage refuses the
  order then, that customer is not deleted (it was not created by that attempt), and if
  `nDelete` itself fails, the refusal says so and asks for the customer to be deleted by hand.
  Tested against a scripted stand-in of the COM server only (tests/unit/test_boi_writer.py):
  pvxcom.exe cannot run here.
- Unverified against a live Sage: the `nSetDate` format (YYYYMMDD here, one public client uses
  MMDDYYYY; configurable), and the `nSetKey` return 2/1 meaning new/existing.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from connectors.sage100.writes import (
    ColumnValue,
    CustomerWrite,
    OrderTotals,
    OrderWrite,
    WrittenCustomer,
    WrittenLine,
    WrittenOrder,
)
from sagesf.errors import Permanent, Retriable

log = logging.getLogger(__name__)
T = TypeVar("T")

SUCCESS, WARNING, FAILURE = 1, -1, 0
NEW_RECORD = 2
_LOCKED = re.compile(r"in use|lock|being accessed|busy|timed? ?out|try again", re.IGNORECASE)
_TOTALS = ("TaxableAmt", "NonTaxableAmt", "SalesTaxAmt", "FreightAmt", "DiscountAmt")


class BoiUnavailable(RuntimeError):
    """This host cannot run BOI (not Windows, no pywin32, no Sage 100 client)."""


class BoiFailure(Permanent):
    """A BOI call returned 0 on the data: Sage refuses it as it is. `call` names the method."""

    def __init__(self, call: str, message: str, *, field: str | None = None, value: object = None) -> None:
        target = f" {field}={value!r}" if field is not None else ""
        super().__init__(f"Sage BOI {call}{target} failed: {message}", field=field, value=value)
        self.call = call
        self.message = message


class BoiBusy(Retriable):
    """A BOI call failed for a reason that passes (session, next number, a locked record)."""


class ComRuntime(Protocol):
    """The slice of pywin32 the writer uses; tests pass a scripted stand-in."""

    def dispatch(self, prog_id: str) -> Any: ...

    def out_string(self) -> Any:
        """A by-reference string argument; its `.value` holds what the call wrote."""
        ...

    def out_number(self) -> Any:
        """A by-reference numeric argument; its `.value` holds what the call wrote."""
        ...

    def is_com_error(self, exc: BaseException) -> bool: ...


class Win32ComRuntime:
    """pywin32 (win32com.client.Dispatch, pythoncom.VARIANT by-ref holders)."""

    def __init__(self) -> None:
        try:
            self._client = importlib.import_module("win32com.client")
            self._pythoncom = importlib.import_module("pythoncom")
            self._pywintypes = importlib.import_module("pywintypes")
        except ImportError as exc:
            raise BoiUnavailable(
                "the 'boi' Sage writer needs Windows with pywin32 and the Sage 100 client installed "
                "(COM server ProvideX.Script); this host has none. Run the Sage connector on the Sage "
                "host, or set the writer backend to 'odbc' for the sandbox and SQL-backed installs."
            ) from exc

    def dispatch(self, prog_id: str) -> Any:
        return self._client.Dispatch(prog_id)

    def out_string(self) -> Any:
        pc = self._pythoncom
        return pc.VARIANT(pc.VT_BYREF | pc.VT_BSTR, "")

    def out_number(self) -> Any:
        pc = self._pythoncom
        return pc.VARIANT(pc.VT_BYREF | pc.VT_R8, 0.0)

    def is_com_error(self, exc: BaseException) -> bool:
        return isinstance(exc, self._pywintypes.com_error)


@dataclass(frozen=True)
class BoiSettings:
    """Where and as whom BOI logs in. `password` is only ever passed to nSetUser, never logged."""

    home_path: str  # the MAS90\Home folder of the Sage 100 client
    user: str
    password: str = field(repr=False)  # never in a repr or log line
    company: str  # company code, e.g. ABC
    date_format: str = "%Y%m%d"  # for nSetDate; unverified, see the module doc


class BoiSageWriter:
    """Writes sales orders and customers through BOI; one COM session per writer."""

    backend = "boi"

    def __init__(
        self,
        settings: BoiSettings,
        *,
        order_udf: str = "UDF_SALESFORCE_ID",
        runtime: ComRuntime | None = None,
        today: Callable[[], date] = date.today,
        find_existing_order: Callable[[str], WrittenOrder | None] | None = None,
    ) -> None:
        self.settings = settings
        self.order_udf = order_udf
        self.runtime: ComRuntime = runtime if runtime is not None else Win32ComRuntime()
        self.today = today
        self.find_existing_order = find_existing_order
        self._script: Any = None
        self._session: Any = None

    # --- the two writes -------------------------------------------------------------------

    def create_sales_order(
        self, order: OrderWrite, new_customer: CustomerWrite | None = None
    ) -> WrittenOrder:
        """The order, and first its new customer when it brings one. BOI writes each business
        object on its own, so the two cannot be one unit: when Sage refuses the order, the customer
        created for it is deleted again (`nDelete`); see the module doc for what that leaves."""
        if self.find_existing_order is not None:
            existing = self.find_existing_order(order.salesforce_id)
            if existing is not None:
                return existing
        if new_customer is None:
            return self._com(lambda: self._create_sales_order(order))
        customer = self.upsert_customer(new_customer)
        order = replace(order, ar_division_no=customer.ar_division_no, customer_no=customer.customer_no)
        try:
            written = self._com(lambda: self._create_sales_order(order))
        except Permanent as refused:
            raise self._undo_customer(customer, refused) from refused
        return replace(written, customer_created=customer.created)

    def upsert_customer(self, customer: CustomerWrite) -> WrittenCustomer:
        return self._com(lambda: self._upsert_customer(customer))

    def update_item(self, item_code: str, columns: Mapping[str, ColumnValue]) -> None:
        self._com(lambda: self._update_item(item_code, columns))

    def close(self) -> None:
        session, self._session, self._script = self._session, None, None
        if session is not None:
            try:
                session.nCleanup()
                session.DropObject()
            except Exception as exc:  # noqa: BLE001 - closing a dead COM session must not raise
                log.warning("Sage BOI session cleanup failed: %s", exc)

    # --- sales order ----------------------------------------------------------------------

    def _create_sales_order(self, order: OrderWrite) -> WrittenOrder:
        session = self._prepare("S/O", "SO_SalesOrder_ui")
        so = self._script.NewObject("SO_SalesOrder_bus", session)
        try:
            number = self.runtime.out_string()
            self._busy_check(so, "nGetNextSalesOrderNo", self._out(so.nGetNextSalesOrderNo(number), number))
            sales_order_no = str(number.value)
            self._check(so, "nSetKeyValue", so.nSetKeyValue("SalesOrderNo$", sales_order_no), "SalesOrderNo")
            key = so.nSetKey()
            if key == SUCCESS:  # an existing order: Sage's next number is behind; take the next one
                raise BoiBusy(f"Sage BOI nSetKey: SalesOrderNo {sales_order_no!r} already exists")
            if key != NEW_RECORD:
                self._busy_check(so, "nSetKey", key)
            self._set(so, "ARDivisionNo", order.ar_division_no)
            self._set(so, "CustomerNo", order.customer_no)
            self._set(so, "OrderDate", order.order_date)
            self._set(so, "OrderType", order.order_type)
            for column, value in order.header.items():
                self._set(so, column, value)
            for name, amount in (
                ("FreightAmt", order.totals.freight_amt),
                ("DiscountAmt", order.totals.discount_amt),
            ):
                if amount:
                    self._set(so, name, amount)
            self._set(so, self.order_udf, order.salesforce_id)
            lines = so.oLines
            written: list[WrittenLine] = []
            for line in order.lines:
                self._check(lines, "oLines.nAddLine", lines.nAddLine(), f"lines[{line.line_no}]")
                self._set(lines, "ItemCode", line.item_code, line=line.line_no)
                self._set(lines, "WarehouseCode", line.warehouse_code, line=line.line_no)
                self._set(lines, "QuantityOrdered", line.quantity_ordered, line=line.line_no)
                self._set(lines, "UnitPrice", line.unit_price, line=line.line_no)
                if line.comment_text:
                    self._set(lines, "CommentText", line.comment_text, line=line.line_no)
                self._check(lines, "oLines.nWrite", lines.nWrite(), f"lines[{line.line_no}]", line.item_code)
                line_key = self._get_string(lines, "LineKey")
                extension = self._get_number(lines, "ExtensionAmt", places=2)
                written.append(
                    WrittenLine(line.line_no, line_key, line.item_code, extension, line.salesforce_line_id)
                )
            totals = OrderTotals(*(self._get_number(so, name, places=2) for name in _TOTALS))
            status = self._get_string(so, "OrderStatus") or "N"
            self._check(so, "nWrite", so.nWrite())
        except BaseException:
            _clear(so)
            raise
        finally:
            _drop(so)
        log.info("Sage BOI wrote sales order %s (%d lines)", sales_order_no, len(written))
        return WrittenOrder(
            sales_order_no, status, order.ar_division_no, order.customer_no, totals, tuple(written), True
        )

    # --- customer -------------------------------------------------------------------------

    def _upsert_customer(self, customer: CustomerWrite) -> WrittenCustomer:
        with self._business_object("A/R", "AR_Customer_ui", "AR_Customer_bus") as obj:
            self._check(
                obj,
                "nSetKeyValue",
                obj.nSetKeyValue("ARDivisionNo$", customer.ar_division_no),
                "ARDivisionNo",
            )
            self._check(
                obj, "nSetKeyValue", obj.nSetKeyValue("CustomerNo$", customer.customer_no), "CustomerNo"
            )
            key = obj.nSetKey()
            if key == FAILURE:
                self._check(obj, "nSetKey", key, "CustomerNo", customer.customer_no)
            if customer.create and key != NEW_RECORD:
                # the number was taken between choosing it and writing: choose again
                raise BoiBusy(f"Sage BOI nSetKey: CustomerNo {customer.customer_no!r} already exists")
            if not customer.create and key == NEW_RECORD:
                raise Permanent(
                    f"customer {customer.ar_division_no}-{customer.customer_no} no longer exists in Sage",
                    field="CustomerNo",
                    value=customer.customer_no,
                )
            self._write(obj, customer.columns)
        return WrittenCustomer(customer.ar_division_no, customer.customer_no, customer.create)

    def _update_item(self, item_code: str, columns: Mapping[str, ColumnValue]) -> None:
        """Set `columns` of an existing item through CI_ItemCode_bus (unverified against a live
        Sage: the business object and task names follow Sage's CI_ItemCode naming)."""
        with self._business_object("C/I", "CI_ItemCode_ui", "CI_ItemCode_bus") as obj:
            self._check(obj, "nSetKeyValue", obj.nSetKeyValue("ItemCode$", item_code), "ItemCode")
            key = obj.nSetKey()
            if key == FAILURE:
                self._check(obj, "nSetKey", key, "ItemCode", item_code)
            if key == NEW_RECORD:
                raise Permanent(
                    f"ItemCode {item_code!r} no longer exists in CI_Item", field="ItemCode", value=item_code
                )
            self._write(obj, columns)

    @contextmanager
    def _business_object(self, module: str, task: str, name: str) -> Iterator[Any]:
        """A new business object `name` of a session prepared for `task`: cleared when the work
        fails, dropped always."""
        session = self._prepare(module, task)  # opens the session, and the script with it
        obj = self._script.NewObject(name, session)
        try:
            yield obj
        except BaseException:
            _clear(obj)
            raise
        finally:
            _drop(obj)

    def _write(self, obj: Any, columns: Mapping[str, ColumnValue]) -> None:
        for column, value in columns.items():
            self._set(obj, column, value)
        self._check(obj, "nWrite", obj.nWrite())

    def _undo_customer(self, customer: WrittenCustomer, refused: Permanent) -> Permanent:
        """Delete the customer created for an order Sage refused; the refusal to raise, saying so
        when the customer could not be deleted (an operator must then remove it)."""
        if not customer.created:
            return refused
        key = f"{customer.ar_division_no}-{customer.customer_no}"
        try:
            self._com(lambda: self._delete_customer(customer))
        except (Permanent, Retriable) as exc:
            log.error("customer %s, created for an order Sage refused, could not be deleted: %s", key, exc)
            note = f"customer {key}, made for this order, could not be deleted ({exc}): delete it in Sage"
            if isinstance(refused, BoiFailure):
                return BoiFailure(
                    refused.call, f"{refused.message}; {note}", field=refused.field, value=refused.value
                )
            return Permanent(f"{refused.reason}; {note}", field=refused.field, value=refused.value)
        log.info("customer %s, created for an order Sage refused, deleted again", key)
        return refused

    def _delete_customer(self, customer: WrittenCustomer) -> None:
        session = self._prepare("A/R", "AR_Customer_ui")
        obj = self._script.NewObject("AR_Customer_bus", session)
        try:
            self._check(obj, "nSetKeyValue", obj.nSetKeyValue("ARDivisionNo$", customer.ar_division_no))
            self._check(obj, "nSetKeyValue", obj.nSetKeyValue("CustomerNo$", customer.customer_no))
            key = obj.nSetKey()
            if key == NEW_RECORD:  # gone already
                return
            self._check(obj, "nSetKey", key, "CustomerNo", customer.customer_no)
            self._check(obj, "nDelete", obj.nDelete(), "CustomerNo", customer.customer_no)
        except BaseException:
            _clear(obj)
            raise
        finally:
            _drop(obj)

    # --- session and calls ----------------------------------------------------------------

    def _prepare(self, module: str, task: str) -> Any:
        """The session, logged in and switched to `module` with `task`'s program (retriable on 0)."""
        if self._session is None:
            script = self.runtime.dispatch("ProvideX.Script")
            script.Init(self.settings.home_path)
            session = script.NewObject("SY_Session")
            self._script, self._session = script, session
            try:
                self._busy_check(
                    session, "nSetUser", session.nSetUser(self.settings.user, self.settings.password)
                )
                self._busy_check(session, "nSetCompany", session.nSetCompany(self.settings.company))
            except BaseException:
                self.close()
                raise
        session = self._session
        self._busy_check(
            session, "nSetDate", session.nSetDate(module, self.today().strftime(self.settings.date_format))
        )
        self._busy_check(session, "nSetModule", session.nSetModule(module))
        task_id = session.nLookupTask(task)
        self._busy_check(session, "nSetProgram", session.nSetProgram(task_id))
        return session

    def _com(self, work: Callable[[], T]) -> T:
        """Run BOI work; a COM-level error means Sage is unreachable: drop the session, retry later."""
        try:
            return work()
        except (Permanent, Retriable):
            raise
        except Exception as exc:
            if not self.runtime.is_com_error(exc):
                raise
            self.close()
            raise BoiBusy(f"Sage BOI unavailable: {exc}") from exc

    def _set(self, obj: Any, column: str, value: ColumnValue, *, line: int | None = None) -> None:
        name, arg = _boi_value(column, value)
        call = "nSetValue" if line is None else "oLines.nSetValue"
        field = column if line is None else f"lines[{line}].{column}"
        self._check(obj, call, obj.nSetValue(name, arg), field, value)

    def _get_string(self, obj: Any, column: str) -> str:
        out = self.runtime.out_string()
        self._check(obj, "nGetValue", self._out(obj.nGetValue(column + "$", out), out), column)
        return str(out.value or "").strip()

    def _get_number(self, obj: Any, column: str, places: int) -> Decimal:
        out = self.runtime.out_number()
        self._check(obj, "nGetValue", self._out(obj.nGetValue(column, out), out), column)
        return Decimal(repr(float(out.value or 0))).quantize(Decimal(1).scaleb(-places))

    @staticmethod
    def _out(result: Any, holder: Any) -> int:
        """Return code of a call with a by-ref argument (pywin32 gives (code, value) with makepy)."""
        if isinstance(result, tuple):
            holder.value = result[1]
            return int(result[0])
        return int(result)

    def _check(self, obj: Any, call: str, code: int, field: str | None = None, value: object = None) -> None:
        """1: fine. -1: log Sage's warning. 0: Permanent (or Retriable when Sage says locked)."""
        if code == SUCCESS:
            return
        message = _last_error(obj)
        if code == WARNING:
            log.warning("Sage BOI %s returned a warning: %s", call, message)
            return
        if _LOCKED.search(message):
            raise BoiBusy(f"Sage BOI {call} failed (will retry): {message}")
        raise BoiFailure(call, message, field=field, value=value)

    def _busy_check(self, obj: Any, call: str, code: int) -> None:
        """Like `_check`, but a 0 here means Sage cannot work right now: Retriable."""
        if code == FAILURE:
            raise BoiBusy(f"Sage BOI {call} failed: {_last_error(obj)}")
        self._check(obj, call, code)


def _boi_value(column: str, value: ColumnValue) -> tuple[str, str | float]:
    """BOI's column name and argument: `$` for strings and dates (YYYYMMDD), doubles for numbers."""
    if isinstance(value, Decimal):
        return column, float(value)
    if isinstance(value, date):
        return column + "$", value.strftime("%Y%m%d")
    return column + "$", value


def _last_error(obj: Any) -> str:
    try:
        return str(obj.sLastErrorMsg or "").strip() or "(Sage gave no message)"
    except Exception:  # noqa: BLE001 - the message is a courtesy; the code already said failure
        return "(sLastErrorMsg unreadable)"


def _clear(obj: Any) -> None:
    try:
        obj.nClear()
    except Exception as exc:  # noqa: BLE001 - best effort: BOI discards unwritten data anyway
        log.warning("Sage BOI nClear failed: %s", exc)


def _drop(obj: Any) -> None:
    try:
        obj.DropObject()
    except Exception as exc:  # noqa: BLE001 - best effort
        log.warning("Sage BOI DropObject failed: %s", exc)
