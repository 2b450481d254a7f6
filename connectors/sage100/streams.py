"""What each polled Sage 100 table becomes: its change query, row identity and canonical records.

Owns one `Stream` per table the source polls, each knowing which columns to select, how to
identify and hash a row version, and how to map it to canonical records:
- AR_Customer -> Customer (customer.v1, key `ARDivisionNo-CustomerNo`), with its contacts read
  in the same query through `{oj AR_Customer LEFT OUTER JOIN AR_CustomerContact ...}`. A version
  the integration user wrote last is published too, with the header `sagesf.written-by:
  integration`: a Sage user's edit made just before our write is in it, and only the processors
  can tell which fields are whose (processors/customers.py). The other streams drop such versions.
- AR_CustomerContact -> the Customer the changed contact belongs to, read again by key (a
  contact change is a change of the customer's state).
- CI_Item -> Item (item.v1, key ItemCode).
- IM_ItemWarehouse -> InventoryLevel (inventory.v1, key `ItemCode/WarehouseCode` as topics.yaml
  says; the envelope's source record ID is `ItemCode-WarehouseCode` as Envelope.avsc says), with
  quantity_available = QuantityOnHand - QuantityOnSalesOrder - QuantityOnBackOrder.
- SO_SalesOrderHeader -> OrderStatusChange (orderstatus.v1, key SalesOrderNo), only when the
  status, a header UDF (`custom_fields`) or a line UDF (`lines`, read from SO_SalesOrderDetail
  in one keyed query) differs from what this process last published for the order (a new
  order always).
- SO_SalesOrderDetail -> the OrderStatusChange of the changed line's order, read again by key
  (a line UDF edited in Sage changes what the order publishes).
And, for the key sweep (sage100.sweep), what a vanished or deactivated row becomes: a Customer
or Item with `deleted` true, a tombstone for an inventory level, an OrderStatusChange CLOSED or
DELETED from SO_SalesOrderHistoryHeader (C -> CLOSED, X/Z -> DELETED).

How it works: a row group (one row, or a customer with its contact rows) has a key (the table
key as strings), a change stamp (sage100.values.change_stamp of DateUpdated/TimeUpdated), the
user who last wrote it (UserUpdatedKey) and a version hash (BLAKE2b-128 of the selected values,
personalised by table). Its first 8 bytes are the digest the poller compares to drop versions it
has already published; all 16 make the event ID (a name-based UUID, RFC 9562 version 8): the
same row version always gets the same event ID, so a consumer can recognise a record
re-published after a crash. Event times are the row's
DateUpdated/TimeUpdated in the server's zone, converted to UTC.

Value rules: Sage text is right-trimmed and blank becomes null (required names stay ""); money
and quantities are exact Decimals at the schema's scale; Sage's 3-letter country codes become
ISO alpha-2 for the common ones (`COUNTRY_ALPHA2`; others pass through unchanged); customer
status A -> ACTIVE, I -> INACTIVE, H -> ON_HOLD, anything else UNKNOWN (only A is verified);
UDF columns go to `custom_fields` by column name, except the Salesforce ID UDF, which fills the
Salesforce ID field (an order's ID starting 006 is an Opportunity, 801 an Order).

Rows that cannot be read as they are (what a broken import leaves behind) are `BadRow`s, a
`Permanent` naming the table, the key and the column: a NULL key column or a DateUpdated /
TimeUpdated that makes no change stamp (`Group.problem`, found while grouping, so the poller
never orders by it), and, while mapping, a number that is not one or does not fit its Sage column
(text in CreditLimit, more digits than N13.2 allows, more than Decimal's 28), a time that has no
UTC equivalent (9999-12-31 late in the day) or an ItemType outside 1-5. `Stream.map` raises
them; the source dead-letters the row version (`Stream.rejected`) and goes on.

Limits: an order's status memory is per process: after a restart the first change of each order
is published even if only other columns changed (previous_status is then null).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sage100.odbc import Q, Row, SageOdbc
from connectors.sage100.tables import AUDIT_COLUMNS, ColumnKind, Table
from connectors.sage100.values import change_stamp, day_end_stamp, decimal_at, local_to_utc, stamp_local
from sagesf import topic_names
from sagesf.dead_letter_writer import FailedRecord
from sagesf.errors import Permanent
from sagesf.publisher import CanonicalRecord
from sagesf.source import WRITTEN_BY_HEADER, WRITTEN_BY_INTEGRATION, Rejected

__all__ = [
    "COUNTRY_ALPHA2",
    "CUSTOMER_STATUS",
    "ITEM_TYPES",
    "ORDER_STATUS",
    "BadRow",
    "Group",
    "MappingContext",
    "OutRecord",
    "Stream",
    "build_streams",
]

AUDIT = ("DateUpdated", "TimeUpdated", "UserUpdatedKey")
WRITTEN_BY = ((WRITTEN_BY_HEADER, WRITTEN_BY_INTEGRATION),)

CUSTOMER_STATUS = {"A": "ACTIVE", "I": "INACTIVE", "H": "ON_HOLD"}
ITEM_TYPES = {"1": "REGULAR", "2": "SPECIAL", "3": "CHARGE", "4": "COMMENT", "5": "MISCELLANEOUS"}
ORDER_STATUS = {"N": "NEW", "O": "OPEN", "H": "HOLD", "C": "CLOSED"}
HISTORY_STATUS = {"C": "CLOSED", "X": "DELETED", "Z": "DELETED"}
COUNTRY_ALPHA2 = {
    "USA": "US", "CAN": "CA", "MEX": "MX", "GBR": "GB", "IRL": "IE", "FRA": "FR", "DEU": "DE",
    "ESP": "ES", "ITA": "IT", "NLD": "NL", "BEL": "BE", "CHE": "CH", "AUT": "AT", "SWE": "SE",
    "NOR": "NO", "DNK": "DK", "FIN": "FI", "POL": "PL", "PRT": "PT", "AUS": "AU", "NZL": "NZ",
    "JPN": "JP", "CHN": "CN", "KOR": "KR", "IND": "IN", "SGP": "SG", "HKG": "HK", "BRA": "BR",
    "ARG": "AR", "CHL": "CL", "COL": "CO", "ZAF": "ZA", "ISR": "IL", "ARE": "AE", "PRI": "PR",
}  # fmt: skip


@dataclass(slots=True)
class OutRecord(CanonicalRecord):
    """A canonical record from a Sage row, with what the streams remember once Kafka has it."""

    gone: bool = False  # says the row no longer exists (from the key sweep)
    digest: str | None = None  # the row version it shows (customers: customer + contacts)


class BadRow(Permanent):
    """A Sage row that cannot be read as it is: its table, its key (a NULL key part is None), the
    column at fault (`field`) and its value, and why. The source dead-letters the row version."""

    def __init__(
        self, table: Table, key: Sequence[str | None], column: str, value: object, reason: str
    ) -> None:
        shown = "-".join("NULL" if part is None else part for part in key)
        super().__init__(f"{table.name} {shown}: {column} {value!r}: {reason}", field=column, value=value)
        self.table = table.name
        self.key: dict[str, str | None] = dict(zip(table.key, key, strict=True))
        self.explanation = reason


@dataclass(slots=True)
class Group:
    """One row version as the poller sees it: a row, or a customer with its contact rows.

    `problem` is set when the row has no usable key or change stamp; `stamp` is then the end of
    its DateUpdated (0 without one): the row is re-read until the watermark passes that day, and
    its entry in `seen` (under `ident`) is kept as long, so it is dead-lettered once.
    """

    rows: list[Row]
    key: tuple[str, ...]
    stamp: int
    user: str
    digest: str  # 16 hex characters: what `seen` compares
    version: bytes  # the full version hash: the event ID
    problem: BadRow | None = None
    identified: bool = True  # False: a key column is NULL

    @property
    def ident(self) -> tuple[str, ...]:
        """Its key in `seen`: the row key, or, for a row that cannot be read, its version."""
        return self.key if self.problem is None else ("\x00", self.digest)


@dataclass
class MappingContext:
    zone: ZoneInfo
    salesforce_id_udf: str
    topics: Mapping[str, str]
    integration_user: str = ""  # its versions are marked WRITTEN_BY_HEADER (streams that publish them)
    _times: dict[int, datetime] = field(default_factory=dict)

    def event_time(self, stamp: int) -> datetime:
        """UTC of a change stamp (cached: rows often share one)."""
        if not stamp:  # no DateUpdated (or a vanished row): now
            return datetime.now(UTC)
        found = self._times.get(stamp)
        if found is None:
            if len(self._times) > 50_000:
                self._times.clear()
            found = self._times[stamp] = local_to_utc(stamp_local(stamp), self.zone)
        return found


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal | date | datetime):
        return str(value)
    return repr(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).rstrip()
    return text or None


def _name(value: Any) -> str:
    return str(value).rstrip() if value is not None else ""


_ZERO6 = Decimal("0.000000")


def _country(value: Any) -> str | None:
    code = _text(value)
    return COUNTRY_ALPHA2.get(code.upper(), code) if code else None


def version_hash(stream: str, rows: Sequence[Any]) -> bytes:
    """BLAKE2b-128 of a row group's values, personalised by stream: equal for equal versions,
    in every process. Its first 8 bytes are the de-duplication digest, all 16 the event ID."""
    return hashlib.blake2b(repr(rows).encode(), digest_size=16, person=stream.encode()[:16]).digest()


def event_id(version: bytes) -> str:
    """A name-based UUID (RFC 9562 version 8) from a 16-byte version hash."""
    raw = bytearray(version)
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Stream:
    """One polled table (base): its select list and row groups; subclasses map to records."""

    name: str
    topic_name: str = ""
    schema: str = ""
    sweep_columns: tuple[str, ...] = ()
    multi_row = False  # a row version spans several result rows (a join)
    # publish the integration user's versions, marked (sagesf.source WRITTEN_BY_HEADER), rather
    # than drop them as echoes: a user's edit may hide in them (customers, processors/customers.py)
    publishes_echoes = False

    def __init__(self, table: Table, ctx: MappingContext) -> None:
        self.table = table
        self.ctx = ctx
        self.query = Q(table)
        self.name = table.name
        self.columns: list[str] = self.select_columns()
        self.column_index = {c: i for i, c in enumerate(self.columns)}
        self.key_width = len(table.key)
        self.i_date, self.i_time, self.i_user = (self.column_index[c] for c in AUDIT)
        self.udfs = [u for u in table.udfs if u in self.column_index]
        self.topic = ctx.topics.get(self.topic_name, self.topic_name)
        # a value this large does not fit the column (nor the canonical schema's decimal)
        self.limits = {
            c.name: Decimal(10) ** c.integer_digits for c in table.columns if c.kind is ColumnKind.DECIMAL
        }

    # --- the query ---------------------------------------------------------------------------

    def select_columns(self) -> list[str]:
        """Key columns first, then the data columns, then the three audit columns used."""
        audit = {c.name for c in AUDIT_COLUMNS}
        data = [c.name for c in self.table.columns if c.name not in self.table.key and c.name not in audit]
        return [*self.table.key, *data, *AUDIT]

    def from_clause(self) -> str:
        return self.table.name

    def select_list(self) -> str:
        return self.query.cols(self.columns)

    def order_by(self) -> list[str]:
        return [
            self.query.col("DateUpdated"),
            self.query.col("TimeUpdated"),
            *(self.query.col(k) for k in self.table.key),
        ]

    def changes_sql(self, morning: bool) -> str:
        """The change-poll query (sage100.odbc `Q.changed_since` criterion, ordered by stamp and key)."""
        return (
            f"SELECT {self.select_list()} FROM {self.from_clause()} "  # noqa: S608 - layout names only
            f"WHERE {self.query.changed_since(morning=morning)} ORDER BY {', '.join(self.order_by())}"
        )

    def by_key_sql(self) -> str:
        return (
            f"SELECT {self.select_list()} FROM {self.from_clause()} "  # noqa: S608 - layout names only
            f"WHERE {self.query.key_equals()} ORDER BY {', '.join(self.order_by())}"
        )

    # --- row groups --------------------------------------------------------------------------

    def group_key(self, row: Row) -> tuple[str, ...]:
        return tuple([str(v).rstrip() for v in row[: self.key_width]])

    def group(self, rows: list[Row]) -> Group:
        """A row version; one without a usable key or change stamp carries its `problem`."""
        first = rows[0]
        version = version_hash(self.name, rows)
        group = Group(rows, (), 0, _name(first[self.i_user]), version[:8].hex(), version)
        raw = first[: self.key_width]
        if None in raw:
            parts = [None if v is None else str(v).rstrip() for v in raw]
            column = self.table.key[parts.index(None)]
            group.problem = BadRow(
                self.table, parts, column, None, "a key column is NULL: the row has no identity"
            )
            group.key, group.identified = tuple(p or "" for p in parts), False
        else:
            group.key = tuple([str(v).rstrip() for v in raw])
        day, hours = first[self.i_date], first[self.i_time]
        try:
            group.stamp = change_stamp(day, hours)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            column, value = ("TimeUpdated", hours) if isinstance(day, date) else ("DateUpdated", day)
            group.problem = group.problem or BadRow(self.table, group.key, column, value, str(exc))
            group.stamp = day_end_stamp(day)
        return group

    def gone(self, key: tuple[str, ...], *what: str) -> Group:
        """A group standing for a row that no longer exists (for the key sweep's records)."""
        version = version_hash(self.name, [(*what, *key)])
        return Group([], key, 0, "", version[:8].hex(), version)

    def groups(self, rows: Sequence[Row]) -> list[Group]:
        return [self.group([r]) for r in rows]

    def read_key(self, odbc: SageOdbc, key: Sequence[str]) -> Group | None:
        """The current version of one row (group), or None when it no longer exists."""
        rows = odbc.fetchall(self.by_key_sql(), list(key))
        return self.group(rows) if rows else None

    # --- records -----------------------------------------------------------------------------

    def envelope(self, group: Group, record_id: str) -> dict[str, Any]:
        return {
            "event_id": event_id(group.version),
            "event_time": self.event_time(group, group.stamp),
            "source_system": "SAGE100",
            "source_record_id": record_id,
            "correlation_id": None,
        }

    def event_time(self, group: Group, stamp: int) -> datetime:
        """UTC of a change stamp of `group`; BadRow when there is none (year 9999, late in the day)."""
        try:
            return self.ctx.event_time(stamp)
        except (OverflowError, ValueError) as exc:
            row = group.rows[0] if group.rows else None
            shown = f"{row[self.i_date]} {row[self.i_time]}" if row is not None else stamp
            raise BadRow(self.table, group.key, "DateUpdated", shown, f"has no UTC time: {exc}") from None

    def decimal(self, group: Group, row: Row, column: str, scale: int) -> Decimal | None:
        """A number column at `scale`; BadRow when it is not a number or does not fit the column."""
        value = row[self.column_index[column]]
        try:
            number = decimal_at(value, scale)
        except (ValueError, TypeError) as exc:
            raise BadRow(self.table, group.key, column, value, str(exc)) from None
        except ArithmeticError:  # decimal.InvalidOperation: past the 28 digits a Decimal holds
            raise BadRow(
                self.table, group.key, column, value, "has more digits than a number holds"
            ) from None
        if number is not None and abs(number) >= self.limits[column]:
            layout = self.table.column(column)
            raise BadRow(
                self.table, group.key, column, value, f"does not fit N{layout.precision}.{layout.scale}"
            )
        return number

    def quantity(self, group: Group, row: Row, column: str) -> Decimal:
        return self.decimal(group, row, column, 6) or _ZERO6

    def map(self, group: Group, odbc: SageOdbc) -> list[OutRecord]:
        """The canonical records of a row version; `BadRow` (Permanent) when it cannot be read or mapped."""
        if group.problem is not None:
            raise group.problem
        records = self.records(group, odbc)
        if self.publishes_echoes and group.user == self.ctx.integration_user:
            for rec in records:
                rec.headers = WRITTEN_BY
        return records

    def records(self, group: Group, odbc: SageOdbc) -> list[OutRecord]:
        """What each stream writes: the records of a readable row version (called through `map`)."""
        raise NotImplementedError

    def confirmed(self, records: Sequence[OutRecord]) -> None:
        """Kafka has these records (hook for per-stream memory)."""

    def rejected(self, group: Group, error: BaseException) -> Rejected:
        """A row version that cannot be read or mapped, as a dead letter. Its origin (`topic`) is
        the table at fault, its key the row key joined by "-" (a NULL part empty), and its value
        JSON: `table`, `key` (column -> value, NULL as null), `column`, `reason` and the `rows`
        read, the closest thing to "original bytes" a database row has. `found_by` names the
        table whose change led to it when that differs (a contact change reads its customer)."""
        if isinstance(error, BadRow):
            table, key = error.table, error.key
        else:
            table, key = self.name, dict(zip(self.table.key, group.key, strict=False))
        body: dict[str, Any] = {
            "table": table,
            "key": key,
            "column": error.field if isinstance(error, Permanent) else None,
            "reason": str(error),
            "rows": [dict(zip(self.columns, row, strict=False)) for row in group.rows],
        }
        if table != self.name:
            body["found_by"] = self.name
        shown = "-".join("" if part is None else part for part in key.values())
        value = json.dumps(body, default=_json_default).encode()
        failed = FailedRecord(table, -1, -1, shown.encode(), value)
        return Rejected(failed, error, f"{type(self).__module__}.{type(self).__qualname__}.records")

    def sweep_status(self, row: Row) -> tuple[str, ...]:
        return tuple(_name(v) for v in row[self.key_width :])

    def vanished(self, key: tuple[str, ...], status: tuple[str, ...], odbc: SageOdbc) -> list[OutRecord]:
        """Records saying that the row with `key` is gone (the key sweep found it missing)."""
        return []

    def custom_fields(self, row: Row, skip: str | None = None) -> dict[str, str | None]:
        return {u: _text(row[self.column_index[u]]) for u in self.udfs if u != skip}


class CustomerStream(Stream):
    topic_name = topic_names.CUSTOMERS
    schema = "Customer"
    sweep_columns = ("CustomerStatus",)
    multi_row = True
    publishes_echoes = True

    def __init__(self, table: Table, contacts: Table, ctx: MappingContext) -> None:
        self.contacts = contacts
        self.contact_query = Q(contacts)
        self.contact_columns = [
            "ContactCode", "ContactName", "Salutation", "ContactTitle", "TelephoneNo1", "TelephoneExt1",
            "TelephoneNo2", "FaxNo", "EmailAddress", "AddressLine1", "AddressLine2", "AddressLine3",
            "City", "State", "ZipCode", "CountryCode",
        ]  # fmt: skip
        super().__init__(table, ctx)
        self.base = len(self.columns)
        self.cix = {c: self.base + i for i, c in enumerate(self.contact_columns)}
        # customer key -> digest of the version last published, by this stream or the contacts one
        self.published: dict[str, str] = {}

    def from_clause(self) -> str:
        return self.query.outer_join(self.contacts, ["ARDivisionNo", "CustomerNo"])

    def select_list(self) -> str:
        return f"{self.query.cols(self.columns)}, {self.contact_query.cols(self.contact_columns)}"

    def order_by(self) -> list[str]:
        return [*super().order_by(), self.contact_query.col("ContactCode")]

    def groups(self, rows: Sequence[Row]) -> list[Group]:
        out: list[Group] = []
        current: list[Row] = []
        for row in rows:
            if current and row[: self.key_width] != current[0][: self.key_width]:
                out.append(self.group(current))
                current = []
            current.append(row)
        if current:
            out.append(self.group(current))
        return out

    def record(self, group: Group, source: Group | None = None) -> dict[str, Any]:
        row = group.rows[0]
        ix = self.column_index
        division, number = group.key
        contacts = []
        for r in group.rows:
            cix = self.cix
            if r[cix["ContactCode"]] is None:
                continue
            contacts.append(
                {
                    "contact_code": _text(r[cix["ContactCode"]]),
                    "salesforce_contact_id": None,
                    "name": _name(r[cix["ContactName"]]),
                    "first_name": None,
                    "last_name": None,
                    "salutation": _text(r[cix["Salutation"]]),
                    "title": _text(r[cix["ContactTitle"]]),
                    "telephone_no": _text(r[cix["TelephoneNo1"]]),
                    "telephone_ext": _text(r[cix["TelephoneExt1"]]),
                    "telephone_no2": _text(r[cix["TelephoneNo2"]]),
                    "fax_no": _text(r[cix["FaxNo"]]),
                    "email_address": _text(r[cix["EmailAddress"]]),
                    "address": {
                        "name": None,
                        "code": None,
                        "line1": _text(r[cix["AddressLine1"]]),
                        "line2": _text(r[cix["AddressLine2"]]),
                        "line3": _text(r[cix["AddressLine3"]]),
                        "city": _text(r[cix["City"]]),
                        "state": _text(r[cix["State"]]),
                        "postal_code": _text(r[cix["ZipCode"]]),
                        "country_code": _country(r[cix["CountryCode"]]),
                    },
                }
            )
        sf_udf = self.ctx.salesforce_id_udf
        value: dict[str, Any] = {
            "envelope": self.envelope(source or group, f"{division}-{number}"),
            "salesforce_account_id": _text(row[ix[sf_udf]]) if sf_udf in ix else None,
            "ar_division_no": division,
            "customer_no": number,
            "name": _name(row[ix["CustomerName"]]),
            "status": CUSTOMER_STATUS.get(_name(row[ix["CustomerStatus"]]), "UNKNOWN"),
            "credit_limit": self.decimal(group, row, "CreditLimit", 2),
            "current_balance": self.decimal(group, row, "CurrentBalance", 2),
            "terms_code": _text(row[ix["TermsCode"]]),
            "salesperson_division_no": _text(row[ix["SalespersonDivisionNo"]]),
            "salesperson_no": _text(row[ix["SalespersonNo"]]),
            "customer_type": _text(row[ix["CustomerType"]]),
            "price_level": _text(row[ix["PriceLevel"]]),
            "telephone_no": _text(row[ix["TelephoneNo"]]),
            "email_address": _text(row[ix["EmailAddress"]]),
            "billing_address": {
                "name": _text(row[ix["CustomerName"]]),
                "code": None,
                "line1": _text(row[ix["AddressLine1"]]),
                "line2": _text(row[ix["AddressLine2"]]),
                "line3": _text(row[ix["AddressLine3"]]),
                "city": _text(row[ix["City"]]),
                "state": _text(row[ix["State"]]),
                "postal_code": _text(row[ix["ZipCode"]]),
                "country_code": _country(row[ix["CountryCode"]]),
            },
            "shipping_address": None,
            "contacts": contacts,
            "custom_fields": self.custom_fields(row, skip=sf_udf),
            "deleted": False,
        }
        return value

    def records(self, group: Group, odbc: SageOdbc) -> list[OutRecord]:
        key = "-".join(group.key)
        if self.published.get(key) == group.digest:
            return []  # the contacts stream already published this very version
        value = self.record(group)
        return [
            OutRecord(
                topic=self.topic,
                key=key,
                value=value,
                schema=self.schema,
                event_time=value["envelope"]["event_time"],
                digest=group.digest,
            )
        ]

    def confirmed(self, records: Sequence[OutRecord]) -> None:
        for rec in records:
            if rec.key is None:
                continue
            if rec.gone:
                self.published.pop(rec.key, None)
            elif rec.digest is not None:
                self.published[rec.key] = rec.digest

    def vanished(self, key: tuple[str, ...], status: tuple[str, ...], odbc: SageOdbc) -> list[OutRecord]:
        division, number = key
        group = self.gone(key, "deleted")
        value: dict[str, Any] = {
            "envelope": self.envelope(group, f"{division}-{number}"),
            "ar_division_no": division,
            "customer_no": number,
            "name": "",
            "status": CUSTOMER_STATUS.get(status[0] if status else "", "UNKNOWN"),
            "deleted": True,
        }
        return [
            OutRecord(
                topic=self.topic,
                key=f"{division}-{number}",
                value=value,
                schema=self.schema,
                event_time=None,
                gone=True,
            )
        ]


class ChildStream(Stream):
    """A child table (its key: the parent's, then its own) whose changed row republishes its
    parent's record, the parent read again by key with all its children; the parent's stream
    remembers what was published."""

    removed = "child deleted"  # what a vanished row's version hash is made of

    def __init__(self, table: Table, parent: Stream, ctx: MappingContext) -> None:
        self.parent = parent
        super().__init__(table, ctx)

    def select_columns(self) -> list[str]:
        return [*self.table.key, *AUDIT]

    def read_parent(self, group: Group, odbc: SageOdbc) -> Group | None:
        """The parent's current version; None when it is gone too (its own sweep reports that)."""
        found = self.parent.read_key(odbc, group.key[: self.parent.key_width])
        if found is not None and found.problem is not None:
            raise found.problem
        return found

    def confirmed(self, records: Sequence[OutRecord]) -> None:
        self.parent.confirmed(records)

    def vanished(self, key: tuple[str, ...], status: tuple[str, ...], odbc: SageOdbc) -> list[OutRecord]:
        # a deleted child changes its parent's list of children (a deleted parent: nothing)
        return self.records(self.gone(key, self.removed), odbc)


class ContactStream(ChildStream):
    """A changed contact republishes its customer (read again, with all its contacts)."""

    topic_name = topic_names.CUSTOMERS
    schema = "Customer"
    removed = "contact deleted"

    def __init__(self, table: Table, customers: CustomerStream, ctx: MappingContext) -> None:
        self.customers = customers
        super().__init__(table, customers, ctx)

    def records(self, group: Group, odbc: SageOdbc) -> list[OutRecord]:
        customer = self.read_parent(group, odbc)
        if customer is None:
            return []
        key = "-".join(group.key[:2])
        if self.customers.published.get(key) == customer.digest:
            return []  # this customer version is out already (a new customer and its contacts)
        value = self.customers.record(customer, source=group)
        value["envelope"]["event_time"] = self.customers.event_time(
            customer, max(group.stamp, customer.stamp)
        )
        event_time = value["envelope"]["event_time"]
        return [
            OutRecord(
                topic=self.topic,
                key=key,
                value=value,
                schema=self.schema,
                event_time=event_time,
                digest=customer.digest,
            )
        ]


class ItemStream(Stream):
    topic_name = topic_names.ITEMS
    schema = "Item"
    sweep_columns = ("InactiveItem", "ItemType")

    def records(self, group: Group, odbc: SageOdbc) -> list[OutRecord]:
        row, ix = group.rows[0], self.column_index
        item_type = ITEM_TYPES.get(_name(row[ix["ItemType"]]))
        if item_type is None:
            raise BadRow(self.table, group.key, "ItemType", row[ix["ItemType"]], "is none of 1-5")
        value: dict[str, Any] = {
            "envelope": self.envelope(group, group.key[0]),
            "item_code": group.key[0],
            "salesforce_product_id": None,
            "product_code": None,
            "description": _text(row[ix["ItemCodeDesc"]]),
            "item_type": item_type,
            "product_line": _text(row[ix["ProductLine"]]),
            "product_type": _text(row[ix["ProductType"]]),
            "unit_of_measure": _text(row[ix["StandardUnitOfMeasure"]]),
            "standard_unit_price": self.decimal(group, row, "StandardUnitPrice", 6),
            "standard_unit_cost": self.decimal(group, row, "StandardUnitCost", 6),
            "total_quantity_on_hand": self.decimal(group, row, "TotalQuantityOnHand", 6),
            "default_warehouse_code": _text(row[ix["DefaultWarehouseCode"]]),
            "active": _name(row[ix["InactiveItem"]]) != "Y",
            "custom_fields": self.custom_fields(row),
            "deleted": False,
        }
        return [
            OutRecord(
                topic=self.topic,
                key=group.key[0],
                value=value,
                schema=self.schema,
                event_time=value["envelope"]["event_time"],
            )
        ]

    def vanished(self, key: tuple[str, ...], status: tuple[str, ...], odbc: SageOdbc) -> list[OutRecord]:
        group = self.gone(key, "deleted")
        value: dict[str, Any] = {
            "envelope": self.envelope(group, key[0]),
            "item_code": key[0],
            "item_type": ITEM_TYPES.get(status[1] if len(status) > 1 else "", "REGULAR"),
            "active": False,
            "deleted": True,
        }
        return [
            OutRecord(
                topic=self.topic, key=key[0], value=value, schema=self.schema, event_time=None, gone=True
            )
        ]


class InventoryStream(Stream):
    topic_name = topic_names.INVENTORY
    schema = "InventoryLevel"

    def records(self, group: Group, odbc: SageOdbc) -> list[OutRecord]:
        row = group.rows[0]
        item, warehouse = group.key
        on_hand = self.quantity(group, row, "QuantityOnHand")
        on_so = self.quantity(group, row, "QuantityOnSalesOrder")
        on_bo = self.quantity(group, row, "QuantityOnBackOrder")
        value: dict[str, Any] = {
            "envelope": self.envelope(group, f"{item}-{warehouse}"),
            "item_code": item,
            "warehouse_code": warehouse,
            "quantity_on_hand": on_hand,
            "quantity_on_sales_order": on_so,
            "quantity_on_back_order": on_bo,
            "quantity_on_purchase_order": self.quantity(group, row, "QuantityOnPurchaseOrder"),
            "quantity_available": on_hand - on_so - on_bo,
            "average_cost": self.decimal(group, row, "AverageCost", 6),
        }
        return [
            OutRecord(
                topic=self.topic,
                key=f"{item}/{warehouse}",
                value=value,
                schema=self.schema,
                event_time=value["envelope"]["event_time"],
            )
        ]

    def vanished(self, key: tuple[str, ...], status: tuple[str, ...], odbc: SageOdbc) -> list[OutRecord]:
        # compacted topic: a tombstone removes the level (the item left the warehouse)
        return [
            OutRecord(
                topic=self.topic,
                key=f"{key[0]}/{key[1]}",
                value=None,
                schema=self.schema,
                event_time=None,
                gone=True,
            )
        ]


class OrderStatusStream(Stream):
    topic_name = topic_names.ORDER_STATUS
    schema = "OrderStatusChange"
    sweep_columns = ("OrderStatus",)

    def __init__(self, table: Table, history: Table, detail: Table, ctx: MappingContext) -> None:
        super().__init__(table, ctx)
        self.history = Q(history)
        self.detail = Q(detail)
        self.line_udfs = list(detail.udfs)  # only the detail UDFs the settings name are read
        self.last_status: dict[str, str] = {}
        self.last_custom: dict[str, dict[str, str | None]] = {}  # the header UDFs last published
        self.last_lines: dict[str, list[dict[str, Any]]] = {}  # and the line UDFs

    def select_columns(self) -> list[str]:
        wanted = ["OrderStatus", "OrderType", "ARDivisionNo", "CustomerNo", "BillToName", *self.table.udfs]
        return [*self.table.key, *wanted, *AUDIT]

    def _ids(self, value: str | None) -> tuple[str | None, str | None]:
        if value is None:
            return None, None
        return (None, value) if value.startswith("801") else (value, None)

    def _record(
        self,
        group: Group,
        order_no: str,
        status: str,
        code: str,
        customer: dict[str, Any] | None,
        sf: str | None,
        gone: bool = False,
        custom: dict[str, str | None] | None = None,
        lines: list[dict[str, Any]] | None = None,
    ) -> OutRecord:
        opportunity, order = self._ids(sf)
        previous = self.last_status.get(order_no)
        value: dict[str, Any] = {
            "envelope": self.envelope(group, order_no),
            "sales_order_no": order_no,
            "salesforce_opportunity_id": opportunity,
            "salesforce_order_id": order,
            "customer": customer,
            "status": status,
            "previous_status": ORDER_STATUS.get(previous) if previous else None,
            "source_status": code,
            "invoice_no": None,
            "custom_fields": custom or {},
            "lines": lines or [],
        }
        event_time = None if gone else value["envelope"]["event_time"]
        return OutRecord(
            topic=self.topic, key=order_no, value=value, schema=self.schema, event_time=event_time, gone=gone
        )

    def lines(self, odbc: SageOdbc, order_no: str) -> list[dict[str, Any]]:
        """The order's lines with their UDFs, in LineKey order (none read without detail UDFs)."""
        if not self.line_udfs:
            return []
        sql = self.detail.select(
            ["LineKey", *self.line_udfs], where=self.detail.equals(["SalesOrderNo"]), order_by=["LineKey"]
        )
        return [
            {
                "line_key": _name(row[0]),
                "custom_fields": {u: _text(v) for u, v in zip(self.line_udfs, row[1:], strict=True)},
            }
            for row in odbc.fetchall(sql, [order_no])
        ]

    def records(self, group: Group, odbc: SageOdbc, source: Group | None = None) -> list[OutRecord]:
        """The order's record when its status or a UDF (header or line) differs from what was
        last published; `source`: the detail row version whose change led here (its event ID)."""
        row, ix = group.rows[0], self.column_index
        order_no = group.key[0]
        code = _name(row[ix["OrderStatus"]])
        sf_udf = self.ctx.salesforce_id_udf
        custom = self.custom_fields(row, skip=sf_udf)
        lines = self.lines(odbc, order_no)
        if (
            self.last_status.get(order_no) == code
            and self.last_custom.get(order_no) == custom
            and self.last_lines.get(order_no, []) == lines
        ):
            return []  # another column changed: neither the status nor a UDF
        customer = {
            "salesforce_account_id": None,
            "ar_division_no": _text(row[ix["ARDivisionNo"]]),
            "customer_no": _text(row[ix["CustomerNo"]]),
            "name": _text(row[ix["BillToName"]]),
        }
        sf = _text(row[ix[sf_udf]]) if sf_udf in ix else None
        status = ORDER_STATUS.get(code, "UNKNOWN")
        rec = self._record(source or group, order_no, status, code, customer, sf, custom=custom, lines=lines)
        if source is not None:
            assert rec.value is not None
            when = self.event_time(group, max(group.stamp, source.stamp))
            rec.value["envelope"]["event_time"] = rec.event_time = when
        return [rec]

    def confirmed(self, records: Sequence[OutRecord]) -> None:
        for rec in records:
            if rec.value is None or rec.key is None:
                continue
            if rec.gone:
                self.last_status.pop(rec.key, None)  # no longer an open order
                self.last_custom.pop(rec.key, None)
                self.last_lines.pop(rec.key, None)
            else:
                self.last_status[rec.key] = rec.value["source_status"]
                self.last_custom[rec.key] = dict(rec.value["custom_fields"])
                self.last_lines[rec.key] = list(rec.value["lines"])

    def vanished(self, key: tuple[str, ...], status: tuple[str, ...], odbc: SageOdbc) -> list[OutRecord]:
        order_no = key[0]
        found = odbc.fetchone(
            self.history.select(
                ["OrderStatus", "ARDivisionNo", "CustomerNo", "BillToName", "LastInvoiceNo"],
                where=self.history.key_equals(),
            ),
            [order_no],
        )
        code = _name(found[0]) if found else "X"
        canonical = HISTORY_STATUS.get(code)
        if canonical is None:  # still active in history: not an end state we can name
            return []
        group = self.gone(key, "vanished", code)
        customer = (
            {
                "salesforce_account_id": None,
                "ar_division_no": _text(found[1]),
                "customer_no": _text(found[2]),
                "name": _text(found[3]),
            }
            if found
            else None
        )
        rec = self._record(group, order_no, canonical, code, customer, None, gone=True)
        assert rec.value is not None
        if found:
            rec.value["invoice_no"] = _text(found[4])
        if status and not self.last_status.get(order_no):
            rec.value["previous_status"] = ORDER_STATUS.get(status[0])
        return [rec]


class OrderLineStream(ChildStream):
    """A changed order line (SO_SalesOrderDetail) republishes its order's status record, read
    again with all its lines, when a line UDF differs from what was last published."""

    topic_name = topic_names.ORDER_STATUS
    schema = "OrderStatusChange"
    removed = "line deleted"

    def __init__(self, table: Table, orders: OrderStatusStream, ctx: MappingContext) -> None:
        self.orders = orders
        super().__init__(table, orders, ctx)

    def records(self, group: Group, odbc: SageOdbc) -> list[OutRecord]:
        order = self.read_parent(group, odbc)
        return [] if order is None else self.orders.records(order, odbc, source=group)


def build_streams(
    tables: Mapping[str, Table],
    names: Sequence[str],
    ctx: MappingContext,
) -> dict[str, Stream]:
    """The streams for the configured table names, in that order."""
    customers = CustomerStream(tables["AR_Customer"], tables["AR_CustomerContact"], ctx)
    orders = OrderStatusStream(
        tables["SO_SalesOrderHeader"],
        tables["SO_SalesOrderHistoryHeader"],
        tables["SO_SalesOrderDetail"],
        ctx,
    )
    factories: dict[str, Callable[[], Stream]] = {
        "AR_Customer": lambda: customers,
        "AR_CustomerContact": lambda: ContactStream(tables["AR_CustomerContact"], customers, ctx),
        "CI_Item": lambda: ItemStream(tables["CI_Item"], ctx),
        "IM_ItemWarehouse": lambda: InventoryStream(tables["IM_ItemWarehouse"], ctx),
        "SO_SalesOrderHeader": lambda: orders,
        "SO_SalesOrderDetail": lambda: OrderLineStream(tables["SO_SalesOrderDetail"], orders, ctx),
    }
    return {name: factories[name]() for name in names}
