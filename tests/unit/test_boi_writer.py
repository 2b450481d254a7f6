"""The `boi` writer drives Sage 100's Business Object Interface in the documented order.

BOI is a Windows COM server that only exists next to a Sage 100 install, so these tests run the
writer against `ScriptedProvideX`, a scripted stand-in for it. That stand-in is the ONE mock
allowed in this project (every other test talks to the real broker, the real ODBC database or
the emulators): it records each COM call and answers with BOI's return codes (1 success,
-1 success with warning, 0 failure) and `sLastErrorMsg` as a test scripts them.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from connectors.sage100.boi_writer import (
    BoiFailure,
    BoiSageWriter,
    BoiSettings,
    BoiUnavailable,
)
from connectors.sage100.writes import CustomerWrite, LineWrite, OrderTotals, OrderWrite
from sagesf.errors import Permanent, Retriable

PASSWORD = "s3cret-boi-pw"
SETTINGS = BoiSettings(home_path=r"C:\Sage\MAS90\Home", user="sagesf", password=PASSWORD, company="ABC")


class FakeComError(Exception):
    """What pywintypes.com_error is to the real runtime."""


@dataclass
class Out:
    """A by-reference argument, like pythoncom.VARIANT(VT_BYREF | ...)."""

    value: Any


@dataclass
class Script:
    """Return codes and messages to give: {"oLines.nSetValue:ItemCode$": (0, "message")}.

    A key is `<object>.<method>` or `<object>.<method>:<first argument>`; the object is
    `session`, `so`, `oLines` or `ar`. Unscripted calls succeed (1)."""

    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    next_order_no: str = "0000124"
    set_key: int = 2
    com_error_on: str | None = None
    # when given, AR_Customer as Sage holds it: `ar.nSetKey` answers from it (1 existing, 2 new)
    # and `ar.nWrite` / `ar.nDelete` change it
    customers: set[tuple[str, str]] | None = None


class ScriptedProvideX:
    """Scripted stand-in for pywin32 + ProvideX.Script (the only mock in the project, see above)."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    # ComRuntime
    def dispatch(self, prog_id: str) -> Any:
        self.calls.append(("Dispatch", (prog_id,)))
        return _Obj(self, "script")

    def out_string(self) -> Out:
        return Out("")

    def out_number(self) -> Out:
        return Out(0.0)

    def is_com_error(self, exc: BaseException) -> bool:
        return isinstance(exc, FakeComError)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class _Obj:
    def __init__(self, px: ScriptedProvideX, kind: str) -> None:
        self._px = px
        self._kind = kind
        self.sLastErrorMsg = ""
        self.values: dict[str, Any] = {}
        self.keys: dict[str, Any] = {}
        self.lines: list[dict[str, Any]] = []
        if kind == "so":
            self.oLines = _Obj(px, "oLines")

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any) -> Any:
            name = f"{self._kind}.{method}"
            self._px.calls.append((name, args))
            if self._px.script.com_error_on == name:
                raise FakeComError("(-2147023174, 'The RPC server is unavailable.')")
            return self._answer(name, method, args)

        return call

    def _answer(self, name: str, method: str, args: tuple[Any, ...]) -> Any:
        script = self._px.script
        if method == "NewObject":
            kind = {"SY_Session": "session", "SO_SalesOrder_bus": "so", "AR_Customer_bus": "ar"}[args[0]]
            return _Obj(self._px, kind)
        if method in ("Init", "DropObject", "nCleanup"):
            return None
        if method == "nLookupTask":
            return f"task:{args[0]}"
        key = f"{name}:{args[0]}" if args else name
        code, message = script.answers.get(key, script.answers.get(name, (1, "")))
        self.sLastErrorMsg = message
        if code == 0:
            return 0
        customers = script.customers if self._kind == "ar" else None
        record = (str(self.keys.get("ARDivisionNo$")), str(self.keys.get("CustomerNo$")))
        if method == "nGetNextSalesOrderNo":
            args[0].value = script.next_order_no
        elif method == "nSetKeyValue":
            self.keys[args[0]] = args[1]
        elif method == "nSetKey" and customers is not None:
            return 1 if record in customers else 2
        elif method == "nSetKey":
            return script.set_key
        elif method == "nWrite" and customers is not None:
            customers.add(record)
        elif method == "nDelete" and customers is not None:
            customers.discard(record)
        elif method == "nSetValue":
            self.values[args[0]] = args[1]
        elif method == "nAddLine":
            self.values = {}
        elif method == "nWrite" and self._kind == "oLines":
            qty, price = Decimal(str(self.values["QuantityOrdered"])), Decimal(str(self.values["UnitPrice"]))
            ext = (qty * price).quantize(Decimal("0.01"), ROUND_HALF_UP)
            self.lines.append({**self.values, "LineKey$": f"{len(self.lines) + 1:06d}", "ExtensionAmt": ext})
        elif method == "nGetValue":
            args[1].value = self._value(args[0])
        return code

    def _value(self, column: str) -> Any:
        if self._kind == "oLines":
            return self.lines[-1][column] if column == "LineKey$" else float(self.lines[-1][column])
        if column == "NonTaxableAmt":
            return float(sum(line["ExtensionAmt"] for line in self.oLines.lines))
        if column == "OrderStatus$":
            return "N"
        return 0.0


def order(*lines: LineWrite) -> OrderWrite:
    return OrderWrite(
        salesforce_id="006000000000001AAA",
        ar_division_no="01",
        customer_no="ABF",
        order_date=date(2025, 3, 7),
        order_type="S",
        lines=lines or (line(1, "1001-HON-H252", "2", "49.95"), line(2, "1001-HON-H253", "1.5", "10.333")),
        totals=OrderTotals(non_taxable_amt=Decimal("115.40"), freight_amt=Decimal("12.50")),
        header={"CustomerPONo": "PO-77", "WarehouseCode": "000"},
    )


def line(no: int, item: str, qty: str, price: str) -> LineWrite:
    q, p = Decimal(qty), Decimal(price)
    return LineWrite(
        line_no=no,
        salesforce_line_id=f"00k00000000000{no}AAA",
        item_code=item,
        item_type="1",
        item_code_desc="desk",
        warehouse_code="000",
        unit_of_measure="EACH",
        quantity_ordered=q,
        unit_price=p,
        unit_cost=Decimal(0),
        extension_amt=(q * p).quantize(Decimal("0.01"), ROUND_HALF_UP),
        tax_class="NT",
    )


def writer(px: ScriptedProvideX, **kw: Any) -> BoiSageWriter:
    return BoiSageWriter(SETTINGS, runtime=px, today=lambda: date(2025, 3, 7), **kw)


def test_sales_order_follows_the_documented_sequence_with_dollar_suffixes():
    px = ScriptedProvideX()
    written = writer(px).create_sales_order(order())

    assert px.calls == [
        ("Dispatch", ("ProvideX.Script",)),
        ("script.Init", (r"C:\Sage\MAS90\Home",)),
        ("script.NewObject", ("SY_Session",)),
        ("session.nSetUser", ("sagesf", PASSWORD)),
        ("session.nSetCompany", ("ABC",)),
        ("session.nSetDate", ("S/O", "20250307")),
        ("session.nSetModule", ("S/O",)),
        ("session.nLookupTask", ("SO_SalesOrder_ui",)),
        ("session.nSetProgram", ("task:SO_SalesOrder_ui",)),
        ("script.NewObject", ("SO_SalesOrder_bus", px.calls[9][1][1])),
        ("so.nGetNextSalesOrderNo", (Out("0000124"),)),
        ("so.nSetKeyValue", ("SalesOrderNo$", "0000124")),
        ("so.nSetKey", ()),
        ("so.nSetValue", ("ARDivisionNo$", "01")),
        ("so.nSetValue", ("CustomerNo$", "ABF")),
        ("so.nSetValue", ("OrderDate$", "20250307")),
        ("so.nSetValue", ("OrderType$", "S")),
        ("so.nSetValue", ("CustomerPONo$", "PO-77")),
        ("so.nSetValue", ("WarehouseCode$", "000")),
        ("so.nSetValue", ("FreightAmt", 12.5)),
        ("so.nSetValue", ("UDF_SALESFORCE_ID$", "006000000000001AAA")),
        ("oLines.nAddLine", ()),
        ("oLines.nSetValue", ("ItemCode$", "1001-HON-H252")),
        ("oLines.nSetValue", ("WarehouseCode$", "000")),
        ("oLines.nSetValue", ("QuantityOrdered", 2.0)),
        ("oLines.nSetValue", ("UnitPrice", 49.95)),
        ("oLines.nWrite", ()),
        ("oLines.nGetValue", ("LineKey$", Out("000001"))),
        ("oLines.nGetValue", ("ExtensionAmt", Out(99.9))),
        ("oLines.nAddLine", ()),
        ("oLines.nSetValue", ("ItemCode$", "1001-HON-H253")),
        ("oLines.nSetValue", ("WarehouseCode$", "000")),
        ("oLines.nSetValue", ("QuantityOrdered", 1.5)),
        ("oLines.nSetValue", ("UnitPrice", 10.333)),
        ("oLines.nWrite", ()),
        ("oLines.nGetValue", ("LineKey$", Out("000002"))),
        ("oLines.nGetValue", ("ExtensionAmt", Out(15.5))),
        ("so.nGetValue", ("TaxableAmt", Out(0.0))),
        ("so.nGetValue", ("NonTaxableAmt", Out(115.4))),
        ("so.nGetValue", ("SalesTaxAmt", Out(0.0))),
        ("so.nGetValue", ("FreightAmt", Out(0.0))),
        ("so.nGetValue", ("DiscountAmt", Out(0.0))),
        ("so.nGetValue", ("OrderStatus$", Out("N"))),
        ("so.nWrite", ()),
        ("so.DropObject", ()),
    ]
    assert written.sales_order_no == "0000124"
    assert written.order_status == "N"
    assert [(w.line_key, w.extension_amt) for w in written.lines] == [
        ("000001", Decimal("99.90")),
        ("000002", Decimal("15.50")),
    ]
    assert written.totals is not None
    assert written.totals.non_taxable_amt == Decimal("115.40")


def test_the_session_is_opened_once_and_switched_per_module():
    px = ScriptedProvideX()
    w = writer(px)
    w.create_sales_order(order())
    w.upsert_customer(customer(create=True))
    assert px.names().count("session.nSetUser") == 1
    assert [args for name, args in px.calls if name == "session.nSetModule"] == [("S/O",), ("A/R",)]
    assert ("session.nLookupTask", ("AR_Customer_ui",)) in px.calls
    assert ("session.nSetDate", ("A/R", "20250307")) in px.calls


def test_a_zero_on_a_line_value_is_permanent_with_sages_message_and_nothing_is_written():
    px = ScriptedProvideX(Script(answers={"oLines.nSetValue:ItemCode$": (0, "Item Code is invalid.")}))
    with pytest.raises(BoiFailure) as failure:
        writer(px).create_sales_order(order())
    assert isinstance(failure.value, Permanent)
    assert failure.value.field == "lines[1].ItemCode"
    assert failure.value.value == "1001-HON-H252"
    assert "Item Code is invalid." in str(failure.value)
    assert "oLines.nSetValue" in str(failure.value)
    names = px.names()
    assert "so.nWrite" not in names
    assert names[-2:] == ["so.nClear", "so.DropObject"]


def test_a_zero_on_the_final_write_is_permanent_and_clears_the_order():
    px = ScriptedProvideX(Script(answers={"so.nWrite": (0, "Customer is on credit hold.")}))
    with pytest.raises(Permanent, match="Customer is on credit hold"):
        writer(px).create_sales_order(order())
    assert px.names()[-2:] == ["so.nClear", "so.DropObject"]


def test_a_locked_record_is_retriable():
    px = ScriptedProvideX(Script(answers={"so.nWrite": (0, "The record is in use by another user.")}))
    with pytest.raises(Retriable, match="in use by another user"):
        writer(px).create_sales_order(order())


def test_a_failed_login_is_retriable_never_shows_the_password_and_is_retried_with_a_new_session(caplog):
    px = ScriptedProvideX(Script(answers={"session.nSetUser": (0, "Invalid password.")}))
    w = writer(px)
    with pytest.raises(Retriable, match="nSetUser failed: Invalid password") as failure:
        w.create_sales_order(order())
    assert PASSWORD not in str(failure.value)
    assert PASSWORD not in caplog.text
    px.script.answers.clear()
    w.create_sales_order(order())
    assert px.names().count("script.Init") == 2


def test_next_number_failure_is_retriable():
    px = ScriptedProvideX(Script(answers={"so.nGetNextSalesOrderNo": (0, "Unable to lock next number.")}))
    with pytest.raises(Retriable):
        writer(px).create_sales_order(order())


def test_minus_one_is_success_with_sages_warning_logged(caplog):
    px = ScriptedProvideX(Script(answers={"so.nWrite": (-1, "Credit limit has been exceeded.")}))
    with caplog.at_level(logging.WARNING, logger="connectors.sage100.boi_writer"):
        written = writer(px).create_sales_order(order())
    assert written.sales_order_no == "0000124"
    assert "so.nClear" not in px.names()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "nWrite" in warning.getMessage()
    assert "Credit limit has been exceeded." in warning.getMessage()


def test_a_com_error_means_sage_is_unavailable_retriable_and_the_session_is_rebuilt():
    px = ScriptedProvideX(Script(com_error_on="so.nWrite"))
    w = writer(px)
    with pytest.raises(Retriable, match="unavailable"):
        w.create_sales_order(order())
    px.script.com_error_on = None
    w.create_sales_order(order())
    assert px.names().count("Dispatch") == 2


def test_existing_order_found_by_salesforce_id_is_returned_without_any_boi_call():
    px = ScriptedProvideX()
    first = writer(px).create_sales_order(order())
    px.calls.clear()
    found = writer(px, find_existing_order=lambda sf_id: first if sf_id == "006000000000001AAA" else None)
    assert found.create_sales_order(order()) is first
    assert px.calls == []


def customer(create: bool) -> CustomerWrite:
    return CustomerWrite(
        ar_division_no="01",
        customer_no="SF00042",
        salesforce_account_id="001000000000042AAA",
        columns={
            "CustomerName": "Acme Ltd",
            "CreditLimit": Decimal("5000.00"),
            "UDF_SALESFORCE_ID": "001000000000042AAA",
        },
        create=create,
    )


def test_new_customer_sequence():
    px = ScriptedProvideX()
    written = writer(px).upsert_customer(customer(create=True))
    i = px.names().index("script.NewObject", 3)
    assert px.calls[i][1][0] == "AR_Customer_bus"
    assert px.calls[i + 1 :] == [
        ("ar.nSetKeyValue", ("ARDivisionNo$", "01")),
        ("ar.nSetKeyValue", ("CustomerNo$", "SF00042")),
        ("ar.nSetKey", ()),
        ("ar.nSetValue", ("CustomerName$", "Acme Ltd")),
        ("ar.nSetValue", ("CreditLimit", 5000.0)),
        ("ar.nSetValue", ("UDF_SALESFORCE_ID$", "001000000000042AAA")),
        ("ar.nWrite", ()),
        ("ar.DropObject", ()),
    ]
    assert written.created
    assert written.customer_no == "SF00042"


def test_new_customer_whose_number_got_taken_is_retriable_and_not_overwritten():
    px = ScriptedProvideX(Script(set_key=1))
    with pytest.raises(Retriable, match="already exists"):
        writer(px).upsert_customer(customer(create=True))
    assert "ar.nSetValue" not in px.names()
    assert "ar.nWrite" not in px.names()


def test_update_of_a_customer_gone_from_sage_is_permanent():
    px = ScriptedProvideX(Script(set_key=2))
    with pytest.raises(Permanent, match="no longer exists"):
        writer(px).upsert_customer(customer(create=False))


def test_a_bad_customer_value_names_the_column():
    px = ScriptedProvideX(Script(answers={"ar.nSetValue:CustomerName$": (0, "Invalid characters.")}))
    with pytest.raises(Permanent) as failure:
        writer(px).upsert_customer(customer(create=True))
    assert failure.value.field == "CustomerName"
    assert failure.value.value == "Acme Ltd"


@pytest.mark.skipif(importlib.util.find_spec("win32com") is not None, reason="pywin32 is installed here")
def test_on_linux_the_writer_imports_but_refuses_to_start_with_a_clear_error():
    with pytest.raises(BoiUnavailable, match=r"Windows with pywin32.*'odbc'"):
        BoiSageWriter(SETTINGS)


# --- an order that brings its new customer ---------------------------------------------------


def test_an_order_with_a_new_customer_writes_the_customer_then_the_order_on_it():
    px = ScriptedProvideX(Script(customers=set()))
    written = writer(px).create_sales_order(order(), new_customer=customer(create=True))

    assert px.script.customers == {("01", "SF00042")}
    assert ("so.nSetValue", ("CustomerNo$", "SF00042")) in px.calls
    assert px.names().index("ar.nWrite") < px.names().index("so.nWrite")
    assert (written.customer_no, written.created, written.customer_created) == ("SF00042", True, True)


def test_an_order_sage_refuses_deletes_the_customer_created_for_it():
    px = ScriptedProvideX(Script(customers=set(), answers={"so.nWrite": (0, "Customer is on credit hold.")}))
    with pytest.raises(BoiFailure, match="Customer is on credit hold"):
        writer(px).create_sales_order(order(), new_customer=customer(create=True))

    assert px.script.customers == set()  # the refused order left no customer behind
    deleting = px.calls[px.names().index("so.nWrite") :]
    assert [c for c in deleting if c[0].startswith("ar.")] == [
        ("ar.nSetKeyValue", ("ARDivisionNo$", "01")),
        ("ar.nSetKeyValue", ("CustomerNo$", "SF00042")),
        ("ar.nSetKey", ()),
        ("ar.nDelete", ()),
        ("ar.DropObject", ()),
    ]


def test_a_customer_that_cannot_be_deleted_again_is_named_in_the_refusal():
    answers = {"so.nWrite": (0, "Customer is on credit hold."), "ar.nDelete": (0, "Customer has history.")}
    px = ScriptedProvideX(Script(customers=set(), answers=answers))
    with pytest.raises(Permanent) as refusal:
        writer(px).create_sales_order(order(), new_customer=customer(create=True))

    assert "Customer is on credit hold." in str(refusal.value)
    assert "customer 01-SF00042, made for this order, could not be deleted" in str(refusal.value)
    assert "Customer has history." in str(refusal.value)
    assert px.script.customers == {("01", "SF00042")}


def test_a_customer_stays_when_sage_is_busy_for_the_order_and_the_retry_finds_it():
    px = ScriptedProvideX(Script(customers=set(), answers={"so.nWrite": (0, "The record is in use.")}))
    with pytest.raises(Retriable):
        writer(px).create_sales_order(order(), new_customer=customer(create=True))

    assert px.script.customers == {("01", "SF00042")}  # the limit the module doc states
    assert "ar.nDelete" not in px.names()
