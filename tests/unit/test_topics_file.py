"""topics.yaml: the real file is complete and valid; a bad file fails naming line and topic;
the Strimzi rendering is what a Kubernetes operator expects."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sagesf import topic_names
from sagesf.cli.topics import cli
from sagesf.schemas import SCHEMAS_DIR
from sagesf.topic_render import render
from sagesf.topics_file import TopicsFileError, load_topics, parse_retention

REPO_TOPICS = Path(__file__).resolve().parents[2] / "topics.yaml"
DAY_MS = 86_400_000

GOOD_TOPIC = """\
  - name: shop.orders.v1
    cleanup_policy: delete
    retention: 14d
    key_schema: string
    value_schema: SalesOrder
"""


def write(tmp_path: Path, body: str, header: str = "defaults:\n  replication_factor: 1\ntopics:\n") -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(header + textwrap.dedent(body) if not body.startswith("  ") else header + body)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(TopicsFileError) as info:
        load_topics(path, SCHEMAS_DIR)
    # messages start with the file as given: keep the name only, for readable expectations
    return [p.removeprefix(f"{path.parent}/") for p in info.value.problems]


# --- the real file ----------------------------------------------------------------------------


def test_the_real_topics_file_declares_the_architecture_topic_map() -> None:
    topics = load_topics(REPO_TOPICS)
    by_name = {t.name: t for t in topics.resolved()}
    for name in ("customer.v1", "item.v1", "inventory.v1", "positions.v1"):
        assert by_name[name].configs["cleanup.policy"] == "compact"
    for name in (
        "salesorder.v1",
        "orderstatus.v1",
        "sage.commands.v1",
        "sage.results.v1",
        "salesforce.commands.v1",
        "salesforce.results.v1",
    ):
        assert by_name[name].configs == {**by_name[name].configs, "cleanup.policy": "delete"}
        assert by_name[name].configs["retention.ms"] == str(14 * DAY_MS)
    for name in ("credit.requests.v1", "credit.replies.v1"):
        assert by_name[name].configs["retention.ms"] == str(DAY_MS)
    dlqs = [n for n in by_name if n.startswith("dlq.")]
    assert {"dlq.orders.v1", "dlq.sage-sink.v1", "dlq.salesforce-sink.v1"} <= set(dlqs)
    assert all(by_name[n].configs["retention.ms"] == str(30 * DAY_MS) for n in dlqs)


def test_every_topic_name_the_code_uses_is_declared_in_the_real_file() -> None:
    declared = {t.name for t in load_topics(REPO_TOPICS).resolved()}
    named = {value for name, value in vars(topic_names).items() if name.isupper()}
    assert named, "sagesf.topic_names names no topic"
    assert named - declared == set()


def test_the_real_topics_file_keys_are_avro_strings_and_values_are_canonical_schemas() -> None:
    topics = load_topics(REPO_TOPICS)
    for spec in topics.topics:
        assert spec.key_schema == "string", spec.name
    subjects = topics.topic("salesorder.v1").subjects
    assert subjects == {"salesorder.v1-key": "string", "salesorder.v1-value": "SalesOrder"}
    assert topics.topic("customer.v1").value_schema == "Customer"
    # dead letters keep the original bytes (any schema); the error is in Connect-style headers
    assert topics.topic("dlq.orders.v1").value_schema is None


def test_production_defaults_and_the_sandbox_override() -> None:
    topics = load_topics(REPO_TOPICS)
    production = {t.name: t for t in topics.resolved()}
    assert production["salesorder.v1"].replication_factor == 3
    assert production["salesorder.v1"].configs["min.insync.replicas"] == "2"
    sandbox = {t.name: t for t in topics.resolved(replication_factor=1)}
    assert sandbox["salesorder.v1"].replication_factor == 1
    # a min ISR of 2 on one replica would make every acks=all produce fail
    assert sandbox["salesorder.v1"].configs["min.insync.replicas"] == "1"
    assert sandbox["salesorder.v1"].notes


def test_stray_scope_covers_our_domains_but_not_internal_topics() -> None:
    topics = load_topics(REPO_TOPICS)
    assert topics.in_scope("customer.v0")
    assert topics.in_scope("dlq.typo.v1")
    assert not topics.in_scope("__consumer_offsets")
    assert not topics.in_scope("_schemas")
    assert not topics.in_scope("other-team.things.v1")


# --- each kind of bad file names line and topic ------------------------------------------------


def test_unknown_key_names_line_topic_and_suggests(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_TOPIC
        + """\
  - name: shop.items.v1
    partitons: 3
    key_schema: string
""",
    )
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith("topics.yaml:10: topic 'shop.items.v1': unknown key 'partitons'")
    assert "did you mean 'partitions'?" in problems[0]


def test_unknown_key_in_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC, header="defaults:\n  replicas: 1\ntopics:\n")
    (problem,) = problems_of(path)
    assert problem.startswith("topics.yaml:2: unknown key 'replicas'")


def test_duplicate_topic_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC + GOOD_TOPIC)
    (problem,) = problems_of(path)
    assert problem == "topics.yaml:9: topic 'shop.orders.v1' is declared twice (lines 4 and 9)"


def test_duplicate_yaml_key_is_not_silently_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC + "    partitions: 2\n    partitions: 12\n")
    (problem,) = problems_of(path)
    assert problem == "topics.yaml:10: key 'partitions' repeats the one on line 9"


def test_compacted_topic_without_key_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path, "  - name: shop.state.v1\n    cleanup_policy: compact\n    value_schema: Customer\n"
    )
    (problem,) = problems_of(path)
    assert problem.startswith(
        "topics.yaml:5: topic 'shop.state.v1': cleanup_policy compact needs a key_schema"
    )


def test_unknown_schema_name_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC.replace("value_schema: SalesOrder", "value_schema: SaleOrder"))
    (problem,) = problems_of(path)
    assert problem.startswith("topics.yaml:8: topic 'shop.orders.v1': unknown value_schema 'SaleOrder'")
    assert "did you mean 'SalesOrder'?" in problem


@pytest.mark.parametrize(
    "name",
    [
        "orders",
        "shop.orders",
        "Shop.orders.v1",
        "shop_orders.v1",
        "shop.orders.v0",
        "shop..orders.v1",
        "shop.orders.V1",
    ],
)
def test_bad_name_shape(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, GOOD_TOPIC.replace("shop.orders.v1", name))
    (problem,) = problems_of(path)
    assert problem.startswith(f"topics.yaml:4: topic {name!r}: name must look like <domain>.<what>.v<major>")


@pytest.mark.parametrize(
    "name", ["customer.v1", "sage.commands.v1", "dlq.sage-sink.v1", "test3f2a.orders.v12"]
)
def test_good_name_shapes(tmp_path: Path, name: str) -> None:
    topics = load_topics(write(tmp_path, GOOD_TOPIC.replace("shop.orders.v1", name)), SCHEMAS_DIR)
    assert topics.topics[0].name == name


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_TOPIC
        + """\
  - name: Bad
    key_schema: string
  - name: shop.orders.v1
    cleanup_policy: compact
    value_schema: Nope
""",
    )
    problems = problems_of(path)
    assert len(problems) == 4
    assert any("topic 'Bad': name must look like" in p for p in problems)
    assert any("declared twice (lines 4 and 11)" in p for p in problems)
    assert any("needs a key_schema" in p for p in problems)
    assert any("unknown value_schema 'Nope'" in p for p in problems)


def test_wrong_value_types_name_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC + "    partitions: many\n")
    (problem,) = problems_of(path)
    assert problem.startswith(
        "topics.yaml:9: topic 'shop.orders.v1': partitions: Input should be a valid integer"
    )
    path = write(tmp_path, GOOD_TOPIC.replace("cleanup_policy: delete", "cleanup_policy: forever"))
    (problem,) = problems_of(path)
    assert problem.startswith(
        "topics.yaml:5: topic 'shop.orders.v1': cleanup_policy: Input should be 'delete', 'compact' or"
    )


def test_bad_retention_and_reserved_configs(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC.replace("retention: 14d", "retention: two weeks"))
    (problem,) = problems_of(path)
    assert problem.startswith("topics.yaml:6: topic 'shop.orders.v1': retention: retention 'two weeks'")
    path = write(tmp_path, GOOD_TOPIC + "    configs:\n      retention.ms: 1000\n")
    (problem,) = problems_of(path)
    assert (
        problem
        == "topics.yaml:10: topic 'shop.orders.v1': set retention.ms with the 'retention' key, not in configs"
    )


def test_retention_on_a_compacted_topic_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC.replace("cleanup_policy: delete", "cleanup_policy: compact"))
    (problem,) = problems_of(path)
    assert problem.startswith(
        "topics.yaml:6: topic 'shop.orders.v1': retention has no effect on a compacted topic"
    )
    compact_delete = GOOD_TOPIC.replace("cleanup_policy: delete", "cleanup_policy: delete,compact")
    topics = load_topics(write(tmp_path, compact_delete), SCHEMAS_DIR)
    assert topics.resolved()[0].configs["cleanup.policy"] == "compact,delete"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC + "  - name: [unclosed\n")
    (problem,) = problems_of(path)
    assert problem.startswith("topics.yaml:10: not valid YAML")


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("14d", "1209600000"),
        ("36h", "129600000"),
        ("90m", "5400000"),
        ("500ms", "500"),
        ("forever", "-1"),
        (60000, "60000"),
    ],
)
def test_retention_durations(text: str | int, ms: str) -> None:
    assert parse_retention(text) == ms


# --- rendering ---------------------------------------------------------------------------------


def strimzi_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def test_strimzi_render_is_one_kafkatopic_per_topic() -> None:
    topics = load_topics(REPO_TOPICS)
    docs = strimzi_docs(render(topics, "strimzi", cluster="prod-kafka"))
    assert [d["metadata"]["name"] for d in docs] == [t.name for t in topics.topics]
    order = next(d for d in docs if d["metadata"]["name"] == "salesorder.v1")
    assert order["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert order["kind"] == "KafkaTopic"
    assert order["metadata"]["labels"]["strimzi.io/cluster"] == "prod-kafka"
    assert order["spec"]["topicName"] == "salesorder.v1"
    assert order["spec"]["partitions"] == 6
    assert order["spec"]["replicas"] == 3
    assert order["spec"]["config"]["cleanup.policy"] == "delete"
    assert order["spec"]["config"]["retention.ms"] == str(14 * DAY_MS)
    assert order["metadata"]["annotations"]["sagesf.io/value-schema"] == "SalesOrder"
    customer = next(d for d in docs if d["metadata"]["name"] == "customer.v1")
    assert customer["spec"]["config"]["cleanup.policy"] == "compact"
    assert "retention.ms" not in customer["spec"]["config"]


def test_strimzi_names_are_valid_kubernetes_resource_names() -> None:
    import re

    dns_subdomain = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    for doc in strimzi_docs(render(load_topics(REPO_TOPICS))):
        assert dns_subdomain.match(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert len(doc["metadata"]["name"]) <= 253


def test_unknown_render_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format 'helm'"):
        render(load_topics(REPO_TOPICS), "helm")


def test_render_command_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "topics.k8s.yaml"
    result = CliRunner().invoke(
        cli,
        [
            "render",
            "--file",
            str(REPO_TOPICS),
            "--cluster",
            "sandbox",
            "--replication-factor",
            "1",
            "--out",
            str(out),
        ],
        env={"SAGESF_SCHEMAS_DIR": str(SCHEMAS_DIR)},
    )
    assert result.exit_code == 0, result.output
    docs = strimzi_docs(out.read_text())
    assert len(docs) == len(load_topics(REPO_TOPICS).topics)
    assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in docs} == {"sandbox"}
    assert {d["spec"]["replicas"] for d in docs} == {1}


def test_cli_reports_an_invalid_file_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOPIC + GOOD_TOPIC)
    result = CliRunner().invoke(
        cli, ["diff", "--file", str(path)], env={"SAGESF_SCHEMAS_DIR": str(SCHEMAS_DIR), "COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert "declared twice (lines 4 and 9)" in result.output
