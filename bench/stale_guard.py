"""What the Salesforce sink's stale-command check costs in API calls (connectors/salesforce/stale_guard.py).

Runs the emulator as a subprocess and the sink's own parts (`SalesforceSink` with its writer and
`StaleGuard`, as `sagesf run salesforce-sink` assembles them, without Kafka) over N Accounts:

1. live: N fresh updates (seconds old, not compared);
2. replayed: the same N changes again, older than what the sink wrote since (all STALE);
3. lagging: N changes 10 minutes old but newer than the records (compared, then written).

Prints API calls and calls per record for each, as the emulator counts them. Aim (issue 13, item
5): live traffic pays no extra call; a checked batch one query per 200 records.

    .venv/bin/python bench/stale_guard.py [--accounts 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.salesforce.budget import ApiBudget
from connectors.salesforce.client import connect
from connectors.salesforce.components import build_stale_guard
from connectors.salesforce.sink import SalesforceSink
from connectors.salesforce.soql import quote_like
from connectors.salesforce.writer import SalesforceWriter
from sagesf.sink import Inbound, Outcome
from sandbox.salesforce.harness import RunningEmulator, start_emulator


def _command(account: str, phone: str, when: datetime) -> dict[str, Any]:
    return {
        "envelope": {"correlation_id": None},
        "command_id": str(uuid.uuid4()),
        "operation": "UPDATE",
        "sobject": "Account",
        "record_id": account,
        "fields": {"Phone": phone},
        "source_event_time": when,
    }


def _batch(accounts: list[str], phone: str, when: datetime) -> list[Inbound]:
    return [
        Inbound("bench", 0, i, None, None, value=_command(a, phone, when)) for i, a in enumerate(accounts)
    ]


def _outcomes(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(str(o.result.value["outcome"]) for o in outcomes if o.result and o.result.value)


def _used(emulator: RunningEmulator) -> int:
    return int(emulator.admin("GET", "/admin/api-usage")["used"])


def run(emulator: RunningEmulator, count: int) -> list[tuple[str, int, Counter[str]]]:
    settings = emulator.settings(call_options_client="bench")
    conn = connect(settings)
    budget = ApiBudget(1.0, 300)
    guard = build_stale_guard(conn, budget, settings)
    guard.check_fields()
    sink = SalesforceSink(writer=SalesforceWriter(conn, budget), results_topic="bench", guard=guard)
    sf: Any = emulator.connect(client="bench")
    tag = uuid.uuid4().hex[:8]
    created = sf.bulk2.Account.insert(records=[{"Name": f"Stale {tag} {i}"} for i in range(count)], wait=0.2)
    assert created[0]["numberRecordsFailed"] == 0
    accounts = [
        r["Id"]
        for r in sf.query_all(
            "SELECT Id FROM Account WHERE Name LIKE " + quote_like(f"Stale {tag} ", "prefix")  # noqa: S608
        )["records"]
    ]
    now = datetime.now(UTC)
    runs = [
        ("live (seconds old)", _batch(accounts, "(617) 555-0101", now)),
        ("replayed, older than the records", _batch(accounts, "(617) 555-0100", now - timedelta(minutes=20))),
    ]
    figures = []
    for name, batch in runs:
        before = _used(emulator)
        outcomes = sink.write(batch)
        calls = _used(emulator) - before
        figures.append((name, calls, _outcomes(outcomes)))
    # a lagging sink: old changes, newer than what the records hold (the version is "now" - 1 h)
    lagging_version = now - timedelta(hours=1)
    for i in range(0, len(accounts), 200):  # records whose last write carried an older change
        chunk = [{"Id": a, "Sage_Synced_At__c": lagging_version.isoformat()} for a in accounts[i : i + 200]]
        sf.bulk2.Account.update(records=chunk, wait=0.2)
    batch = _batch(accounts, "(617) 555-0102", now - timedelta(minutes=10))
    before = _used(emulator)
    outcomes = sink.write(batch)
    calls = _used(emulator) - before
    figures.append(
        (
            "lagging, older than 5 min, newer",
            calls,
            _outcomes(outcomes),
        )
    )
    conn.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=2000, help="Accounts per run (default 2000)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sf-stale-bench-") as directory:
        emulator = start_emulator(Path(directory))
        try:
            figures = run(emulator, args.accounts)
        finally:
            emulator.stop()
    print(f"stale-command check, {args.accounts} Account updates per run (Collections, 200 a request):")
    for name, calls, outcomes in figures:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        print(f"  {name:<34} {calls:5d} API calls  {calls / args.accounts:.4f} per record  ({shown})")


if __name__ == "__main__":
    main()
