"""Reconciliation on the real broker, the sandbox registry, a Salesforce emulator of its own and
the Sage sandbox database: what a sweep finds, what `--repair` converges, what it costs.

The world: a small Sage company whose customers, items and an order are linked to Salesforce
records carrying exactly what the mappings say (Accounts by ExternalID__c and UDF_SALESFORCE_ID,
Product2s by Sage_Item_Code__c, a Closed Won Opportunity by the order's UDF), so a first sweep
finds nothing. Drift is then made with the pipeline stopped, as users make it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.sage100.components import SAGE_SOURCE, build_command_loop
from connectors.sage100.config import SageSinkSettings
from connectors.salesforce.components import SALESFORCE_SOURCE, build_sink_loop
from connectors.salesforce.config import SalesforceSinkOptions
from connectors.salesforce.initial_load import SalesforceLoadSettings
from connectors.salesforce.snapshot import SalesforceSnapshot
from connectors.salesforce.soql import quote
from connectors.salesforce.source import SalesforceSourceSettings
from processors.component import PROCESSORS
from processors.config import ProcessorSettings
from processors.reconcile import ReloadingJudge
from sagesf import topic_names
from sagesf.config import KafkaSettings, RegistrySettings, Settings
from sagesf.reconcile import SAGE, SALESFORCE, DriftKind, Reconciler, SnapshotRequest, Sweep
from sagesf.reconciler import ReconcileSettings, repair_publisher
from sagesf.retry import RetryPolicy
from sagesf.runner import Process
from sandbox.sage100.database import SandboxDatabase, create_database, seed
from sandbox.sage100.simulator import SageSimulator
from sandbox.salesforce.harness import RunningEmulator, start_emulator
from tests.kit.kafka import committed, count
from tests.kit.stages import run_until

pytestmark = pytest.mark.integration

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
POLL = re.compile(r"/jobs/query/[^/?]+$")  # GET: a query job's state
INTEGRATION = "SGSF"  # the integration user's key in Sage (Sage100Settings default)


class World:
    """A linked company on both sides, the reconciler's parts, and the two sinks on test topics."""

    def __init__(self, root: Path, bootstrap: str, registry_url: str, new_topic: Any, customers: int) -> None:
        self.bootstrap = bootstrap
        self.emulator: RunningEmulator = start_emulator(root / "salesforce")
        self.db: SandboxDatabase = create_database(root / "sage100.db")
        seed(self.db, customers=customers, items=4, open_orders=1, completed_orders=0)
        self.sage = SageSimulator(self.db)
        self.sf: Any = self.emulator.connect()
        self.core = Settings(
            kafka=KafkaSettings(bootstrap_servers=bootstrap),
            registry=RegistrySettings(url=registry_url, auto_register=True),
        )
        tag = uuid.uuid4().hex[:8]
        self.sage_sink = SageSinkSettings(
            commands_topic=new_topic("sage-commands"),
            results_topic=new_topic("sage-results"),
            dead_letter_topic=new_topic("sage-dlq"),
            group_id=f"sage-sink-{tag}",
            credit_enabled=False,
            consumer_config=FAST_GROUP,
        )
        self.sf_sink = SalesforceSinkOptions(
            commands_topic=new_topic("sf-commands"),
            results_topic=new_topic("sf-results"),
            dead_letter_topic=new_topic("sf-dlq"),
            group_id=f"sf-sink-{tag}",
            consumer_config=FAST_GROUP,
        )
        self.settings = ReconcileSettings(
            topics={
                topic_names.SAGE_COMMANDS: self.sage_sink.commands_topic,
                topic_names.SALESFORCE_COMMANDS: self.sf_sink.commands_topic,
            }
        )
        self.processes: list[Process] = []
        judge = self._part(PROCESSORS.judge, "processors", ProcessorSettings())
        assert isinstance(judge, ReloadingJudge)
        self.judge = judge.current  # the mappings' judge as the sweeps use it (the files do not change)
        self.reconciler = Reconciler(
            {
                SALESFORCE: self._part(SALESFORCE_SOURCE.snapshot, "salesforce-source", *self._salesforce()),
                SAGE: self._part(SAGE_SOURCE.snapshot, "sage-source", self.db.settings()),
            },
            judge,
        )

    def _salesforce(self) -> tuple[Any, ...]:
        em = self.emulator
        login = em.settings(batch_window=0.5, sink=self.sf_sink)
        return login, SalesforceSourceSettings(), SalesforceLoadSettings(poll_interval=0.1)

    def _part(self, hook: Any, name: str, *settings: Any) -> Any:
        process = Process.of(name, self.core, *settings)
        self.processes.append(process)
        return hook(process)

    def close(self) -> None:
        for process in self.processes:
            process.close()
        self.sage.close()
        self.emulator.stop()

    # --- linking what the company holds --------------------------------------------------------

    def link(self) -> None:
        """Every Sage customer, item and the open order get a Salesforce record holding exactly
        what the mappings carry, linked both ways (what `sagesf link` leaves behind)."""
        snapshot = self.reconciler.readers[SAGE].read(SnapshotRequest())
        for entity in snapshot.entities:
            if entity.kind == "customer":
                fields = {**self.judge.account_fields(entity.record), "ExternalID__c": entity.key}
                account = self.sf.Account.create(fields)["id"]
                division, number = entity.key.split("-", 1)
                self._sage_row(
                    "AR_Customer", ARDivisionNo=division, CustomerNo=number, UDF_SALESFORCE_ID=account
                )
            elif entity.kind == "item":
                fields = {**self.judge.item_fields(entity.record), **self.judge.stock_fields(entity.record)}
                self.sf.Product2.create(
                    {**fields, "ProductCode": entity.key, "Sage_Item_Code__c": entity.key}
                )
        number, division, customer = self.db_row(
            "SELECT SalesOrderNo, ARDivisionNo, CustomerNo FROM SO_SalesOrderHeader ORDER BY SalesOrderNo"
        )
        account = self.account_of(f"{division}-{customer}")
        opportunity = self.sf.Opportunity.create(
            {
                "Name": f"Order {number}",
                "AccountId": account,
                "StageName": "Closed Won",
                "CloseDate": date.today().isoformat(),
                "Sage_Order_No__c": number,
                "Sage_Order_Status__c": self.order_status(number),
            }
        )["id"]
        self._sage_row("SO_SalesOrderHeader", SalesOrderNo=number, UDF_SALESFORCE_ID=opportunity)
        self.opportunity = opportunity

    def _sage_row(self, table: str, **row: Any) -> None:
        self.sage.write_row(table, row, user=INTEGRATION)

    def db_row(self, sql: str, *params: Any) -> tuple[Any, ...]:
        odbc = self.db.odbc()
        try:
            found = odbc.fetchone(sql, list(params))
        finally:
            odbc.close()
        assert found is not None, sql
        return tuple(found)

    def order_status(self, number: str) -> str:
        (code,) = self.db_row("SELECT OrderStatus FROM SO_SalesOrderHeader WHERE SalesOrderNo = ?", number)
        return str(self.judge.mappings.orders.order_status.value_for(code, None))

    def account_of(self, external: str) -> str:
        soql = f"SELECT Id FROM Account WHERE ExternalID__c = {quote(external)}"  # noqa: S608 - quoted
        (found,) = self.sf.query(soql)["records"]
        return str(found["Id"])

    def customers(self) -> list[str]:
        odbc = self.db.odbc()
        try:
            return [
                f"{d}-{n}"
                for d, n in odbc.fetchall("SELECT ARDivisionNo, CustomerNo FROM AR_Customer ORDER BY 1, 2")
            ]
        finally:
            odbc.close()

    def environment(self) -> dict[str, str]:
        """What `sagesf reconcile` reads to see this world (Kafka and the registry: only to repair)."""
        em, sage = self.emulator, self.db.settings()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SAGESF_")}
        return {
            **clean,
            "SAGESF_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "SAGESF_SAGE100__CONNECTION_STRING": self.db.connection_string,
            "SAGESF_SAGE100__UDF_COLUMNS": json.dumps({t: list(c) for t, c in sage.udf_columns.items()}),
            "SAGESF_SALESFORCE__LOGIN_URL": em.url,
            "SAGESF_SALESFORCE__AUTH_FLOW": "password",
            "SAGESF_SALESFORCE__CLIENT_ID": em.client_id,
            "SAGESF_SALESFORCE__CLIENT_SECRET": em.client_secret,
            "SAGESF_SALESFORCE__USERNAME": em.username,
            "SAGESF_SALESFORCE__PASSWORD": em.password,
        }

    def counted_sweep(self) -> Counted:
        """A sweep and the API calls the emulator counted for it, job polls apart."""
        requests: list[tuple[str, str]] = []
        reader = self.reconciler.readers[SALESFORCE]
        assert isinstance(reader, SalesforceSnapshot)

        def listener(request: Any, _: Any) -> None:
            requests.append((str(request.method), str(request.url)))

        reader.api.conn.add_listener(listener)
        before = int(self.emulator.admin("GET", "/admin/api-usage")["used"])
        sweep = self.reconciler.sweep()
        calls = int(self.emulator.admin("GET", "/admin/api-usage")["used"]) - before
        assert calls == sweep.api_calls[SALESFORCE] == len(requests)
        polls = sum(1 for method, url in requests if method == "GET" and POLL.search(url))
        jobs = {url for method, url in requests if method == "DELETE"}
        return Counted(sweep, calls, polls, jobs)

    # --- the stopped pipeline's sinks, run once over what the repair sent ----------------------

    def repair(self, sweep: Sweep) -> int:
        process = Process.of("reconciler", self.core, self.settings)
        try:
            return self.reconciler.repair(sweep, repair_publisher(process, self.settings))
        finally:
            process.close()

    def run_sinks(self) -> None:
        """Both sinks until they committed every command on their topic."""
        sage = Process.of("sage-sink", self.core, self.db.settings(), self.sage_sink)
        sf = Process.of("salesforce-sink", self.core, self._salesforce()[0])
        try:
            self._drain(build_command_loop(sage), self.sage_sink.group_id, self.sage_sink.commands_topic)
            sf_loop = build_sink_loop(sf, retry=RetryPolicy(initial=0.2, maximum=2.0))
            self._drain(sf_loop, self.sf_sink.group_id, self.sf_sink.commands_topic)
        finally:
            sage.close()
            sf.close()

    def _drain(self, loop: Any, group: str, topic: str) -> None:
        end = count(self.bootstrap, topic)
        if end:
            run_until(loop, lambda: committed(self.bootstrap, group, topic)[0] >= end, 60, group)


@dataclass
class Counted:
    sweep: Sweep
    calls: int
    polls: int
    jobs: set[str]


def _key(customer: str) -> tuple[str, str]:
    division, number = customer.split("-", 1)
    return division, number


@pytest.fixture
def world(tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str, new_topic: Any) -> Iterator[World]:
    made = World(tmp_path, kafka_bootstrap, schema_registry_url, new_topic, customers=5)
    try:
        made.link()
        yield made
    finally:
        made.close()


def kinds(sweep: Sweep) -> Counter[tuple[str, str, str | None]]:
    return Counter((d.kind.value, d.key, d.field) for d in sweep.drifts)


def test_reconciliation_finds_exactly_the_injected_drifts_and_repair_brings_them_to_zero(
    world: World,
) -> None:
    assert [d.shown() for d in world.reconciler.sweep().drifts] == []  # linked as the mappings say

    phone_edited, renamed, deleted = world.customers()[:3]
    # Sage stamps a change to 0.36 s (TimeUpdated: hours to four decimals), so an edit in the same
    # instant as the link could not be told from it; people edit later than that
    time.sleep(1.0)
    world.sf.Account.update(world.account_of(phone_edited), {"Phone": "(555) 010-2030"})
    world.sage.edit_customer(*_key(renamed), {"CustomerName": "Renamed In Sage Ltd."}, user="KAB")
    world.sage.edit_customer(*_key(deleted), {"CreditLimit": "0.00"}, user="KAB")  # Sage-only data
    world.sf.Account.update(world.account_of(deleted), {"Credit_Limit__c": 0})
    world.sage.delete_customer(*_key(deleted))
    world.sf.Opportunity.update(world.opportunity, {"Sage_Order_No__c": None})

    found = world.reconciler.sweep()

    assert kinds(found) == Counter(
        {
            ("field_mismatch", phone_edited, "telephone_no"): 1,
            ("field_mismatch", renamed, "name"): 1,
            ("missing_in_sage", deleted, None): 1,
            ("order_number_missing", world.opportunity, "Sage_Order_No__c"): 1,
        }
    )
    assert all(d.repair is not None for d in found.drifts)
    assert world.repair(found) == 4
    world.run_sinks()

    assert world.reconciler.sweep().drifts == []
    (phone,) = world.db_row(
        "SELECT TelephoneNo FROM AR_Customer WHERE ARDivisionNo || '-' || CustomerNo = ?", phone_edited
    )
    assert phone == "(555) 010-2030"
    assert world.sf.Account.get(world.account_of(renamed))["Name"] == "Renamed In Sage Ltd."


def test_a_repair_overtaken_by_a_later_sage_edit_does_not_overwrite_it(world: World) -> None:
    customer = world.customers()[0]
    world.sf.Account.update(world.account_of(customer), {"Phone": "(555) 010-1111"})
    found = world.reconciler.sweep()  # the Account is newer: the repair goes to Sage
    (drift,) = found.drifts
    assert drift.kind is DriftKind.FIELD
    assert drift.repair is not None
    assert drift.repair.value is not None
    assert drift.repair.value["source_event_time"] is not None

    later = world.sage.now() + timedelta(seconds=5)  # a Sage user's edit after the sweep
    division, number = customer.split("-", 1)
    world.sage.write_row(
        "AR_Customer",
        {"ARDivisionNo": division, "CustomerNo": number, "TelephoneNo": "(555) 010-9999"},
        user="KAB",
        at=later,
    )
    world.repair(found)
    world.run_sinks()

    (phone,) = world.db_row(
        "SELECT TelephoneNo FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ?", division, number
    )
    assert phone == "(555) 010-9999"


def test_a_sweep_costs_the_same_api_calls_for_10_and_200_records(
    tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str, new_topic: Any
) -> None:
    world = World(tmp_path, kafka_bootstrap, schema_registry_url, new_topic, customers=10)
    try:
        world.link()
        world.reconciler.sweep()  # describes each object once, for the process's life
        small = world.counted_sweep()
        world.sf.restful(
            "composite/sobjects",
            method="POST",
            json={
                "allOrNone": True,
                "records": [{"attributes": {"type": "Account"}, "Name": f"Prospect {i}"} for i in range(190)],
            },
        )
        large = world.counted_sweep()
    finally:
        world.close()

    assert sum(large.sweep.compared.values()) == sum(small.sweep.compared.values()) + 190
    # what a sweep asks: per object a job, its results and its deletion, whatever the records;
    # only how often a job is polled before it completes depends on timing, never on size
    assert large.calls - large.polls == small.calls - small.polls == 3 * len(large.jobs)
    assert len(large.jobs) == len(small.jobs) == 4
    assert large.polls <= 2 * len(large.jobs)
    assert large.sweep.api_calls[SAGE] == small.sweep.api_calls[SAGE] == 5  # one scan per table


def test_the_command_reports_drift_by_kind_and_exits_1_until_it_is_gone(world: World) -> None:
    env = world.environment()
    assert _reconcile(env).returncode == 0  # linked as the mappings say

    world.sf.Opportunity.update(world.opportunity, {"Sage_Order_No__c": None})
    done = _reconcile(env, "--json")

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["drift"] == 1
    assert report["by_kind"]["order_number_missing"]["examples"][0]["key"] == world.opportunity
    assert report["api_calls"]["sage"] == 5


def _reconcile(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sagesf", "reconcile", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
