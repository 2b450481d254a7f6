"""`sagesf mappings pull --sage`: the company's tables and columns, read from the ODBC catalog.

Owns sage-sink's `metadata` hook (sagesf.runner `Component.metadata`): for every table of
connectors/sage100/tables.py, SQLColumns (pyodbc `Cursor.columns()`) lists every column the
company has, each `UDF_` column included whether `SAGESF_SAGE100__UDF_COLUMNS` names it or not,
in the catalog's order; SQLPrimaryKeys gives the key (the layout's key when the driver gives
none). Each column gets its Sage-style type, the format of mappings/metadata/sage100.yaml
(processors/metadata.py): `S<length>` text, `N<precision>.<scale>` numbers, `date`, `time`.

How a catalog type becomes a Sage type: dates and timestamps are `date`; numeric types are
`N<column size>.<decimal digits>`; text is `S<column size>`, except where the layout knows better:
TimeCreated/TimeUpdated hold decimal hours as 8 characters (`time`), and a decimal the catalog
reports as width-less text (the sandbox's SQLite keeps exact decimals as TEXT) takes the layout's
`N<p>.<s>`. A column whose type cannot be told (width-less text the layout does not know) is left
out and named in `missing`, as is a table the company lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyodbc

from connectors.sage100.config import Sage100Settings
from connectors.sage100.odbc import SageOdbc
from connectors.sage100.tables import TABLES, Column, ColumnKind, Table
from sagesf.system_metadata import PulledMetadata

__all__ = ["CatalogReader", "sage_type", "source_of"]

_DATES = frozenset({pyodbc.SQL_TYPE_DATE, pyodbc.SQL_TYPE_TIMESTAMP, 9, 11})  # 9, 11: ODBC 2 codes
_NUMBERS = frozenset(
    {
        pyodbc.SQL_NUMERIC,
        pyodbc.SQL_DECIMAL,
        pyodbc.SQL_INTEGER,
        pyodbc.SQL_SMALLINT,
        pyodbc.SQL_FLOAT,
        pyodbc.SQL_REAL,
        pyodbc.SQL_DOUBLE,
        pyodbc.SQL_BIGINT,
        pyodbc.SQL_TINYINT,
    }
)


class CatalogReader:
    """The catalog of one company, read through `odbc`; `source` names it (never the password)."""

    def __init__(self, odbc: SageOdbc, source: str) -> None:
        self.odbc = odbc
        self.source = source

    def read(self, layouts: Iterable[Table] = TABLES.values()) -> PulledMetadata:
        present = {
            str(row.table_name).lower(): str(row.table_name)
            for row in self.odbc.catalog(lambda c: c.tables())
        }
        tables: dict[str, Any] = {}
        missing: list[str] = []
        for layout in layouts:
            real = present.get(layout.name.lower())
            if real is None:
                missing.append(layout.name)
                continue
            tables[layout.name] = self._table(layout, real, missing)
        return PulledMetadata("Sage 100", self.source, {"tables": tables}, tuple(missing))

    def _table(self, layout: Table, real: str, missing: list[str]) -> dict[str, Any]:
        columns: dict[str, str] = {}
        for row in self.odbc.catalog(lambda c: c.columns(table=real)):
            name = str(row.column_name)
            known = layout.column(name) if layout.has(name) else None
            typed = sage_type(row, known)
            if typed is None:
                missing.append(f"{layout.name}.{name} (type {row.type_name} has no Sage 100 form)")
            else:
                columns[known.name if known else name] = typed
        keys = sorted(self.odbc.catalog(lambda c: c.primaryKeys(table=real)), key=lambda r: int(r.key_seq))
        key = [str(row.column_name) for row in keys] or list(layout.key)
        return {"key": key, "columns": columns}


def sage_type(row: Any, known: Column | None) -> str | None:
    """The Sage-style type of a catalog row (SQLColumns), with the layout's column when it has one."""
    data_type, size = row.data_type, row.column_size if isinstance(row.column_size, int) else 0
    if data_type in _DATES:
        return "date"
    if data_type in _NUMBERS and size > 0:
        return f"N{size}.{row.decimal_digits or 0}"
    if known is not None and known.kind is ColumnKind.TIME:
        return "time"
    if known is not None and known.kind is ColumnKind.DECIMAL:
        return f"N{known.precision}.{known.scale}"
    return f"S{size}" if size > 0 else None


def source_of(settings: Sage100Settings) -> str:
    """Where the catalog was read, without any secret: the DSN and company, or only that a
    connection string was used (it may hold a password as a whole)."""
    if settings.connection_string is not None:
        return "the ODBC connection string SAGESF_SAGE100__CONNECTION_STRING"
    company = f", company {settings.company}" if settings.company else ""
    return f"ODBC DSN {settings.dsn}{company}"
