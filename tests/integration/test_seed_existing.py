"""`sagesf sandbox seed existing` writes the generated company into a fresh Salesforce emulator and
Sage database, with its ground truth beside them; seeding again writes nothing, and a target
with data of its own is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.sage100.database import create_database
from sandbox.salesforce.harness import start_emulator
from sandbox.seed_existing import SeedRefused, seed_existing


def test_the_company_lands_on_both_sides_with_its_truth_and_only_once(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path / "salesforce")
    try:
        sf = emulator.connect_other()
        db = create_database(tmp_path / "sage100.db")
        truth_path = tmp_path / "truth.json"
        result = seed_existing(sf, db, customers=40, seed=3, truth_path=truth_path)
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        accounts = sf.query_all("SELECT Id, Name, ExternalID__c FROM Account")["records"]
        won = sf.query("SELECT COUNT() FROM Opportunity WHERE StageName = 'Closed Won'")["totalSize"]
        assert len(accounts) == len(result.company.accounts)
        assert db.count("AR_Customer") == len(result.company.sage_customers) == truth["customers"]
        assert {p["account_id"] for p in truth["customer_pairs"]} <= {a["Id"] for a in accounts}
        assert won == len(truth["orders"]) == db.count("SO_SalesOrderHistoryHeader")
        odbc = db.odbc()
        try:
            linked = odbc.fetchall("SELECT UDF_SALESFORCE_ID FROM AR_Customer WHERE UDF_SALESFORCE_ID <> ''")
            orders_with_udf = odbc.fetchall(
                "SELECT COUNT(*) FROM SO_SalesOrderHistoryHeader WHERE UDF_SALESFORCE_ID <> ''"
            )
        finally:
            odbc.close()
        assert {udf for (udf,) in linked} == {
            p["account_id"] for p in truth["customer_pairs"] if p["linked_in_sage"]
        }
        assert orders_with_udf == [(0,)]  # entered by hand before go-live

        again = seed_existing(sf, db, customers=40, seed=3, truth_path=truth_path)
        assert not again.written
        assert len(sf.query_all("SELECT Id FROM Account")["records"]) == len(accounts)
        with pytest.raises(SeedRefused, match="Accounts already"):
            seed_existing(sf, db, customers=40, seed=4, truth_path=tmp_path / "other.json")
    finally:
        emulator.stop()
