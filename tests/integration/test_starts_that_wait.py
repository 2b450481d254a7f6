"""Every process starts while a dependency is down, says so on /healthz, and works once it is back.

Each case starts the real process (`python -m sagesf run <component>`) with one dependency down:
the Sage 100 database moved away or locked (sage-source, sage-sink), the Salesforce emulator
stopped (salesforce-source, salesforce-sink), the schema registry not started yet (all five).
The process keeps running and answers /healthz with "degraded" naming the dependency (200: a
supervisor must not restart it, restarting would not help); once the dependency is back it does
its work: a sink answers a command, a source publishes a change, the processors consume. SIGTERM
during the wait ends the process normally. Wrong credentials are not "down": they still stop the
process with exit 2.

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
from tests.conformance.protocol import SinkAdapter, SourceAdapter, Stack
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

    @contextmanager
    def down(self) -> Iterator[None]:
        """Down until the block ends, then started."""
        yield
        self.start()


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


SINKS: dict[str, Callable[[Stack], SinkAdapter]] = {
    "sage-sink": SageSinkAdapter,
    "salesforce-sink": SalesforceSinkAdapter,
}
SOURCES: dict[str, Callable[[Stack], SourceAdapter]] = {
    "sage-source": SageSourceAdapter,
    "salesforce-source": SalesforceSourceAdapter,
}
# how a connector's own system is down: (what /healthz calls it, the context that keeps it down)
SYSTEM_DOWN: dict[str, tuple[str, Callable[[dict[str, Any]], AbstractContextManager[None]]]] = {
    "moved-away": (SAGE, lambda fixtures: sage_moved_away(fixtures["sage_db"])),
    "locked": (SAGE, lambda fixtures: sage_locked(fixtures["sage_db"])),
    "stopped": (SALESFORCE, lambda fixtures: emulator_stopped(fixtures["salesforce_emulator"])),
}


@pytest.fixture
def connector_of(
    sage_db: SandboxDatabase, emulator: RunningEmulator, kafka_bootstrap: str, new_topic, tmp_path
) -> Iterator[Callable[[str, str], SinkUnderTest | SourceUnderTest]]:
    """`connector_of(component, registry_url)`: the component with its adapter, closed afterwards."""
    made: list[SinkUnderTest | SourceUnderTest] = []
    fixtures = {"sage_db": sage_db, "salesforce_emulator": emulator}

    def make(component: str, registry_url: str) -> SinkUnderTest | SourceUnderTest:
        stack = make_stack(kafka_bootstrap, registry_url, new_topic, tmp_path, fixtures)
        connector = (
            SinkUnderTest(SINKS[component](stack), stack)
            if component in SINKS
            else SourceUnderTest(SOURCES[component](stack), stack)
        )
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def starts_while_down(
    connector: SinkUnderTest | SourceUnderTest, dependency: str, down: AbstractContextManager[None]
) -> dict[str, Any]:
    """The connector's process started while `down` lasts says "degraded" naming `dependency`;
    once the dependency is back it works: a sink answers a command, a source publishes a change.
    Returns the degraded /healthz document."""
    connector.adapter.close()  # the test's own connections: an exclusive lock needs them gone
    with down:
        connector.process.start()
        health = wait_degraded(connector.process, dependency)
    if isinstance(connector, SinkUnderTest):
        connector.send([connector.adapter.command(0)])
        connector.wait_for_answers(1, timeout=90)
        assert connector.adapter.effects(0) == 1
    else:
        connector.process.wait_ready(connector.adapter.ready, timeout=90)
        connector.wait_published([connector.adapter.change(0)], timeout=90)
    return health


@pytest.mark.parametrize(
    ("component", "how"),
    [
        ("sage-sink", "moved-away"),
        ("sage-sink", "locked"),
        ("sage-source", "moved-away"),
        ("sage-source", "locked"),
        ("salesforce-sink", "stopped"),
        ("salesforce-source", "stopped"),
    ],
)
def test_a_connector_starts_while_its_system_is_down_and_works_once_it_is_back(
    component: str, how: str, connector_of, schema_registry_url: str, sage_db, emulator
) -> None:
    dependency, down = SYSTEM_DOWN[how]
    health = starts_while_down(
        connector_of(component, schema_registry_url),
        dependency,
        down({"sage_db": sage_db, "salesforce_emulator": emulator}),
    )
    if dependency == SAGE:
        assert_short_reason(health)


@pytest.mark.parametrize("component", [*SINKS, *SOURCES])
def test_a_connector_starts_while_the_registry_is_down_and_works_once_it_is_back(
    component: str, connector_of, registry: LateRegistry
) -> None:
    starts_while_down(connector_of(component, registry.url), REGISTRY, registry.down())


def test_a_process_waiting_for_sage_stops_on_sigterm_with_exit_0(
    connector_of, schema_registry_url: str, sage_db: SandboxDatabase
) -> None:
    sink = connector_of("sage-sink", schema_registry_url)
    with sage_moved_away(sage_db):
        sink.process.start()
        wait_degraded(sink.process, SAGE)
        sink.process.stop()
        assert sink.process.returncode() == 0, sink.process.log_tail()


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


def test_the_processors_start_while_the_registry_is_down_and_consume_once_it_is_back(
    registry: LateRegistry, kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    world = World(kafka_bootstrap, registry.url, tmp_path)
    world.create_topics(kafka_admin)
    process = ComponentProcess("processors", world.env(), tmp_path)
    collector = threading.Thread(target=world.collect, daemon=True)
    try:
        with registry.down():
            process.start()
            wait_degraded(process, REGISTRY)
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
