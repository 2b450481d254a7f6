"""Checks a Sage command against Sage's data and limits, and shapes it into a write request.

Owns the rules the sink applies before anything is written (ARCHITECTURE: referential integrity
is checked before writing):
- every line has an ItemCode that exists in CI_Item and is not inactive (InactiveItem 'Y'), a
  quantity > 0 and a unit price >= 0; its warehouse (line, else order, else the item's
  DefaultWarehouseCode) exists in IM_Warehouse; an order has at least one line;
- the header's TermsCode exists in AR_TermsCode, a new customer's ARDivisionNo in AR_Division;
- a customer (or item) is written with exactly the columns its command names (the processors
  computed them from the mappings): each exists in the table, is not a key or the link UDF, and
  its text is a value of the column's kind; a command without columns is refused (`NO_COLUMNS`);
- every text fits its Sage column's length and the Windows code page, every number its column's
  N<precision>.<scale> (connectors/sage100/values.value_problem over tables.py's layouts).
A failure raises `Permanent` whose reason names the field (Sage column, with `lines[<line_no>].`
for a line) and the value, e.g. `lines[2].ItemCode 'WIDGET-9' does not exist in CI_Item`.

How it works: it reads what it checks through `SageReads` (reads.py) and builds an `OrderWrite`
or `CustomerWrite` (writes.py) with Sage's column names and codes: ExtensionAmt = quantity x unit
price rounded half-up to cents (as BOI does), TaxableAmt/NonTaxableAmt split the extensions by
the item's TaxClass (taxable classes configurable, TX by default), description, unit of measure,
unit cost and item type come from CI_Item when the command does not say.

Limits: sales tax is not computed (SalesTaxAmt 0: Sage computes it from tax schedules at
invoicing); country codes are passed through as given (mappings convert ISO to Sage codes before
the command is made); customer status codes other than A (active) are configuration, unverified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from connectors.sage100.reads import CustomerRow, SageReads
from connectors.sage100.tables import TABLES, Column, ColumnKind, Table
from connectors.sage100.values import to_decimal, value_problem
from connectors.sage100.writes import ColumnValue, CustomerWrite, LineWrite, OrderTotals, OrderWrite
from sagesf.errors import Permanent

CENT = Decimal("0.01")
V = TypeVar("V", str, Decimal)

ORDER_TYPES = {
    "STANDARD": "S",
    "BACK_ORDER": "B",
    "QUOTE": "Q",
    "MASTER": "M",
    "REPEATING": "R",
    "PROSPECT_QUOTE": "P",
}
ITEM_TYPES = {"REGULAR": "1", "SPECIAL": "2", "CHARGE": "3", "COMMENT": "4", "MISCELLANEOUS": "5"}

# canonical Address field -> Sage column suffix, for the order header (BillToAddress1, BillToCity...)
_ORDER_ADDRESS = {
    "name": "Name",
    "line1": "Address1",
    "line2": "Address2",
    "line3": "Address3",
    "city": "City",
    "state": "State",
    "postal_code": "ZipCode",
    "country_code": "CountryCode",
}
# why a command without `columns` is refused (written by processors before the field existed)
NO_COLUMNS = (
    "the command carries no AR_Customer columns: it was written by a processors version before "
    "mappings decided the columns; replay the Account change through the processors (sagesf "
    "reconcile repairs it, or edit the Account)"
)


@dataclass(frozen=True)
class ValidationRules:
    """The configurable parts of the checks."""

    default_division: str = "01"
    taxable_classes: frozenset[str] = frozenset({"TX"})
    # canonical CustomerStatus -> AR_Customer.CustomerStatus; statuses not listed are not written
    customer_status_codes: Mapping[str, str] = field(default_factory=lambda: {"ACTIVE": "A", "INACTIVE": "I"})
    order_udf: str = "UDF_SALESFORCE_ID"
    customer_udf: str = "UDF_SALESFORCE_ID"


class CommandValidator:
    """Turns canonical SalesOrder / Customer records into checked Sage write requests."""

    def __init__(
        self,
        reads: SageReads,
        rules: ValidationRules | None = None,
        tables: Mapping[str, Table] | None = None,
    ) -> None:
        self.reads = reads
        self.rules = rules or ValidationRules()
        tables = tables or TABLES
        self.customer_table = tables["AR_Customer"]
        self.header_table = tables["SO_SalesOrderHeader"]
        self.detail_table = tables["SO_SalesOrderDetail"]
        self.item_table = tables["CI_Item"]

    # --- sales orders --------------------------------------------------------------------

    def order(self, order: Mapping[str, Any], salesforce_id: str) -> Callable[[str, str], OrderWrite]:
        """Check the order (not its customer); returns a function that binds it to a customer.

        Everything that does not depend on the customer is checked here, before the sink creates
        a missing customer, so a bad order never leaves a new customer behind."""
        self._fits(self.header_table, self.rules.order_udf, salesforce_id, "salesforce_id")
        lines_in = order.get("lines") or []
        if not lines_in:
            raise Permanent("the order has no lines", field="lines", value=[])
        header_warehouse = _text(order.get("warehouse_code"))
        if header_warehouse is not None:
            self._fits(self.header_table, "WarehouseCode", header_warehouse)
            self._warehouse(header_warehouse, "WarehouseCode")
        lines = tuple(self._line(line, i, header_warehouse) for i, line in enumerate(lines_in, start=1))
        header = self._header(order)
        order_date = order.get("order_date")
        if not isinstance(order_date, date):
            raise Permanent("the order has no order_date", field="OrderDate", value=order_date)
        order_type = ORDER_TYPES.get(str(order.get("order_type") or "STANDARD"))
        if order_type is None:
            raise Permanent("unknown order_type", field="OrderType", value=order.get("order_type"))
        totals = self._totals(order, lines)

        def bind(ar_division_no: str, customer_no: str) -> OrderWrite:
            return OrderWrite(
                salesforce_id=salesforce_id,
                ar_division_no=ar_division_no,
                customer_no=customer_no,
                order_date=order_date,
                order_type=order_type,
                lines=lines,
                totals=totals,
                header=header,
            )

        return bind

    def _line(self, line: Mapping[str, Any], position: int, header_warehouse: str | None) -> LineWrite:
        line_no = int(line.get("line_no") or position)
        at = f"lines[{line_no}]."
        item_code = _text(line.get("item_code"))
        if item_code is None:
            product = line.get("product_code")
            raise Permanent(
                f"{at}ItemCode is missing (product_code {product!r} has no Sage item)",
                field=at + "ItemCode",
                value=product,
            )
        self._fits(self.detail_table, "ItemCode", item_code, at + "ItemCode")
        item = self.reads.item(item_code)
        if item is None:
            raise Permanent(
                f"{at}ItemCode {item_code!r} does not exist in CI_Item",
                field=at + "ItemCode",
                value=item_code,
            )
        if item.inactive:
            raise Permanent(f"{at}ItemCode {item_code!r} is inactive", field=at + "ItemCode", value=item_code)
        quantity = self._number(line.get("quantity_ordered"), "QuantityOrdered", at)
        if quantity <= 0:
            raise Permanent(
                f"{at}QuantityOrdered {quantity} must be greater than 0",
                field=at + "QuantityOrdered",
                value=str(quantity),
            )
        price = self._number(line.get("unit_price"), "UnitPrice", at)
        if price < 0:
            raise Permanent(f"{at}UnitPrice {price} is negative", field=at + "UnitPrice", value=str(price))
        extension = (quantity * price).quantize(CENT, rounding=ROUND_HALF_UP)
        self._fits(self.detail_table, "ExtensionAmt", extension, at + "ExtensionAmt")
        warehouse = _text(line.get("warehouse_code")) or header_warehouse or item.default_warehouse_code
        if not warehouse:
            raise Permanent(
                f"{at}WarehouseCode is missing: neither the line, the order nor item {item_code!r} names one",
                field=at + "WarehouseCode",
            )
        if warehouse != header_warehouse:
            self._fits(self.detail_table, "WarehouseCode", warehouse, at + "WarehouseCode")
            self._warehouse(warehouse, at + "WarehouseCode")
        description = _text(line.get("description")) or item.description
        unit = _text(line.get("unit_of_measure")) or item.unit_of_measure
        comment = _text(line.get("comment_text"))
        for column, value in (
            ("ItemCodeDesc", description),
            ("UnitOfMeasure", unit),
            ("CommentText", comment),
        ):
            if value is not None:
                self._fits(self.detail_table, column, value, at + column)
        line_type = line.get("item_type")
        item_type = ITEM_TYPES.get(str(line_type)) if line_type else item.item_type
        return LineWrite(
            line_no=line_no,
            salesforce_line_id=_text(line.get("salesforce_line_id")),
            item_code=item_code,
            item_type=item_type or "1",
            item_code_desc=description,
            warehouse_code=warehouse,
            unit_of_measure=unit,
            quantity_ordered=quantity,
            unit_price=price,
            unit_cost=item.unit_cost,
            extension_amt=extension,
            tax_class=item.tax_class,
            comment_text=comment,
        )

    def _header(self, order: Mapping[str, Any]) -> dict[str, ColumnValue]:
        header: dict[str, ColumnValue] = {}
        for source, column in (
            ("customer_po_no", "CustomerPONo"),
            ("ship_via", "ShipVia"),
            ("fob", "FOB"),
            ("warehouse_code", "WarehouseCode"),
            ("terms_code", "TermsCode"),
            ("tax_schedule", "TaxSchedule"),
        ):
            value = _text(order.get(source))
            if value is not None:
                header[column] = self._fits(self.header_table, column, value)
        terms = header.get("TermsCode")
        if isinstance(terms, str) and not self.reads.terms_code_exists(terms):
            raise Permanent(
                f"TermsCode {terms!r} does not exist in AR_TermsCode", field="TermsCode", value=terms
            )
        for prefix, key in (("BillTo", "bill_to"), ("ShipTo", "ship_to")):
            address = order.get(key)
            if not isinstance(address, Mapping):
                continue
            for source, suffix in _ORDER_ADDRESS.items():
                value = _text(address.get(source))
                if value is not None:
                    header[prefix + suffix] = self._fits(self.header_table, prefix + suffix, value)
            code = _text(address.get("code"))
            if prefix == "ShipTo" and code is not None:
                header["ShipToCode"] = self._fits(self.header_table, "ShipToCode", code)
        return header

    def _totals(self, order: Mapping[str, Any], lines: tuple[LineWrite, ...]) -> OrderTotals:
        taxable = sum(
            (ln.extension_amt for ln in lines if ln.tax_class in self.rules.taxable_classes), Decimal(0)
        )
        non_taxable = sum((ln.extension_amt for ln in lines), Decimal(0)) - taxable
        amounts: dict[str, Decimal] = {}
        for source, column in (("freight_amount", "FreightAmt"), ("discount_amount", "DiscountAmt")):
            value = to_decimal(order.get(source), 2) or Decimal("0.00")
            if value < 0:
                raise Permanent(f"{column} {value} is negative", field=column, value=str(value))
            amounts[column] = self._fits(self.header_table, column, value)
        totals = OrderTotals(
            taxable_amt=self._fits(self.header_table, "TaxableAmt", taxable.quantize(CENT)),
            non_taxable_amt=self._fits(self.header_table, "NonTaxableAmt", non_taxable.quantize(CENT)),
            freight_amt=amounts["FreightAmt"],
            discount_amt=amounts["DiscountAmt"],
        )
        return totals

    # --- customers -----------------------------------------------------------------------

    def customer(
        self,
        customer: Mapping[str, Any],
        existing: CustomerRow | None,
        number: tuple[str, str] | None,
        columns: Mapping[str, str] | None,
    ) -> CustomerWrite:
        """The AR_Customer write for `customer`: an update of `existing`, or a new customer numbered
        `number` (ARDivisionNo, CustomerNo). It writes exactly `columns` (the command's, from the
        mappings; None: refused, `NO_COLUMNS`), each converted to its column's kind and checked,
        plus CustomerStatus from the customer's status unless the columns name it."""
        if columns is None:
            raise Permanent(NO_COLUMNS, field="columns")
        reserved = {*self.customer_table.key, self.rules.customer_udf}
        written = self.columns(self.customer_table, columns, reserved)
        status = self.rules.customer_status_codes.get(str(customer.get("status")))
        if status is not None:
            written.setdefault("CustomerStatus", status)
        terms = written.get("TermsCode")
        if isinstance(terms, str) and not self.reads.terms_code_exists(terms):
            raise Permanent(
                f"TermsCode {terms!r} does not exist in AR_TermsCode", field="TermsCode", value=terms
            )
        account = _text(customer.get("salesforce_account_id"))
        if account is not None:
            self._fits(self.customer_table, self.rules.customer_udf, account, "salesforce_account_id")
        if existing is not None:
            return CustomerWrite(
                existing.ar_division_no, existing.customer_no, account, written, create=False
            )
        if number is None:
            raise ValueError("a new customer needs a number")
        if not written.get("CustomerName"):
            raise Permanent("a new customer needs a name", field="CustomerName", value=customer.get("name"))
        division, customer_no = number
        self._fits(self.customer_table, "ARDivisionNo", division)
        self._fits(self.customer_table, "CustomerNo", customer_no)
        if not self.reads.division_exists(division):
            raise Permanent(
                f"ARDivisionNo {division!r} does not exist in AR_Division",
                field="ARDivisionNo",
                value=division,
            )
        return CustomerWrite(division, customer_no, account, written, create=True)

    def item(self, columns: Mapping[str, str]) -> dict[str, ColumnValue]:
        """The CI_Item columns of an UpdateItem, converted and checked (the key is not writable)."""
        return self.columns(self.item_table, columns, set(self.item_table.key))

    def columns(self, table: Table, given: Mapping[str, str], reserved: set[str]) -> dict[str, ColumnValue]:
        """`given` (Sage column -> text, from a command) as values of `table`'s columns: N columns
        as decimals, date columns as dates (YYYY-MM-DD), text as it is, each checked to fit.
        Permanent naming the column for one the table does not have, one the sink writes itself
        (`reserved`: keys, the identity UDF), or a text that is no value of the column's kind."""
        out: dict[str, ColumnValue] = {}
        for name, text in given.items():
            where = name
            if name in reserved:
                raise Permanent(
                    f"{table.name}.{name} is the sink's own (key or link); a mapping cannot write it",
                    field=where,
                    value=text,
                )
            if not table.has(name):
                raise Permanent(
                    f"{table.name} has no column {name} (the mapping names it; add the UDF in Sage "
                    "and to SAGESF_SAGE100__UDF_COLUMNS, or fix the mapping)",
                    field=where,
                    value=text,
                )
            value = _column_value(table.column(name), text, where)
            self._check(table, name, value, where)
            out[name] = value
        return out

    # --- checks --------------------------------------------------------------------------

    def _warehouse(self, code: str, where: str) -> None:
        if not self.reads.warehouse_exists(code):
            raise Permanent(f"{where} {code!r} does not exist in IM_Warehouse", field=where, value=code)

    def _number(self, value: object, column: str, at: str = "") -> Decimal:
        try:
            number = to_decimal(value)
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise Permanent(f"{at}{column} is missing or not a number", field=at + column, value=value)
        table = self.detail_table if self.detail_table.has(column) else self.customer_table
        return self._fits(table, column, number, at + column)

    def _fits(self, table: Table, column: str, value: V, where: str | None = None) -> V:
        """`value` if it fits `table.column`; Permanent naming `where` (default: the column)."""
        self._check(table, column, value, where or column)
        return value

    def _check(self, table: Table, column: str, value: ColumnValue, where: str) -> None:
        col = table.column(column)
        problem = value_problem(col, value)
        if problem is None and col.kind is ColumnKind.TEXT and any(ch < " " for ch in str(value)):
            problem = f"{column}={value!r} holds a control character, which Sage does not store"
        if problem is not None:
            raise Permanent(f"{where}: {problem}", field=where, value=value)


def _column_value(column: Column, text: str, where: str) -> ColumnValue:
    """A command's text for `column` as the value the writers take (Decimal, date or text)."""
    try:
        if column.kind is ColumnKind.DECIMAL:
            number = to_decimal(text)
            if number is None:
                raise ValueError(text)
            return number
        if column.kind is ColumnKind.DATE:
            return date.fromisoformat(text)
    except (TypeError, ValueError, ArithmeticError):
        raise Permanent(
            f"{where}: {text!r} is not a value of {column.name} ({column.kind.value})",
            field=where,
            value=text,
        ) from None
    return text


def _text(value: object) -> str | None:
    """A canonical text value as written to Sage: stripped, None when blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
