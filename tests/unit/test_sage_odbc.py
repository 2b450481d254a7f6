"""The Sage 100 dialect layer on the sandbox database, through unixODBC and the SQLite driver."""

from __future__ import annotations

import os
import sqlite3
from datetime import date
from decimal import Decimal

import pytest

from connectors.sage100.odbc import Q, SageOdbc, SageQueryError, SageRejected, SageUnavailable
from connectors.sage100.values import to_decimal
from sandbox.sage100.database import connection_string, create_database, seed


def test_the_sandbox_driver_takes_providex_escape_syntax_unchanged(sage_db):
    """{oj ...} joins, {d '...'} literals and ? date parameters run as written for ProvideX."""
    customers, contacts = sage_db.tables["AR_Customer"], sage_db.tables["AR_CustomerContact"]
    q = Q(customers)
    odbc = sage_db.odbc()
    sql = (
        f"SELECT {q.cols(['CustomerNo'])}, {Q(contacts).cols(['ContactCode'])} "  # noqa: S608 - layout names
        f"FROM {q.outer_join(contacts, ['ARDivisionNo', 'CustomerNo'])}"
    )
    joined = odbc.fetchall(sql)
    assert len(joined) >= sage_db.count("AR_CustomerContact")
    literal = odbc.fetchall("SELECT COUNT(*) FROM AR_Customer WHERE DateUpdated >= {d '2000-01-01'}")
    param = odbc.fetchall(q.select(["CustomerNo"], where=f"{q.col('DateUpdated')} >= ?"), [date(2000, 1, 1)])
    assert literal[0][0] == len(param) == sage_db.count("AR_Customer")
    odbc.close()


def test_dates_come_back_as_dates_and_money_exact(sage_db):
    items = Q(sage_db.tables["CI_Item"])
    odbc = sage_db.odbc()
    code, price, updated, time_text = odbc.fetchone(
        items.select(
            ["ItemCode", "StandardUnitPrice", "DateUpdated", "TimeUpdated"], where=items.key_equals()
        ),
        ["HRDW-1000"],
    )
    assert isinstance(updated, date)
    assert isinstance(price, str)  # TEXT: exact, converted in sage100.values
    assert str(to_decimal(price, 6)) == price  # "123.450000": six decimals, as stored
    assert len(time_text) == 7  # "09.5012"
    assert time_text[2] == "."
    # a decimal parameter is stored exactly
    odbc.execute(items.update(["StandardUnitPrice"], items.key_equals()), [Decimal("12345678.123456"), code])
    assert (
        odbc.fetchone(items.select(["StandardUnitPrice"], where=items.key_equals()), [code])[0]
        == "12345678.123456"
    )
    odbc.close()


def test_errors_are_classified(sage_db):
    odbc = sage_db.odbc()
    items = Q(sage_db.tables["CI_Item"])
    with pytest.raises(SageRejected) as rejected:
        odbc.execute(items.insert(["ItemCode", "ItemType"]), ["HRDW-1000", "1"])
    assert "CI_Item.ItemCode" in (rejected.value.constraint or "")
    with pytest.raises(SageQueryError):
        odbc.fetchall("SELECT NoSuchColumn FROM CI_Item")
    with pytest.raises(KeyError, match="CI_Item has no column 'Bobby'"):
        items.select(["Bobby"])
    odbc.close()


def test_a_locked_database_is_unavailable_not_an_error(sage_db):
    holder = sqlite3.connect(sage_db.path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE CI_Item SET ItemCodeDesc = 'x' WHERE ItemCode = 'HRDW-1000'")
    odbc = SageOdbc(connection_string(sage_db.path, timeout=0.2))
    try:
        with pytest.raises(SageUnavailable, match="locked"):
            odbc.fetchall("SELECT COUNT(*) FROM CI_Item")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert odbc.fetchall("SELECT COUNT(*) FROM CI_Item")[0][0] == 200  # reconnects by itself
    odbc.close()


def test_a_missing_database_file_is_unavailable_and_never_created(tmp_path):
    path = tmp_path / "gone.db"
    odbc = SageOdbc(connection_string(path), login_timeout=2)
    with pytest.raises(SageUnavailable):
        odbc.fetchall("SELECT 1")
    assert not path.exists()


def test_passwords_never_appear_in_descriptions_or_errors():
    odbc = SageOdbc("DSN=NoSuchDsn;UID=sgsf;PWD=hunter2-secret", login_timeout=1)
    assert "hunter2" not in repr(odbc)
    with pytest.raises(SageUnavailable) as exc:
        odbc.fetchall("SELECT 1")
    assert "hunter2" not in str(exc.value)


def test_sandbox_database_has_the_demo_company(tmp_path):
    db = create_database(tmp_path / "s.db", {"AR_Customer": ["UDF_SALESFORCE_ID", "UDF_REGION"]})
    summary = seed(db)
    assert summary.customers >= 50
    assert summary.items >= 200
    assert summary.open_orders > 0
    odbc = db.odbc()
    q = Q(db.tables["IM_ItemWarehouse"])
    warehouses = odbc.fetchall(f"SELECT DISTINCT {q.col('WarehouseCode')} FROM IM_ItemWarehouse")  # noqa: S608
    assert len(warehouses) == 3
    assert db.tables["AR_Customer"].has("UDF_REGION")
    odbc.fetchall(Q(db.tables["AR_Customer"]).select(["UDF_REGION"]))
    odbc.close()
    assert os.path.exists(db.path)
