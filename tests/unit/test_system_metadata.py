"""What `sagesf mappings pull` makes of what the systems say: Sage-style types from ODBC catalog
rows (a real ProvideX driver's numeric columns, not only the sandbox's SQLite), the changes it
prints, and typed UDF names."""

from __future__ import annotations

from typing import Any, NamedTuple

import pyodbc
import pytest

from connectors.sage100.catalog_metadata import sage_type
from connectors.sage100.config import Sage100Settings
from connectors.sage100.tables import TABLES, layouts
from connectors.salesforce.org_metadata import field_entry
from sagesf.config import ConfigError, load_settings
from sagesf.system_metadata import changes


class Row(NamedTuple):
    data_type: int
    type_name: str
    column_size: Any
    decimal_digits: Any = None


CUSTOMER = TABLES["AR_Customer"]


@pytest.mark.parametrize(
    ("row", "known", "expected"),
    [
        (Row(pyodbc.SQL_NUMERIC, "NUMERIC", 13, 2), None, "N13.2"),  # a UDF the layout does not know
        (
            Row(pyodbc.SQL_DECIMAL, "DECIMAL", 15, 6),
            CUSTOMER.column("CreditLimit"),
            "N15.6",
        ),  # the catalog wins
        (Row(pyodbc.SQL_TYPE_DATE, "DATE", 10), None, "date"),
        (Row(pyodbc.SQL_VARCHAR, "VARCHAR", 40), CUSTOMER.column("CustomerName"), "S40"),  # a newer release
        (Row(pyodbc.SQL_VARCHAR, "VARCHAR", 8), CUSTOMER.column("TimeUpdated"), "time"),
        (Row(pyodbc.SQL_LONGVARCHAR, "TEXT", 0), CUSTOMER.column("CreditLimit"), "N13.2"),  # SQLite's TEXT
        (Row(pyodbc.SQL_LONGVARCHAR, "TEXT", 0), None, None),  # no width, no layout: cannot be told
    ],
)
def test_a_catalog_column_gets_its_sage_type(row: Row, known: Any, expected: str | None) -> None:
    assert sage_type(row, known) == expected


def test_a_describe_field_is_required_only_when_a_create_without_it_fails() -> None:
    base = {"type": "string", "label": "X", "length": 80, "createable": True, "updateable": True}
    assert field_entry({**base, "nillable": False, "defaultedOnCreate": False})["required"] is True
    assert "required" not in field_entry({**base, "nillable": False, "defaultedOnCreate": True})
    assert "required" not in field_entry({**base, "nillable": True, "defaultedOnCreate": False})
    read_only = field_entry({**base, "nillable": False, "createable": False, "updateable": False})
    assert (read_only.get("required"), read_only["createable"], read_only["updateable"]) == (
        None,
        False,
        False,
    )


def test_the_changes_name_what_was_added_removed_and_changed() -> None:
    before = {
        "tables": {"AR_Customer": {"key": ["CustomerNo"], "columns": {"City": "S20", "UDF_OLD": "S30"}}}
    }
    after = {"tables": {"AR_Customer": {"key": ["CustomerNo"], "columns": {"City": "S30", "UDF_NEW": "S4"}}}}
    assert changes(before, after) == [
        "+ AR_Customer.UDF_NEW",
        "- AR_Customer.UDF_OLD",
        "~ AR_Customer.City: S20 -> S30",
    ]
    assert changes(after, after) == []


def test_a_udf_may_carry_its_width_and_a_wrong_one_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tier = layouts({"AR_Customer": ["UDF_CUSTOMER_TIER:S4"]})["AR_Customer"].column("UDF_CUSTOMER_TIER")
    assert tier.length == 4
    monkeypatch.setenv("SAGESF_SAGE100__DSN", "SOTAMAS90")
    monkeypatch.setenv("SAGESF_SAGE100__UDF_COLUMNS", '{"AR_Customer": ["UDF_TIER:Q4"]}')
    with pytest.raises(ConfigError, match="UDF_COLUMNS"):
        load_settings(Sage100Settings)
