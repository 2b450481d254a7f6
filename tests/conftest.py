"""Shared fixtures: one real Kafka broker for the whole test run (for each worker).

The broker is the sandbox's own launcher (official Apache Kafka jars, KRaft, 127.0.0.1, free
port). Set KAFKA_BOOTSTRAP_SERVERS to run the suite against an existing cluster instead.

`make test` runs all but tests/e2e on two pytest-xdist workers, a file on one worker (its module
fixtures start once): the suite mostly waits on brokers, emulators and processes, so two run in
little more than the time of one. tests/e2e then runs alone: each of its files starts a whole
sandbox on the default ports when free, and their kill -9 timings must not compete.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported without __all__

from sandbox.kafka import KafkaBroker


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Callable[..., str]:
    """Create a uniquely named topic for one test: new_topic("orders", partitions=1, config={...})."""

    def create(prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"test.{prefix}.{uuid.uuid4().hex[:10]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        return name

    return create


@pytest.fixture(scope="session")
def schema_registry_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sandbox schema registry as a real subprocess over HTTP, on its own `_schemas-<uuid>` topic."""
    from sandbox.processes import free_port
    from sandbox.registry import RegistryProcess

    topic = f"_schemas-{uuid.uuid4().hex[:10]}"
    registry = RegistryProcess(tmp_path_factory.mktemp("registry"), port=free_port(), topic=topic)
    url = registry.start(kafka_bootstrap)
    try:
        yield url
    finally:
        registry.stop()
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.delete_topics([topic])[topic].result(timeout=30)


@pytest.fixture
def sage_db(tmp_path):  # yields a SandboxDatabase
    """A fresh, seeded sandbox Sage 100 database (SQLite over unixODBC) in tmp_path.

    Gives a `sandbox.sage100.database.SandboxDatabase`: `.path`, `.connection_string`,
    `.udf_columns`, `.tables` (layouts with UDFs), `.odbc()` (a new SageOdbc connection) and
    `.settings(**overrides)` (Sage100Settings pointing at it).
    """
    from sandbox.sage100.database import create_database, seed

    db = create_database(tmp_path / "sage100.db")
    seed(db)
    return db


# ---- Salesforce emulator (sandbox/salesforce) -------------------------------------------------


@pytest.fixture(scope="session")
def salesforce_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The Salesforce emulator as a real subprocess on a free port, with a temp data dir.

    Yields a `sandbox.salesforce.harness.RunningEmulator`: `.url`, `.admin(method, path, body)`,
    `.connect(client=None)`, `.session()`, and the credentials (`.client_id`, `.client_secret`,
    `.username`, `.password`, `.private_key_pem`). Tests share it: use unique names and reset what
    you change through the admin API.
    """
    from sandbox.salesforce.harness import start_emulator

    emulator = start_emulator(tmp_path_factory.mktemp("salesforce"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def sf(salesforce_emulator: object) -> object:
    """A logged-in `simple_salesforce.Salesforce` on the emulator, with every fault cleared."""
    from sandbox.salesforce.harness import RunningEmulator

    assert isinstance(salesforce_emulator, RunningEmulator)
    salesforce_emulator.admin("DELETE", "/admin/faults")
    return salesforce_emulator.connect()
