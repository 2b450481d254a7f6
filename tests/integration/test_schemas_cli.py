"""`sagesf schemas register|check` against the sandbox schema registry over HTTP."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from typer.testing import CliRunner

from sagesf.cli.schemas import cli
from sagesf.schemas import SCHEMAS_DIR, schema_json

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"test{uuid.uuid4().hex[:12]}"


@pytest.fixture
def topics_file(tmp_path: Path, prefix: str) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(
        f"""\
topics:
  - name: {prefix}.orders.v1
    retention: 14d
    key_schema: string
    value_schema: SalesOrder
  - name: {prefix}.customers.v1
    cleanup_policy: compact
    key_schema: string
    value_schema: Customer
"""
    )
    return path


@pytest.fixture
def run_cli(schema_registry_url: str, topics_file: Path) -> Callable[..., tuple[int, str]]:
    env = {
        "SAGESF_REGISTRY__URL": schema_registry_url,
        "SAGESF_SCHEMAS_DIR": str(SCHEMAS_DIR),
        "COLUMNS": "250",
    }

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, [*args, "--file", str(topics_file)], env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return run


def registered_row(output: str, subject: str) -> tuple[int, int]:
    """(id, version) printed for a subject."""
    match = re.search(rf"{re.escape(subject)}\s*│\s*\S+\s*│\s*(\d+)\s*│\s*(\d+)", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def test_register_prints_ids_and_versions_and_is_idempotent(
    schema_registry_url: str, prefix: str, run_cli: Callable[..., tuple[int, str]]
) -> None:
    code, output = run_cli("register")
    assert code == 0, output
    assert "4 subjects registered, 0 failed" in output
    order_id, order_version = registered_row(output, f"{prefix}.orders.v1-value")
    key_id, _ = registered_row(output, f"{prefix}.orders.v1-key")
    assert order_version == 1

    client = SchemaRegistryClient({"url": schema_registry_url})
    latest = client.get_latest_version(f"{prefix}.orders.v1-value")
    assert latest.schema_id == order_id
    assert latest.schema is not None
    assert json.loads(str(latest.schema.schema_str))["name"] == "SalesOrder"
    customer_key = client.get_latest_version(f"{prefix}.customers.v1-key").schema
    assert customer_key is not None
    assert json.loads(str(customer_key.schema_str)) == "string"
    assert json.loads(str(client.get_schema(key_id).schema_str)) == "string"

    code, output = run_cli("register")  # the same schemas again: same ids, no new version
    assert code == 0, output
    assert registered_row(output, f"{prefix}.orders.v1-value") == (order_id, 1)

    code, output = run_cli("check")
    assert code == 0, output
    assert "unchanged" in output
    assert "4 subjects ok, 0 not" in output


def test_check_reports_new_subjects_and_incompatible_ones_without_registering(
    schema_registry_url: str, prefix: str, run_cli: Callable[..., tuple[int, str]]
) -> None:
    # The registry holds an older SalesOrder without currency_code: the local schema adds that
    # field without a default, so it cannot read what was written with the registered one.
    older = json.loads(schema_json("SalesOrder"))
    older["fields"] = [f for f in older["fields"] if f["name"] != "currency_code"]
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = f"{prefix}.orders.v1-value"
    client.register_schema(subject, Schema(json.dumps(older), "AVRO"))

    code, output = run_cli("check")
    assert code == 1
    assert "SalesOrder.currency_code: field is new and has no default" in output
    assert "new subject" in output  # the customers subjects do not exist yet
    assert "3 subjects ok, 1 not" in output
    assert len(client.get_versions(subject)) == 1  # check registered nothing
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_latest_version(f"{prefix}.customers.v1-value")
    assert missing.value.error_code == 40401

    code, output = run_cli("register")  # the registry refuses it too
    assert code == 1
    assert "1 failed" in output
    assert len(client.get_versions(subject)) == 1
