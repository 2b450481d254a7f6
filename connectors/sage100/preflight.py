"""`sagesf preflight sage`: does the Sage 100 company have the tables, columns and UDFs sagesf needs?

Owns the checks of a company through the ODBC catalog (pyodbc's `Cursor.tables()` and
`Cursor.columns()`, the driver's SQLTables and SQLColumns, which the ProvideX driver and the
sandbox's SQLite driver both answer), against the table layouts of connectors/sage100/tables.py
with the installation's UDF columns (`SAGESF_SAGE100__UDF_COLUMNS`):
- the source's (`SageCatalogChecks.tables` with the tables it polls) and the sink's (every table
  it reads or writes, lookups and history included);
- each table, then each of its columns; a configured `UDF_` column is a "UDF" (Custom Office adds
  it, so the fix says where); a text column narrower than the layout is "different": a value the
  connector lets through would not fit.

Limits: names are compared without regard to case; only text widths are compared (the ProvideX
driver reports its own numeric, date and time types). A table the ODBC user may not read looks
missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors.sage100.config import ENV_PREFIX
from connectors.sage100.odbc import SageOdbc
from connectors.sage100.tables import Column, ColumnKind, Table
from sagesf.preflight import Check, Outcome

__all__ = ["SageCatalogChecks"]

_TEXT_TYPES = ("CHAR", "TEXT", "STRING")  # type names whose column_size is a width in characters


@dataclass
class SageCatalogChecks:
    """The checks of one company's catalog, for `component`; tables are listed once."""

    odbc: SageOdbc
    component: str
    _tables: dict[str, str] | None = None  # lower-case name -> the catalog's name
    _columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tables(self, layouts: Iterable[Table]) -> list[Check]:
        checks = []
        for table in layouts:
            real = self._table_name(table.name)
            if real is None:
                checks.append(self._check("table", table.name, Outcome.MISSING, fix=_missing_table(table)))
                continue
            checks.append(self._check("table", table.name, Outcome.OK))
            found = self._catalog_columns(real)
            checks += [
                self._column(table, column, found.get(column.name.lower())) for column in table.columns
            ]
        return checks

    def _column(self, table: Table, column: Column, found: Any) -> Check:
        udf = column.name.startswith("UDF_")
        kind, name = ("UDF" if udf else "column"), f"{table.name}.{column.name}"
        if found is None:
            return self._check(kind, name, Outcome.MISSING, fix=_missing_column(table, column, udf))
        width = _text_width(found)
        if column.kind is ColumnKind.TEXT and width is not None and column.length and width < column.length:
            detail = f"holds {width} characters, the connector lets {column.length} through"
            fix = f"widen it to {column.length} characters" + (" in Custom Office" if udf else "")
            return self._check(kind, name, Outcome.DIFFERENT, detail, fix)
        return self._check(kind, name, Outcome.OK)

    def _table_name(self, name: str) -> str | None:
        if self._tables is None:
            rows = self.odbc.catalog(lambda cursor: cursor.tables())
            self._tables = {str(row.table_name).lower(): str(row.table_name) for row in rows}
        return self._tables.get(name.lower())

    def _catalog_columns(self, table: str) -> dict[str, Any]:
        if table not in self._columns:
            rows = self.odbc.catalog(lambda cursor: cursor.columns(table=table))
            self._columns[table] = {str(row.column_name).lower(): row for row in rows}
        return self._columns[table]

    def _check(self, kind: str, name: str, outcome: Outcome, detail: str = "", fix: str = "") -> Check:
        return Check(kind, name, outcome, detail, fix, (self.component,))


def _text_width(row: Any) -> int | None:
    type_name = str(getattr(row, "type_name", "") or "").upper()
    size = getattr(row, "column_size", None)
    if not any(t in type_name for t in _TEXT_TYPES) or not isinstance(size, int) or size <= 0:
        return None
    return size


def _missing_table(table: Table) -> str:
    return (
        f"check that {ENV_PREFIX}DSN and __COMPANY (or __CONNECTION_STRING) reach the company's data "
        f"and that the ODBC user may read {table.name}"
    )


def _missing_column(table: Table, column: Column, udf: bool) -> str:
    if udf:
        return (
            f"add it in Custom Office > User-Defined Field and Table Maintenance ({table.name}, "
            f"String {column.length}), or take it out of {ENV_PREFIX}UDF_COLUMNS"
        )
    return f"this Sage 100 release has no {column.name} in {table.name} (sagesf's layouts: sage100/tables.py)"
