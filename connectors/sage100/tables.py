"""The Sage 100 table layouts the connector reads and writes: Sage's names, keys, lengths, formats.

Owns the one description of the Sage 100 tables sagesf touches (AR_Customer, AR_CustomerContact,
CI_Item, IM_ItemWarehouse, SO_SalesOrderHeader, SO_SalesOrderDetail, SO_SalesOrderHistoryHeader,
AR_InvoiceHistoryHeader, the SO_Options next-number counter and the lookup tables AR_Division,
IM_Warehouse, AR_TermsCode):
column names exactly as Sage's data dictionary spells them, the key columns in key order, string
lengths, numeric precision and scale, and which columns are dates and decimal-hour times.
Everything else derives from it: the SQL the dialect layer builds (only these validated names are
ever put into SQL text), value conversion (sage100.values), the sink's length and precision checks,
and the sandbox database, which creates its tables from these layouts.

How it works: a `Table` is a frozen tuple of `Column`s, key columns first. Every table carries
Sage's six audit columns (DateCreated, TimeCreated, UserCreatedKey, DateUpdated, TimeUpdated,
UserUpdatedKey). User-defined fields (Custom Office `UDF_` columns) differ per installation, so
`Table.with_udfs()` adds the configured ones; `layouts(udf_columns)` gives every table with its
UDFs.

Limits: lengths follow the older (v4.x) file layouts where newer releases widened a column
(CustomerName 30 rather than 50, AddressLine 30 rather than 40, City 20 rather than 30), so a value
that fits here fits every release. Only the columns the connector uses are listed; a real Sage
table has many more, which the connector never selects. The description columns of the lookup
tables (DivisionDesc, TermsCodeDesc), the SO_Options layout and AR_InvoiceHistoryHeader (key
InvoiceNo + HeaderSeqNo, SalesOrderNo naming the order invoiced) are working assumptions
(unverified in shared/reference/sage100.md); nothing keys on the descriptions. So is how a UDF
reaches history: Sage copies a UDF of SO_SalesOrderHeader to SO_SalesOrderHistoryHeader and,
through invoicing, to AR_InvoiceHistoryHeader when Custom Office defines it on those tables with
the same name (configure it there to find orders that left the open table by their UDF).
UDF columns are text (`UDF_LENGTH` characters) unless typed: configured as `NAME:TYPE` with
Sage's type spelling, `UDF_RATING:N12.2`, `UDF_SINCE:date`, `UDF_CODE:S10` (`udf_column`), or
given as a `Column`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AUDIT_COLUMNS",
    "TABLES",
    "UDF_LENGTH",
    "Column",
    "ColumnKind",
    "Table",
    "layouts",
    "udf_column",
]

UDF_LENGTH = 30
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class ColumnKind(StrEnum):
    TEXT = "text"  # S<n>: single-byte text, at most `length` characters
    DATE = "date"  # YYYYMMDD in ProvideX, an SQL date over ODBC
    DECIMAL = "decimal"  # N<p>.<s>: exact decimal, `precision` digits, `scale` after the point
    TIME = "time"  # decimal hours as text, "14.5012" = 14:30:04 (TimeCreated / TimeUpdated)


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    length: int | None = None  # TEXT and TIME: maximum characters
    precision: int | None = None  # DECIMAL: total digits
    scale: int | None = None  # DECIMAL: digits after the point

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"not a Sage column name: {self.name!r}")
        if self.kind is ColumnKind.DECIMAL and (self.precision is None or self.scale is None):
            raise ValueError(f"decimal column {self.name} needs precision and scale")
        if self.kind in (ColumnKind.TEXT, ColumnKind.TIME) and self.length is None:
            raise ValueError(f"text column {self.name} needs a length")

    @property
    def integer_digits(self) -> int:
        """Digits allowed before the point of a DECIMAL column."""
        assert self.precision is not None
        assert self.scale is not None
        return self.precision - self.scale


def _s(name: str, length: int) -> Column:
    return Column(name, ColumnKind.TEXT, length=length)


def _n(name: str, precision: int, scale: int) -> Column:
    return Column(name, ColumnKind.DECIMAL, precision=precision, scale=scale)


def _d(name: str) -> Column:
    return Column(name, ColumnKind.DATE)


_UDF_TYPE = re.compile(r"^(?:S(?P<length>\d+)|N(?P<precision>\d+)\.(?P<scale>\d+)|(?P<date>date))$")


def udf_column(spec: str, length: int = UDF_LENGTH) -> Column:
    """The UDF column `spec` names: `UDF_X` (text of `length`) or `UDF_X:<type>` with `<type>` as
    Sage spells it (S30, N12.2, date). Custom Office names them `UDF_` + upper-case words and
    underscores. ValueError naming the spec when it is not one."""
    name, _, kind = spec.partition(":")
    if not name.startswith("UDF_"):
        raise ValueError(f"a user-defined field is named UDF_...: {name!r}")
    if not kind:
        return _s(name, length)
    match = _UDF_TYPE.match(kind)
    if match is None:
        raise ValueError(f"{spec!r}: the type after ':' is S<length>, N<precision>.<scale> or date")
    if match["length"]:
        return _s(name, int(match["length"]))
    if match["precision"]:
        return _n(name, int(match["precision"]), int(match["scale"]))
    return _d(name)


AUDIT_COLUMNS: tuple[Column, ...] = (
    _d("DateCreated"),
    Column("TimeCreated", ColumnKind.TIME, length=8),
    _s("UserCreatedKey", 10),
    _d("DateUpdated"),
    Column("TimeUpdated", ColumnKind.TIME, length=8),
    _s("UserUpdatedKey", 10),
)


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    audited: bool = True
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"not a Sage table name: {self.name!r}")
        cols = self.columns + (AUDIT_COLUMNS if self.audited else ())
        object.__setattr__(self, "columns", cols)
        by_name = {c.name: c for c in cols}
        if len(by_name) != len(cols):
            raise ValueError(f"{self.name}: a column is listed twice")
        missing = [k for k in self.key if k not in by_name]
        if missing:
            raise ValueError(f"{self.name}: key columns {missing} are not columns")
        self._by_name.update(by_name)

    def column(self, name: str) -> Column:
        """The column called `name`; KeyError naming the table when there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} has no column {name!r}") from None

    def has(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def udfs(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.name.startswith("UDF_"))

    def with_udfs(self, udfs: Iterable[str | Column]) -> Table:
        """This table with the installation's UDF columns added (before the audit columns)."""
        extra = [u if isinstance(u, Column) else udf_column(u) for u in udfs]
        extra = [c for c in extra if c.name not in self._by_name]
        if not extra:
            return self
        data = tuple(c for c in self.columns if c not in AUDIT_COLUMNS or not self.audited)
        return Table(self.name, self.key, data + tuple(extra), self.audited)

    def key_of(self, row: Mapping[str, object]) -> tuple[str, ...]:
        return tuple(str(row[k]) for k in self.key)


_ADDRESS = (
    _s("AddressLine1", 30),
    _s("AddressLine2", 30),
    _s("AddressLine3", 30),
    _s("City", 20),
    _s("State", 2),
    _s("ZipCode", 10),
    _s("CountryCode", 3),
)


def _address(prefix: str) -> tuple[Column, ...]:
    return (
        _s(f"{prefix}Name", 30),
        _s(f"{prefix}Address1", 30),
        _s(f"{prefix}Address2", 30),
        _s(f"{prefix}Address3", 30),
        _s(f"{prefix}City", 20),
        _s(f"{prefix}State", 2),
        _s(f"{prefix}ZipCode", 10),
        _s(f"{prefix}CountryCode", 3),
    )


_QTY = (16, 6)  # Sage quantities: up to 10 integer digits, 6 decimals

AR_CUSTOMER = Table(
    "AR_Customer",
    ("ARDivisionNo", "CustomerNo"),
    (
        _s("ARDivisionNo", 2),
        _s("CustomerNo", 20),
        _s("CustomerName", 30),
        *_ADDRESS,
        _s("TelephoneNo", 17),
        _s("TelephoneExt", 5),
        _s("FaxNo", 17),
        _s("EmailAddress", 250),
        _s("URLAddress", 50),
        _s("ContactCode", 10),
        _s("PrimaryShipToCode", 4),
        _s("TermsCode", 2),
        _s("TaxSchedule", 9),
        _s("SalespersonDivisionNo", 2),
        _s("SalespersonNo", 4),
        _s("CustomerType", 4),
        _s("PriceLevel", 1),
        _s("CustomerStatus", 1),
        _n("CreditLimit", 13, 2),
        _n("CurrentBalance", 13, 2),
        _n("OpenOrderAmt", 13, 2),
        _d("DateEstablished"),
    ),
)

AR_CUSTOMER_CONTACT = Table(
    "AR_CustomerContact",
    ("ARDivisionNo", "CustomerNo", "ContactCode"),
    (
        _s("ARDivisionNo", 2),
        _s("CustomerNo", 20),
        _s("ContactCode", 10),
        _s("ContactName", 30),
        *_ADDRESS,
        _s("Salutation", 30),
        _s("ContactTitle", 30),
        _s("TelephoneNo1", 17),
        _s("TelephoneExt1", 5),
        _s("TelephoneNo2", 17),
        _s("TelephoneExt2", 5),
        _s("FaxNo", 17),
        _s("EmailAddress", 250),
    ),
)

CI_ITEM = Table(
    "CI_Item",
    ("ItemCode",),
    (
        _s("ItemCode", 30),
        _s("ItemType", 1),
        _s("ItemCodeDesc", 30),
        _s("ProductLine", 4),
        _s("ProductType", 1),
        _s("Valuation", 1),
        _s("StandardUnitOfMeasure", 4),
        _s("SalesUnitOfMeasure", 4),
        _s("PurchaseUnitOfMeasure", 4),
        _s("TaxClass", 2),
        _n("StandardUnitPrice", 15, 6),
        _n("StandardUnitCost", 15, 6),
        _n("TotalQuantityOnHand", *_QTY),
        _s("InactiveItem", 1),
        _s("DefaultWarehouseCode", 3),
    ),
)

IM_ITEM_WAREHOUSE = Table(
    "IM_ItemWarehouse",
    ("ItemCode", "WarehouseCode"),
    (
        _s("ItemCode", 30),
        _s("WarehouseCode", 3),
        _s("BinLocation", 10),
        _n("QuantityOnHand", *_QTY),
        _n("QuantityOnPurchaseOrder", *_QTY),
        _n("QuantityOnSalesOrder", *_QTY),
        _n("QuantityOnBackOrder", *_QTY),
        _n("QuantityOnWorkOrder", *_QTY),
        _n("QuantityInShipping", *_QTY),
        _n("AverageCost", 15, 6),
    ),
)

SO_SALES_ORDER_HEADER = Table(
    "SO_SalesOrderHeader",
    ("SalesOrderNo",),
    (
        _s("SalesOrderNo", 7),
        _d("OrderDate"),
        _s("OrderType", 1),
        _s("OrderStatus", 1),
        _s("ARDivisionNo", 2),
        _s("CustomerNo", 20),
        *_address("BillTo"),
        _s("ShipToCode", 4),
        *_address("ShipTo"),
        _d("ShipExpireDate"),
        _s("ShipVia", 15),
        _s("CustomerPONo", 15),
        _s("FOB", 15),
        _s("WarehouseCode", 3),
        _s("TermsCode", 2),
        _s("TaxSchedule", 9),
        _s("SalespersonDivisionNo", 2),
        _s("SalespersonNo", 4),
        _s("Comment", 30),
        _n("TaxableAmt", 13, 2),
        _n("NonTaxableAmt", 13, 2),
        _n("SalesTaxAmt", 13, 2),
        _n("DiscountAmt", 13, 2),
        _n("FreightAmt", 13, 2),
        _n("DepositAmt", 13, 2),
    ),
)

SO_SALES_ORDER_DETAIL = Table(
    "SO_SalesOrderDetail",
    ("SalesOrderNo", "LineKey"),
    (
        _s("SalesOrderNo", 7),
        _s("LineKey", 6),
        _s("LineSeqNo", 14),
        _s("ItemCode", 30),
        _s("ItemType", 1),
        _s("ItemCodeDesc", 30),
        _s("WarehouseCode", 3),
        _s("UnitOfMeasure", 4),
        _n("QuantityOrdered", *_QTY),
        _n("QuantityShipped", *_QTY),
        _n("QuantityBackordered", *_QTY),
        _n("UnitPrice", 15, 6),
        _n("UnitCost", 15, 6),
        _n("ExtensionAmt", 11, 2),
        _s("TaxClass", 2),
        _s("CommentText", 2048),
    ),
)

SO_SALES_ORDER_HISTORY_HEADER = Table(
    "SO_SalesOrderHistoryHeader",
    ("SalesOrderNo",),
    (
        _s("SalesOrderNo", 7),
        _d("OrderDate"),
        _s("OrderType", 1),
        _s("OrderStatus", 1),  # A active, C completed, X deleted order, Q quote, Z deleted quote
        _s("ARDivisionNo", 2),
        _s("CustomerNo", 20),
        _s("BillToName", 30),
        _s("CustomerPONo", 15),
        _s("LastInvoiceNo", 7),
        _d("LastInvoiceDate"),
        _d("DateCompleted"),
    ),
)

# A/R invoice history: one row per posted invoice; an invoice made from a sales order names it in
# SalesOrderNo (InvoiceType IN invoice, CM credit memo, DM debit memo; ModuleCode S/O, A/R)
AR_INVOICE_HISTORY_HEADER = Table(
    "AR_InvoiceHistoryHeader",
    ("InvoiceNo", "HeaderSeqNo"),
    (
        _s("InvoiceNo", 7),
        _s("HeaderSeqNo", 6),
        _s("InvoiceType", 2),
        _d("InvoiceDate"),
        _s("ModuleCode", 3),
        _s("SalesOrderNo", 7),
        _s("ARDivisionNo", 2),
        _s("CustomerNo", 20),
        _s("BillToName", 30),
        _s("CustomerPONo", 15),
    ),
)

# Sales Order module options; only the next-number counter is used. Sage's own key column of
# this one-row table is unverified, so the layout keys it by the counter itself.
SO_OPTIONS = Table("SO_Options", ("NextSalesOrderNo",), (_s("NextSalesOrderNo", 7),), audited=False)

AR_DIVISION = Table("AR_Division", ("ARDivisionNo",), (_s("ARDivisionNo", 2), _s("DivisionDesc", 30)))

IM_WAREHOUSE = Table("IM_Warehouse", ("WarehouseCode",), (_s("WarehouseCode", 3), _s("WarehouseDesc", 30)))

AR_TERMS_CODE = Table(
    "AR_TermsCode",
    ("TermsCode",),
    (
        _s("TermsCode", 2),
        _s("TermsCodeDesc", 30),
        _n("DaysBeforeDue", 3, 0),
        _n("DiscountDays", 3, 0),
        _n("DiscountRate", 5, 3),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        AR_CUSTOMER,
        AR_CUSTOMER_CONTACT,
        CI_ITEM,
        IM_ITEM_WAREHOUSE,
        SO_SALES_ORDER_HEADER,
        SO_SALES_ORDER_DETAIL,
        SO_SALES_ORDER_HISTORY_HEADER,
        AR_INVOICE_HISTORY_HEADER,
        SO_OPTIONS,
        AR_DIVISION,
        IM_WAREHOUSE,
        AR_TERMS_CODE,
    )
}


def layouts(udf_columns: Mapping[str, Sequence[str | Column]] | None = None) -> dict[str, Table]:
    """Every table, with the installation's UDF columns (table name -> UDF names) added."""
    udf_columns = udf_columns or {}
    unknown = sorted(set(udf_columns) - set(TABLES))
    if unknown:
        raise KeyError(f"UDF columns configured for unknown tables: {', '.join(unknown)}")
    return {name: t.with_udfs(udf_columns.get(name, ())) for name, t in TABLES.items()}
