"""The one way sagesf talks SQL to Sage 100: an ODBC connection, its SQL dialect and its errors.

Owns: opening a pyodbc connection with a login and a query timeout, running parameterised
queries (streamed in batches), transactions for the `odbc` writer backend, the SQL text builders
every query is made with, and turning driver errors into sagesf.errors.

The dialect is the ODBC escape syntax the ProvideX driver accepts: outer and inner joins are
written `{oj A LEFT OUTER JOIN B ON ...}`, date literals `{d 'YYYY-MM-DD'}` (never needed here:
every value is a `?` parameter) and bare, unquoted identifiers. The sandbox's SQLite ODBC driver
accepts exactly the same text (tests/unit/test_sage_odbc.py proves `{oj}`, `{d}` and `?` dates),
so no query is translated: what runs on the sandbox is what runs against a real
`SOTAMAS90`-style DSN. Only names from the table layouts in sage100.tables are put into SQL text
(`Q` checks them); values are always parameters.

How it works: `SageOdbc` holds one connection, opened on first use and dropped after an error
that may have broken it (the next call reconnects). Reads run with autocommit on, so no read
holds a transaction (SQLite WAL snapshot, ProvideX file lock) between polls; `transaction()`
turns autocommit off for one unit of writes and commits or rolls back.

Errors (`classify`), by SQLSTATE and, for SQLite (whose driver reports everything as HY000),
by the SQLite result code in the message:
- `SageUnavailable` (Retriable): connection failures (08xxx), timeouts (HYT00/HYT01),
  deadlocks and serialization failures (40xxx), the driver manager not finding the driver or DSN
  (IM002/IM003/IM004), database busy/locked (SQLite 5/6), cannot open, I/O error, not a database
  (SQLite 14/10/26: the file is missing or being replaced).
- `SageRejected` (Permanent): Sage refused the data: constraint violations (23xxx, SQLite 19)
  and data exceptions (22xxx: too long, out of range). `.sqlstate` and `.constraint` say which.
- `SageQueryError` (Permanent): anything else (syntax, unknown table or column): a programming or
  configuration error that retrying cannot fix.

Limits: one `SageOdbc` is one connection and is not thread-safe: give each thread its own.
The query timeout is set through SQL_ATTR_QUERY_TIMEOUT, which the SQLite driver ignores; for
it the busy timeout in the connection string (`Timeout=` milliseconds) bounds waits on locks.
`fast_executemany` is never used (it crashes the SQLite driver).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyodbc
from pydantic import SecretStr

from connectors.sage100.tables import Table
from sagesf.errors import Permanent, Retriable, SagesfError

log = logging.getLogger(__name__)

__all__ = [
    "Q",
    "SageOdbc",
    "SageQueryError",
    "SageRejected",
    "SageUnavailable",
    "classify",
    "redact_connection_string",
]

Params = Sequence[Any]
Row = tuple[Any, ...]


class SageUnavailable(Retriable):
    """Sage 100 cannot be reached or is busy right now (driver, lock, timeout): try again later."""

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class SageRejected(Permanent):
    """Sage refused the data for good (a duplicate key, a value too long or out of range)."""

    def __init__(self, message: str, sqlstate: str = "", constraint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint


class SageQueryError(Permanent):
    """The SQL itself is wrong for this database (syntax, unknown table or column)."""

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# SQLite result codes the SQLite ODBC driver puts in its HY000 messages: "... (5) (5)"
_SQLITE_CODE = re.compile(r"\((\d+)\)")
_SQLITE_RETRIABLE = {5, 6, 10, 14, 26}  # BUSY, LOCKED, IOERR, CANTOPEN, NOTADB
_SQLITE_REJECTED = {19, 18, 25}  # CONSTRAINT, TOOBIG, RANGE
_UNAVAILABLE_TEXT = re.compile(
    r"locked|busy|timed? ?out|timeout|in use|communication link|connection (?:failure|reset|refused)|"
    r"unable to open|cannot open|could not open|connect failed",
    re.IGNORECASE,
)
_CONSTRAINT = re.compile(r"constraint failed: ([\w., ]+)", re.IGNORECASE)
# a braced value ends at the brace that closes it: `}}` inside is an escaped `}` (PWD={pa}}ss})
_SECRET_ATTR = re.compile(r"(?i)\b(PWD|PASSWORD)\s*=\s*(\{(?:[^}]|\}\})*\}?|[^;]*)")


def redact_connection_string(text: str) -> str:
    """The connection string with PWD/Password values masked, for messages and logs."""
    return _SECRET_ATTR.sub(lambda m: f"{m.group(1)}=**********", text)


def _parts(exc: BaseException) -> tuple[str, str]:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], str):
        return args[0], str(args[1])
    return "", str(exc)


def classify(exc: BaseException, doing: str) -> SagesfError:
    """The sagesf error for a pyodbc error raised while `doing` something (see module doc)."""
    sqlstate, message = _parts(exc)
    message = redact_connection_string(message)
    shown = message if message.startswith("[") or not sqlstate else f"[{sqlstate}] {message}"
    text = f"Sage 100 ODBC error while {doing}: {shown}"
    codes = {int(c) for c in _SQLITE_CODE.findall(message)} if sqlstate == "HY000" else set()
    if (
        sqlstate[:2] in ("08", "40")
        or sqlstate in ("HYT00", "HYT01", "IM002", "IM003", "IM004", "HY001", "HY013")
        or codes & _SQLITE_RETRIABLE
        or (sqlstate in ("HY000", "") and not codes and _UNAVAILABLE_TEXT.search(message))
        or (isinstance(exc, pyodbc.OperationalError) and not codes & _SQLITE_REJECTED)
    ):
        return SageUnavailable(text, sqlstate)
    if sqlstate[:2] in ("23", "22") or codes & _SQLITE_REJECTED or isinstance(exc, pyodbc.IntegrityError):
        found = _CONSTRAINT.search(message)
        return SageRejected(text, sqlstate, found.group(1).strip() if found else None)
    return SageQueryError(text, sqlstate)


class SageOdbc:
    """One ODBC connection to a Sage 100 company (a DSN, or the sandbox's SQLite file)."""

    def __init__(
        self,
        connection_string: str | SecretStr,
        *,
        query_timeout: int = 30,
        login_timeout: int = 10,
        name: str = "sage100",
    ) -> None:
        self._connection_string = (
            connection_string if isinstance(connection_string, SecretStr) else SecretStr(connection_string)
        )
        self.query_timeout = query_timeout
        self.login_timeout = login_timeout
        self.name = name
        self._conn: pyodbc.Connection | None = None

    def __repr__(self) -> str:
        return f"SageOdbc({self.describe()!r})"

    def describe(self) -> str:
        """The connection string with its password masked."""
        return redact_connection_string(self._connection_string.get_secret_value())

    # --- the connection ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def connection(self) -> pyodbc.Connection:
        """The open connection (opened now if needed); SageUnavailable if it cannot be opened."""
        if self._conn is None:
            try:
                conn = pyodbc.connect(
                    self._connection_string.get_secret_value(),
                    autocommit=True,
                    timeout=self.login_timeout,
                )
            except pyodbc.Error as exc:
                error = classify(exc, "connecting")
                if isinstance(error, SageQueryError):  # a bad attribute is not fixed by retrying, but
                    raise SageUnavailable(str(error), error.sqlstate) from exc  # a mount may be
                raise error from exc
            try:
                conn.timeout = self.query_timeout
            except pyodbc.Error:  # a driver without query timeouts: lock waits are bounded elsewhere
                log.debug("driver does not take a query timeout")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except pyodbc.Error:
                log.debug("closing a broken Sage connection failed", exc_info=True)

    def _failed(self, exc: pyodbc.Error, doing: str) -> SagesfError:
        error = classify(exc, doing)
        if isinstance(error, Retriable):
            self.close()  # the connection may be broken: open a fresh one next time
        return error

    # --- reads -------------------------------------------------------------------------------

    def rows(self, sql: str, params: Params = (), batch: int = 5000) -> Iterator[list[Row]]:
        """Run a query and yield its rows in lists of up to `batch` (streamed, not all in memory)."""
        try:
            cursor = self.connection().cursor()
            cursor.execute(sql, *params) if params else cursor.execute(sql)
        except pyodbc.Error as exc:
            raise self._failed(exc, "querying") from exc
        try:
            while True:
                try:
                    chunk = cursor.fetchmany(batch)
                except pyodbc.Error as exc:
                    raise self._failed(exc, "reading rows") from exc
                if not chunk:
                    return
                yield [tuple(r) for r in chunk]
        finally:
            try:
                cursor.close()
            except pyodbc.Error:
                log.debug("closing a cursor failed", exc_info=True)

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        out: list[Row] = []
        for chunk in self.rows(sql, params):
            out.extend(chunk)
        return out

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        for chunk in self.rows(sql, params, batch=1):
            return chunk[0]
        return None

    def catalog(self, read: Callable[[pyodbc.Cursor], Iterable[Any]]) -> list[Any]:
        """The rows of one ODBC catalog call (`lambda c: c.columns(table=name)`); SageUnavailable
        when it fails: a catalog that cannot be read is a company that cannot be checked or pulled."""
        try:
            cursor = self.connection().cursor()
            try:
                return list(read(cursor))
            finally:
                cursor.close()
        except pyodbc.Error as exc:
            error = classify(exc, "reading the ODBC catalog")
            raise (error if isinstance(error, Retriable) else SageUnavailable(str(error))) from None

    # --- writes ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[pyodbc.Cursor]:
        """One unit of writes: commit when the block ends, roll back on any exception.

        pyodbc errors raised inside the block come out classified (SageUnavailable, SageRejected,
        SageQueryError); anything else is re-raised as it is, after the rollback.
        """
        conn = self.connection()
        try:
            conn.autocommit = False
            cursor = conn.cursor()
        except pyodbc.Error as exc:
            raise self._failed(exc, "starting a transaction") from exc
        try:
            yield cursor
            conn.commit()
        except BaseException as exc:
            try:
                conn.rollback()
            except pyodbc.Error:
                log.debug("rollback failed", exc_info=True)
            if isinstance(exc, pyodbc.Error):
                raise self._failed(exc, "writing") from exc
            raise
        finally:
            if self.connected:  # not dropped by a failure above
                try:
                    cursor.close()
                    conn.autocommit = True
                except pyodbc.Error:
                    self.close()

    def execute(self, sql: str, params: Params = ()) -> int:
        """One statement in its own transaction; returns the row count."""
        with self.transaction() as cursor:
            cursor.execute(sql, *params) if params else cursor.execute(sql)
            return int(cursor.rowcount)


@dataclass(frozen=True)
class Q:
    """SQL text builders for one table: only layout names go into the text, values are `?`.

    `Q(table).select(["CustomerNo"], where=Q(table).equals(["ARDivisionNo"]))` ->
    `SELECT AR_Customer.CustomerNo FROM AR_Customer WHERE AR_Customer.ARDivisionNo = ?`.
    Columns are qualified with the table name (not an alias) so one builder serves both plain
    queries and the `{oj ...}` joins, which ProvideX reads without aliases.
    """

    table: Table

    def col(self, name: str) -> str:
        self.table.column(name)  # KeyError naming table and column: never an unchecked name
        return f"{self.table.name}.{name}"

    def cols(self, names: Sequence[str]) -> str:
        return ", ".join(self.col(n) for n in names)

    def equals(self, names: Sequence[str]) -> str:
        """`T.A = ? AND T.B = ?` for the given columns."""
        return " AND ".join(f"{self.col(n)} = ?" for n in names)

    def key_equals(self) -> str:
        return self.equals(self.table.key)

    def changed_since(self, *, morning: bool) -> str:
        """The change-poll criterion: 4 parameters (date, date, date, time), 2 more if `morning`.

        `(DateUpdated > :d) OR (DateUpdated = :d AND TimeUpdated >= :t)`, with a leading
        `DateUpdated >= :d` conjunct that a SQL engine with an index on DateUpdated uses (the
        ProvideX driver reads the whole table either way). TimeUpdated is text compared as text,
        which orders decimal hours correctly only when every value has a two-digit hour; with
        `morning` (a watermark before 10:00) the criterion also admits every time that has a
        two-digit hour (`TimeUpdated >= '10' AND TimeUpdated < '24'`, as 2 parameters), so
        unpadded values such as "14.5" are never missed. The caller filters the few extra rows
        this admits by their exact change stamp.
        """
        d, t = self.col("DateUpdated"), self.col("TimeUpdated")
        time_test = f"{t} >= ?" if not morning else f"({t} >= ? OR ({t} >= ? AND {t} < ?))"
        return f"{d} >= ? AND (({d} > ?) OR ({d} = ? AND {time_test}))"

    def select(
        self,
        names: Sequence[str],
        *,
        where: str = "",
        order_by: Sequence[str] = (),
    ) -> str:
        sql = f"SELECT {self.cols(names)} FROM {self.table.name}"  # noqa: S608 - layout names only
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {self.cols(order_by)}"
        return sql

    def outer_join(self, right: Table, on: Sequence[str]) -> str:
        """`{oj LEFT LEFT OUTER JOIN RIGHT ON LEFT.K = RIGHT.K ...}`: every left row, matched or not."""
        other = Q(right)
        cond = " AND ".join(f"{self.col(n)} = {other.col(n)}" for n in on)
        return f"{{oj {self.table.name} LEFT OUTER JOIN {right.name} ON {cond}}}"

    def insert(self, names: Sequence[str]) -> str:
        for n in names:
            self.table.column(n)
        marks = ", ".join("?" for _ in names)
        return f"INSERT INTO {self.table.name} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608

    def update(self, names: Sequence[str], where: str) -> str:
        for n in names:
            self.table.column(n)
        sets = ", ".join(f"{n} = ?" for n in names)
        return f"UPDATE {self.table.name} SET {sets} WHERE {where}"  # noqa: S608

    def delete(self, where: str) -> str:
        return f"DELETE FROM {self.table.name} WHERE {where}"  # noqa: S608
