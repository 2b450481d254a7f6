"""What a Sage 100 writer backend is given and what it gives back, whatever the backend.

Owns the validated, Sage-shaped write requests (`OrderWrite` with its `LineWrite`s and
`OrderTotals`, `CustomerWrite`), the answers (`WrittenOrder`, `WrittenCustomer`) and the
`SageWriter` protocol the two backends implement: `SqlSageWriter` (sql_writer.py, backend `odbc`)
and `BoiSageWriter` (boi_writer.py, backend `boi`).

How it works: the sink validates a command against Sage's data and limits first
(validation.py) and builds these requests with Sage's own column names and codes; a writer
only writes. Column values are Python values (`str`, `Decimal`, `date`); each backend converts
them at its own boundary (SQL parameters, or BOI `nSetValue` with the `$` suffix for strings).

Limits: SalesTaxAmt is not computed (Sage computes tax from tax schedules, which the sink does not
model); TaxableAmt/NonTaxableAmt split the line extensions by the line's TaxClass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

ColumnValue = str | Decimal | date
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class LineWrite:
    """One SO_SalesOrderDetail row to write; LineKey and LineSeqNo are the writer's to assign."""

    line_no: int
    salesforce_line_id: str | None
    item_code: str
    item_type: str  # Sage code: 1 regular, 2 special, 3 charge, 4 comment, 5 miscellaneous
    item_code_desc: str
    warehouse_code: str
    unit_of_measure: str
    quantity_ordered: Decimal
    unit_price: Decimal
    unit_cost: Decimal
    extension_amt: Decimal  # quantity x unit price, rounded half-up to cents, as BOI does
    tax_class: str
    comment_text: str | None = None


@dataclass(frozen=True)
class OrderTotals:
    """Header amounts of SO_SalesOrderHeader."""

    taxable_amt: Decimal = ZERO
    non_taxable_amt: Decimal = ZERO
    sales_tax_amt: Decimal = ZERO
    freight_amt: Decimal = ZERO
    discount_amt: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return (
            self.taxable_amt
            + self.non_taxable_amt
            + self.sales_tax_amt
            + self.freight_amt
            - self.discount_amt
        )


@dataclass(frozen=True)
class OrderWrite:
    """A validated sales order: the customer exists, every item and warehouse exists and fits."""

    salesforce_id: str  # kept in the order UDF column; the idempotency key
    ar_division_no: str
    customer_no: str
    order_date: date
    order_type: str  # Sage OrderType code, S standard
    lines: tuple[LineWrite, ...]
    totals: OrderTotals
    header: Mapping[str, ColumnValue] = field(default_factory=dict)  # further columns, Sage names


@dataclass(frozen=True)
class WrittenLine:
    line_no: int
    line_key: str
    item_code: str
    extension_amt: Decimal
    salesforce_line_id: str | None = None


@dataclass(frozen=True)
class WrittenOrder:
    """An order as Sage holds it; `created` is False when it already existed (a redelivery).

    An order Sage moved to history (completed, deleted, invoiced) has its history status, no
    lines and no totals: history keeps neither in the columns the sink reads."""

    sales_order_no: str
    order_status: str  # Sage code: N new, O open, H hold, C closed; history: A active, X/Z deleted
    ar_division_no: str
    customer_no: str
    totals: OrderTotals | None
    lines: tuple[WrittenLine, ...]
    created: bool
    customer_created: bool = False  # the order's customer was created with it (one unit)


@dataclass(frozen=True)
class CustomerWrite:
    """AR_Customer columns to set (Sage names, non-null only) for one customer."""

    ar_division_no: str
    customer_no: str
    salesforce_account_id: str | None
    columns: Mapping[str, ColumnValue]
    create: bool  # True: a new customer (CustomerNo chosen by the numbering scheme)


@dataclass(frozen=True)
class WrittenCustomer:
    ar_division_no: str
    customer_no: str
    created: bool


class SageWriter(Protocol):
    """A writer backend. Raises sagesf.errors.Retriable when Sage is unavailable or a record is
    locked, Permanent when Sage refuses the data for good."""

    backend: str

    def create_sales_order(
        self, order: OrderWrite, new_customer: CustomerWrite | None = None
    ) -> WrittenOrder:
        """Write header and lines as one unit; if an order carrying `order.salesforce_id` already
        exists (open or in history), write nothing and return it (created=False).

        `new_customer` (create=True, validated) is the order's customer, not in Sage yet: it is
        written with the order, so an order Sage refuses leaves no customer behind; when a
        customer carrying its Account ID exists by then, the order goes to that one."""
        ...

    def upsert_customer(self, customer: CustomerWrite) -> WrittenCustomer:
        """Insert (create=True) or update the AR_Customer row."""
        ...

    def update_item(self, item_code: str, columns: Mapping[str, ColumnValue]) -> None:
        """Set `columns` of the existing CI_Item row `item_code` (Permanent when it is gone)."""
        ...

    def close(self) -> None: ...
