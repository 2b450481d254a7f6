"""Every process starts while a dependency is down, says so on /healthz, and works once it is back.

Each case starts the real process (`python -m sagesf run <component>`) with one dependency down:
the Sage 100 database moved away or locked (sage-source, sage-sink), the Salesforce emulator
stopped (salesforce-source, salesforce-sink), the schema registry not started yet (all five).
The process keeps running and answers /healthz with "degraded" naming the dependency (200: a
supervisor must not restart it, restarting would not help); once the dependency is back it does
its work: a sink answers a command sent while it waited, a source publishes a change, the
processors consume. Wrong credentials are not "down": they still stop the process with exit 2.

The components are driven through the conformance suite's adapters (tests/conformance), on an
emulator and a registry of this module's own, so stopping them disturbs no other test.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from processors.config import TOPICS as PROCESSOR_TOPICS
from sagesf.serde import AvroSerde
from sandbox.processes import free_port
from sandbox.registry import RegistryProcess
from sandbox.sage100.database import SandboxDatabase
from sandbox.salesforce.harness import RunningEmulator, start_emulator
from tests.conformance.harness import SinkUnderTest, SourceUnderTest
from tests.conformance.processes import ComponentProcess, wait_until
from tests.conformance.protocol import Stack
from tests.conformance.sage import SageSinkAdapter, SageSourceAdapter
from tests.conformance.salesforce import SalesforceSinkAdapter, SalesforceSourceAdapter, login_env
from tests.integration.test_processors import World

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SAGE, SALESFORCE, REGISTRY = "sage100", "salesforce", "schema-registry"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """This module's own emulator: the cases stop and restart it."""
    running = start_emulator(tmp_path_factory.mktemp("emulator"))
    try:
        yield running
    finally:
        running.stop()


class LateRegistry:
    """A schema registry that is not started yet: its URL now, `start()` when the case says so."""

    def __init__(self, data_dir: Path, bootstrap: str) -> None:
        self.topic = f"_schemas-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bootstrap = bootstrap
        self.process = RegistryProcess(data_dir, port=self.port, topic=self.topic)

    def start(self) -> None:
        assert self.process.start(self.bootstrap) == self.url


@pytest.fixture
def registry(tmp_path: Path, kafka_admin: AdminClient, kafka_bootstrap: str) -> Iterator[LateRegistry]:
    late = LateRegistry(tmp_path / "registry", kafka_bootstrap)
    try:
        yield late
    finally:
        late.process.stop()
        if late.topic in kafka_admin.list_topics(timeout=30).topics:
            kafka_admin.delete_topics([late.topic])[late.topic].result(timeout=30)


def make_stack(
    kafka_bootstrap: str,
    registry_url: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    fixtures: dict[str, Any],
) -> Stack:
    return Stack(kafka_bootstrap, registry_url, new_topic, tmp_path, fixtures.__getitem__)


def wait_degraded(process: ComponentProcess, dependency: str, timeout: float = 60.0) -> dict[str, Any]:
    """Until /healthz says "degraded" because `dependency` is down; the process must stay up."""
    seen: dict[str, Any] = {}

    def degraded() -> bool:
        nonlocal seen
        assert process.running(), (
            f"{process.component} exited with {process.returncode()}:\n{process.log_tail()}"
        )
        seen = process.health() or {}
        component = seen.get("components", {}).get(dependency, {})
        return seen.get("status") == "degraded" and component.get("status") == "degraded"

    try:
        wait_until(degraded, timeout, f"{process.component} degraded naming {dependency}", every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last /healthz: {seen}\n{process.log_tail()}") from None
    return seen


def assert_short_reason(health: dict[str, Any]) -> None:
    """Sage's detail on /healthz is a short reason: the driver's own text is in the log only."""
    detail = str(health["components"][SAGE]["detail"])
    assert detail.startswith("Sage 100") or "Sage 100 ODBC error" in detail, detail
    for driver_text in ("[SQLite]", "[HY000]", "(SQL", "(14)", "(5)"):
        assert driver_text not in detail, detail


# --- dependencies down ------------------------------------------------------------------------


@contextmanager
def sage_moved_away(db: SandboxDatabase) -> Iterator[None]:
    """The database files gone, as when the share holding them is offline."""
    parked = db.path.with_suffix(".parked")
    files = [
        (f"{db.path}{s}", f"{parked}{s}") for s in ("", "-wal", "-shm") if os.path.exists(f"{db.path}{s}")
    ]
    for here, there in files:
        os.rename(here, there)
    try:
        yield
    finally:
        for here, there in files:
            os.rename(there, here)


@contextmanager
def sage_locked(db: SandboxDatabase) -> Iterator[None]:
    """An exclusive lock on the database, as a Sage process or a backup holding the files takes."""
    holder = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False, timeout=10)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE AR_Division SET DivisionDesc = DivisionDesc")  # takes the write lock
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextmanager
def emulator_stopped(emulator: RunningEmulator) -> Iterator[None]:
    assert emulator.process.stop()
    try:
        yield
    finally:
        emulator.url = emulator.process.start()  # the same port, data and credentials


SAGE_DOWN: dict[str, Callable[[SandboxDatabase], AbstractContextManager[None]]] = {
    "moved-away": sage_moved_away,
    "locked": sage_locked,
}


# --- Sage down --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", sorted(SAGE_DOWN))
def test_the_sage_sink_starts_while_sage_is_down_and_writes_what_came_meanwhile(
    how: str, sage_db: SandboxDatabase, kafka_bootstrap: str, schema_registry_url: str, new_topic, tmp_path
) -> None:
    stack = make_stack(kafka_bootstrap, schema_registry_url, new_topic, tmp_path, {"sage_db": sage_db})
    adapter = SageSinkAdapter(stack)
    sink = SinkUnderTest(adapter, stack)
    try:
        command = adapter.command(0)
        adapter.odbc.close()  # the test's own connection: an exclusive lock needs it gone
        with SAGE_DOWN[how](sage_db):
            sink.process.start()
            assert_short_reason(wait_degraded(sink.process, SAGE))
            sink.send([command])
        sink.wait_for_answers(1)
        assert adapter.effects(0) == 1
    finally:
        sink.close()


def test_a_process_waiting_for_sage_stops_on_sigterm_with_exit_0(
    sage_db: SandboxDatabase, kafka_bootstrap: str, schema_registry_url: str, new_topic, tmp_path
) -> None:
    stack = make_stack(kafka_bootstrap, schema_registry_url, new_topic, tmp_path, {"sage_db": sage_db})
    sink = SinkUnderTest(SageSinkAdapter(stack), stack)
    try:
        with sage_moved_away(sage_db):
            sink.process.start()
            wait_degraded(sink.process, SAGE)
            sink.process.stop()
            assert sink.process.returncode() == 0, sink.process.log_tail()
    finally:
        sink.close()


@pytest.mark.parametrize("how", sorted(SAGE_DOWN))
def test_the_sage_source_starts_while_sage_is_down_and_publishes_once_it_is_back(
    how: str, sage_db: SandboxDatabase, kafka_bootstrap: str, schema_registry_url: str, new_topic, tmp_path
) -> None:
    stack = make_stack(kafka_bootstrap, schema_registry_url, new_topic, tmp_path, {"sage_db": sage_db})
    adapter = SageSourceAdapter(stack)
    source = SourceUnderTest(adapter, stack)
    try:
        adapter.simulator.close()  # reopened by the change below
        with SAGE_DOWN[how](sage_db):
            source.process.start()
            assert_short_reason(wait_degraded(source.process, SAGE))
        change = adapter.change(0)
        source.wait_published([change], timeout=90)
    finally:
        source.close()


# --- Salesforce down --------------------------------------------------------------------------


def test_the_salesforce_sink_starts_while_salesforce_is_down_and_writes_what_came_meanwhile(
    emulator: RunningEmulator, kafka_bootstrap: str, schema_registry_url: str, new_topic, tmp_path
) -> None:
    stack = make_stack(
        kafka_bootstrap, schema_registry_url, new_topic, tmp_path, {"salesforce_emulator": emulator}
    )
    sink = SinkUnderTest(SalesforceSinkAdapter(stack), stack)
    try:
        command = sink.adapter.command(0)
        with emulator_stopped(emulator):
            sink.process.start()
            wait_degraded(sink.process, SALESFORCE)
            sink.send([command])
        sink.wait_for_answers(1, timeout=90)
        assert sink.adapter.effects(0) == 1
    finally:
        sink.close()


def test_the_salesforce_source_starts_while_salesforce_is_down_and_streams_once_it_is_back(
    emulator: RunningEmulator, kafka_bootstrap: str, schema_registry_url: str, new_topic, tmp_path
) -> None:
    stack = make_stack(
        kafka_bootstrap, schema_registry_url, new_topic, tmp_path, {"salesforce_emulator": emulator}
    )
    source = SourceUnderTest(SalesforceSourceAdapter(stack), stack)
    try:
        with emulator_stopped(emulator):
            source.process.start()
            wait_degraded(source.process, SALESFORCE)
        source.process.wait_ready(source.adapter.ready, timeout=90)
        change = source.adapter.change(0)
        source.wait_published([change])
    finally:
        source.close()


def test_wrong_salesforce_credentials_still_stop_the_process_with_exit_2(
    emulator: RunningEmulator, tmp_path: Path, kafka_bootstrap: str, schema_registry_url: str
) -> None:
    env = {
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SAGESF_REGISTRY__URL": schema_registry_url,
        **login_env(emulator, "sagesf"),
        "SAGESF_SALESFORCE__PASSWORD": "not-the-password",
    }
    process = ComponentProcess("salesforce-sink", env, tmp_path).start()
    assert process.wait_exit(60) == 2, process.log_tail()
    assert "salesforce-sink: " in process.log_text()


# --- the registry down ------------------------------------------------------------------------


@pytest.mark.parametrize("component", ["sage-sink", "salesforce-sink"])
def test_a_sink_starts_while_the_registry_is_down_and_answers_once_it_is_back(
    component: str,
    registry: LateRegistry,
    sage_db: SandboxDatabase,
    emulator: RunningEmulator,
    kafka_bootstrap: str,
    new_topic,
    tmp_path,
) -> None:
    fixtures = {"sage_db": sage_db, "salesforce_emulator": emulator}
    stack = make_stack(kafka_bootstrap, registry.url, new_topic, tmp_path, fixtures)
    adapter = SageSinkAdapter(stack) if component == "sage-sink" else SalesforceSinkAdapter(stack)
    sink = SinkUnderTest(adapter, stack)
    try:
        sink.process.start()
        wait_degraded(sink.process, REGISTRY)
        registry.start()
        sink.send([adapter.command(0)])
        sink.wait_for_answers(1, timeout=90)
        assert adapter.effects(0) == 1
    finally:
        sink.close()


@pytest.mark.parametrize("component", ["sage-source", "salesforce-source"])
def test_a_source_starts_while_the_registry_is_down_and_publishes_once_it_is_back(
    component: str,
    registry: LateRegistry,
    sage_db: SandboxDatabase,
    emulator: RunningEmulator,
    kafka_bootstrap: str,
    new_topic,
    tmp_path,
) -> None:
    fixtures = {"sage_db": sage_db, "salesforce_emulator": emulator}
    stack = make_stack(kafka_bootstrap, registry.url, new_topic, tmp_path, fixtures)
    adapter = SageSourceAdapter(stack) if component == "sage-source" else SalesforceSourceAdapter(stack)
    source = SourceUnderTest(adapter, stack)
    try:
        source.process.start()
        wait_degraded(source.process, REGISTRY)
        registry.start()
        source.process.wait_ready(adapter.ready, timeout=90)
        change = adapter.change(0)
        source.wait_published([change], timeout=90)
    finally:
        source.close()


def test_the_processors_start_while_the_registry_is_down_and_consume_once_it_is_back(
    registry: LateRegistry, kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    world = World(kafka_bootstrap, registry.url, tmp_path)
    world.create_topics(kafka_admin)
    process = ComponentProcess("processors", world.env(), tmp_path)
    collector = threading.Thread(target=world.collect, daemon=True)
    try:
        process.start()
        wait_degraded(process, REGISTRY)
        registry.start()
        process.wait_ready(lambda h: h["components"].get("tables", {}).get("status") == "ok", timeout=120)
        collector.start()
        key = AvroSerde.string_key(world.registry, world.topic("salesorder.v1"), auto_register=True)
        world.produce_raw("salesorder.v1", key.encode("006NOTAVRO"), b"not an Avro record")
        world.wait_for("the dead letter of a record that is not Avro", lambda o: o.topic == "dlq.orders.v1")
    finally:
        process.stop()
        world.close()
        if collector.is_alive():
            collector.join(5)
        topics = [world.topic(n) for n in PROCESSOR_TOPICS]
        topics += [t for t in kafka_admin.list_topics(timeout=10).topics if t.startswith(world.app_id + "-")]
        for future in kafka_admin.delete_topics(topics).values():
            future.exception(timeout=30)
