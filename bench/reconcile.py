"""What a reconciliation sweep costs as a company grows (sagesf/reconcile.py and its hooks).

Runs the Salesforce emulator as a subprocess and the Sage sandbox database, links every Sage
customer and item to a Salesforce record holding what the mappings carry (sObject Collections,
200 a call), then sweeps with the parts `sagesf reconcile` assembles (the two snapshot hooks and
the processors' judge; no Kafka: nothing is repaired). Prints, per size, the Salesforce API calls
and Sage queries of a sweep, its time and records compared per second, and the drift found
after editing 1% of the Accounts. Aim (issue 13, item 4): a handful of calls whatever the size.

    .venv/bin/python bench/reconcile.py [--sizes 100,1000,5000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from connectors.sage100.components import SAGE_SOURCE
from connectors.salesforce.components import SALESFORCE_SOURCE
from connectors.salesforce.initial_load import SalesforceLoadSettings
from connectors.salesforce.source import SalesforceSourceSettings
from processors.component import PROCESSORS
from processors.config import ProcessorSettings
from processors.reconcile import MappingJudge
from sagesf.config import Settings
from sagesf.reconcile import SAGE, SALESFORCE, Reconciler, SnapshotRequest
from sagesf.runner import Process
from sandbox.sage100.database import create_database, seed
from sandbox.salesforce.harness import RunningEmulator, start_emulator

CHUNK = 200  # records per sObject Collections call


def _reconciler(emulator: RunningEmulator, sage: Any) -> tuple[Reconciler, list[Process]]:
    login = emulator.settings()
    core = Settings()
    processes = [
        Process.of("salesforce-source", core, login, SalesforceSourceSettings(), SalesforceLoadSettings()),
        Process.of("sage-source", core, sage),
        Process.of("processors", core, ProcessorSettings()),
    ]
    assert SALESFORCE_SOURCE.snapshot is not None
    assert SAGE_SOURCE.snapshot is not None
    assert PROCESSORS.judge is not None
    readers = {
        SALESFORCE: SALESFORCE_SOURCE.snapshot(processes[0]),
        SAGE: SAGE_SOURCE.snapshot(processes[1]),
    }
    return Reconciler(readers, PROCESSORS.judge(processes[2])), processes


def _create(sf: Any, records: list[dict[str, Any]]) -> list[str]:
    ids = []
    for start in range(0, len(records), CHUNK):
        body = {"allOrNone": True, "records": records[start : start + CHUNK]}
        ids += [str(r["id"]) for r in sf.restful("composite/sobjects", method="POST", json=body)]
    return ids


def _link(reconciler: Reconciler, sf: Any) -> list[str]:
    """Accounts and Product2s for every Sage customer and item, as the mappings carry them."""
    judge = reconciler.judge
    assert isinstance(judge, MappingJudge)
    entities = reconciler.readers[SAGE].read(SnapshotRequest()).entities
    accounts = [
        {"attributes": {"type": "Account"}, **judge.account_fields(e.record), "ExternalID__c": e.key}
        for e in entities
        if e.kind == "customer"
    ]
    products = [
        {
            "attributes": {"type": "Product2"},
            **judge.item_fields(e.record),
            **judge.stock_fields(e.record),
            "ProductCode": e.key,
            "Sage_Item_Code__c": e.key,
        }
        for e in entities
        if e.kind == "item"
    ]
    _create(sf, products)
    return _create(sf, accounts)


def _measure(size: int, folder: Path) -> dict[str, Any]:
    emulator = start_emulator(folder / "salesforce")
    processes: list[Process] = []
    try:
        db = create_database(folder / "sage100.db")
        seed(db, customers=size, items=max(4, size // 10), open_orders=0, completed_orders=0)
        reconciler, processes = _reconciler(emulator, db.settings())
        sf: Any = emulator.connect()
        accounts = _link(reconciler, sf)
        reconciler.sweep()  # describes each object once
        started = time.perf_counter()
        clean = reconciler.sweep()
        seconds = time.perf_counter() - started
        edited = accounts[: max(1, size // 100)]
        for account in edited:
            sf.Account.update(account, {"Phone": "(555) 010-0000"})
        drifted = reconciler.sweep()
        return {
            "records": sum(clean.compared.values()),
            "drift_clean": len(clean.drifts),
            "salesforce_calls": clean.api_calls[SALESFORCE],
            "sage_queries": clean.api_calls[SAGE],
            "seconds": seconds,
            "edited": len(edited),
            "found": len(drifted.drifts),
        }
    finally:
        for process in processes:
            process.close()
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="Sage customers per run, comma-separated")
    args = parser.parse_args()
    head = ("customers", "records", "SF calls", "Sage q.", "sweep s", "rec/s", "edited", "found")
    print(" ".join(f"{h:>9}" for h in head))
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="sagesf-bench-reconcile-") as folder:
            m = _measure(size, Path(folder))
        assert m["drift_clean"] == 0, f"a linked company showed {m['drift_clean']} drifts"
        shown = (size, m["records"], m["salesforce_calls"], m["sage_queries"], f"{m['seconds']:.2f}")
        rest = (f"{m['records'] / m['seconds']:,.0f}", m["edited"], m["found"])
        print(" ".join(f"{v:>9}" for v in (*shown, *rest)))


if __name__ == "__main__":
    main()
