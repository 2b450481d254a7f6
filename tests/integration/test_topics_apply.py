"""`sagesf topics` against the real broker: create, stay idempotent, repair drift, grow, prune.

Each test works on its own topics, named `test<hex>.<what>.v1`; the file's default scope is then
`test<hex>.*`, so strays and --prune can only ever see this test's topics on a shared broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from typer.testing import CliRunner

from sagesf.cli.topics import cli
from sagesf.schemas import SCHEMAS_DIR
from sagesf.topic_plan import ChangeKind, Outcome, apply, plan
from sagesf.topics_file import load_topics

pytestmark = pytest.mark.integration

TOPICS_FILE = """\
defaults:
  partitions: 2
  replication_factor: 1
  configs:
    min.insync.replicas: 1
topics:
  - name: {prefix}.orders.v1
    description: orders, keyed by Salesforce ID
    cleanup_policy: delete
    retention: 14d
    key_schema: string
    value_schema: SalesOrder
  - name: {prefix}.state.v1
    partitions: 1
    cleanup_policy: compact
    configs:
      segment.ms: 3600000
    key_schema: string
    value_schema: Customer
"""


@pytest.fixture
def prefix(kafka_admin: AdminClient) -> Iterator[str]:
    value = f"test{uuid.uuid4().hex[:12]}"
    yield value
    leftovers = [t for t in kafka_admin.list_topics(timeout=30).topics if t.startswith(f"{value}.")]
    if leftovers:
        for future in kafka_admin.delete_topics(leftovers).values():
            future.result(timeout=30)


@pytest.fixture
def topics_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(TOPICS_FILE.format(prefix=prefix))
    return path


@pytest.fixture
def run_cli(kafka_bootstrap: str, topics_file: Path) -> Callable[..., tuple[int, str]]:
    env = {
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SAGESF_SCHEMAS_DIR": str(SCHEMAS_DIR),
        "COLUMNS": "200",
    }

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, [*args, "--file", str(topics_file)], env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return run


def broker_topic(admin: AdminClient, name: str) -> tuple[int, dict[str, str]] | None:
    """(partition count, configs) of a topic on the broker, or None when it does not exist."""
    topic = admin.list_topics(timeout=30).topics.get(name)
    if topic is None or topic.error is not None:
        return None
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return len(topic.partitions), {k: e.value for k, e in entries.items()}


def test_apply_creates_then_has_nothing_to_change(
    kafka_admin: AdminClient, prefix: str, topics_file: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    code, output = run_cli("diff")
    assert code == 1  # nothing exists yet: drift
    assert f"{prefix}.orders.v1" in output
    assert "create" in output

    code, output = run_cli("apply")
    assert code == 0, output
    assert "2 changes applied, 0 failed" in output

    orders = broker_topic(kafka_admin, f"{prefix}.orders.v1")
    assert orders is not None
    assert orders[0] == 2
    assert orders[1]["cleanup.policy"] == "delete"
    assert orders[1]["retention.ms"] == str(14 * 86_400_000)
    state = broker_topic(kafka_admin, f"{prefix}.state.v1")
    assert state is not None
    assert state[0] == 1
    assert state[1]["cleanup.policy"] == "compact"
    assert state[1]["segment.ms"] == "3600000"

    code, output = run_cli("apply")
    assert code == 0, output
    assert "nothing to change: 2 topics in sync" in output
    code, output = run_cli("diff")
    assert code == 0, output
    assert "in sync with the file: 2 topics" in output


def test_config_changed_behind_our_back_is_drift_and_apply_repairs_it(
    kafka_admin: AdminClient, prefix: str, topics_file: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    topics = load_topics(topics_file, SCHEMAS_DIR)
    apply(kafka_admin, plan(kafka_admin, topics))
    name = f"{prefix}.orders.v1"
    tampered = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET),
            # a config the file does not declare is none of our business
            ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    kafka_admin.incremental_alter_configs([tampered])[tampered].result(timeout=30)
    _wait_for(lambda: (broker_topic(kafka_admin, name) or (0, {}))[1].get("retention.ms") == "60000")

    drift = plan(kafka_admin, topics)
    assert [(c.topic, c.kind, c.config, c.broker, c.wanted) for c in drift.changes] == [
        (name, ChangeKind.SET_CONFIG, "retention.ms", "60000", str(14 * 86_400_000))
    ]
    code, output = run_cli("diff")
    assert code == 1
    assert "retention.ms: 60000 -> 1209600000" in output

    code, output = run_cli("apply")
    assert code == 0, output
    after = broker_topic(kafka_admin, name)
    assert after is not None
    assert after[1]["retention.ms"] == str(14 * 86_400_000)
    assert after[1]["max.message.bytes"] == "2000000"  # left alone
    assert plan(kafka_admin, topics).changes == []


def test_partitions_are_raised_but_never_lowered(
    kafka_admin: AdminClient, prefix: str, topics_file: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    apply(kafka_admin, plan(kafka_admin, load_topics(topics_file, SCHEMAS_DIR)))
    name = f"{prefix}.orders.v1"

    topics_file.write_text(topics_file.read_text().replace("  partitions: 2\n", "  partitions: 4\n", 1))
    code, output = run_cli("apply")
    assert code == 0, output
    assert "partitions 2 -> 4" in output
    assert (broker_topic(kafka_admin, name) or (0, {}))[0] == 4

    topics_file.write_text(topics_file.read_text().replace("  partitions: 4\n", "  partitions: 3\n", 1))
    planned = plan(kafka_admin, load_topics(topics_file, SCHEMAS_DIR))
    assert [(c.topic, c.kind) for c in planned.changes] == [(name, ChangeKind.MORE_PARTITIONS)]
    assert planned.drift
    assert planned.actions == []
    code, output = run_cli("apply")
    assert code == 0, output
    assert "nothing apply can change; 1 difference left as is" in output
    assert "cannot shrink" in output
    assert (broker_topic(kafka_admin, name) or (0, {}))[0] == 4
    code, _ = run_cli("diff")
    assert code == 1


def test_stray_topic_is_reported_and_deleted_only_with_prune(
    kafka_admin: AdminClient, prefix: str, topics_file: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    apply(kafka_admin, plan(kafka_admin, load_topics(topics_file, SCHEMAS_DIR)))
    stray = f"{prefix}.old.v1"
    kafka_admin.create_topics([NewTopic(stray, num_partitions=1, replication_factor=1)])[stray].result(
        timeout=30
    )
    _wait_for(lambda: broker_topic(kafka_admin, stray) is not None)

    code, output = run_cli("diff")
    assert code == 0, output  # a stray is reported, but the declared topics are in sync
    assert stray in output
    assert "not in file" in output

    code, output = run_cli("apply")
    assert code == 0, output
    assert broker_topic(kafka_admin, stray) is not None

    code, _ = run_cli("diff", "--prune")
    assert code == 1

    code, output = run_cli("apply", "--prune")
    assert code == 0, output
    assert stray in output
    assert broker_topic(kafka_admin, stray) is None
    assert broker_topic(kafka_admin, f"{prefix}.orders.v1") is not None


def test_replication_factor_beyond_the_cluster_fails_with_a_hint(
    kafka_admin: AdminClient, prefix: str, topics_file: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    brokers = len(kafka_admin.list_topics(timeout=30).brokers)
    code, output = run_cli("apply", "--replication-factor", str(brokers + 1))
    assert code == 1
    assert "--replication-factor" in output
    assert broker_topic(kafka_admin, f"{prefix}.orders.v1") is None


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.2)


def test_two_applies_at_once_both_succeed_and_the_topics_end_as_the_file_says(
    kafka_admin: AdminClient, kafka_bootstrap: str, prefix: str, topics_file: Path
) -> None:
    topics = load_topics(topics_file, SCHEMAS_DIR)
    plans = [plan(kafka_admin, topics), plan(kafka_admin, topics)]  # each sees every topic missing
    assert all(c.kind is ChangeKind.CREATE for p in plans for c in p.changes)
    outcomes: list[list[Outcome]] = [[], []]
    together = threading.Barrier(2)

    def one_apply(i: int) -> None:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        together.wait()
        outcomes[i] = apply(admin, plans[i])

    threads = [threading.Thread(target=one_apply, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    for each in outcomes:
        assert len(each) == 2
        assert [o.error for o in each] == [None, None]
    assert plan(kafka_admin, topics).changes == []


def test_a_topic_another_apply_created_meanwhile_counts_as_created_and_gets_the_files_settings(
    kafka_admin: AdminClient, prefix: str, topics_file: Path, run_cli: Callable[..., tuple[int, str]]
) -> None:
    topics = load_topics(topics_file, SCHEMAS_DIR)
    stale = plan(kafka_admin, topics)
    # another attempt (an older file, another operator) creates one of them first, with fewer
    # partitions and another retention than this file says
    name = f"{prefix}.orders.v1"
    created = NewTopic(name, num_partitions=1, replication_factor=1, config={"retention.ms": "60000"})
    kafka_admin.create_topics([created])[name].result(timeout=30)
    _wait_for(lambda: broker_topic(kafka_admin, name) is not None)

    outcomes = apply(kafka_admin, stale)

    assert [o.error for o in outcomes if not o.ok] == []
    report = {(o.change.topic, o.change.kind, o.change.detail) for o in outcomes}
    assert (name, ChangeKind.ADD_PARTITIONS, "partitions 1 -> 2") in report
    assert (name, ChangeKind.SET_CONFIG, f"retention.ms: 60000 -> {14 * 86_400_000}") in report
    assert plan(kafka_admin, topics).changes == []
    code, output = run_cli("apply")
    assert code == 0, output
    assert "nothing to change: 2 topics in sync" in output
