"""The stage table: defaults match topics.yaml, overrides come from the environment, typos fail."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from sagesf.cli.dlq import parse_positions
from sagesf.cli.stage_options import parse_time
from sagesf.config import ConfigError, load_settings
from sagesf.stages import PROCESSORS_GROUP_ID, StageKind, StageSettings, load_stages
from sagesf.topics_file import load_topics
from sagesf.trace import identity_values


def test_every_stage_has_its_declared_dlq_topic_and_reads_declared_topics():
    declared = {t.name for t in load_topics("topics.yaml").topics}
    stages = load_stages(StageSettings())
    assert {s.dlq_topic for s in stages.values()} == {n for n in declared if n.startswith("dlq.")}
    for stage in stages.values():
        assert set(stage.input_topics) <= declared, stage.name
        assert set(stage.output_topics) <= declared, stage.name
    assert {s.group_id for s in stages.values() if s.kind is StageKind.PROCESSOR} == {PROCESSORS_GROUP_ID}
    assert not stages["sage-source"].replayable


def test_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAGESF_STAGES__SAGE_SINK__GROUP_ID", "acme-sage-sink")
    monkeypatch.setenv("SAGESF_STAGES__ORDERS__INPUT_TOPICS", '["salesorder.v1"]')
    stages = load_stages(load_settings(StageSettings))
    assert stages["sage-sink"].group_id == "acme-sage-sink"
    assert stages["sage-sink"].input_topics == ("sage.commands.v1",)  # not overridden: kept
    assert stages["orders"].input_topics == ("salesorder.v1",)


def test_an_override_of_an_unknown_stage_is_a_config_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAGESF_STAGES__ORDER__GROUP_ID", "x")
    with pytest.raises(ConfigError, match=r"unknown stage 'order'"):
        load_stages(load_settings(StageSettings))


def test_time_and_offset_arguments():
    now = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now=now) == int(datetime(2026, 3, 14, 10, 0, tzinfo=UTC).timestamp() * 1000)
    assert parse_time("2026-03-14T10:00:00Z") == parse_time("2026-03-14T10:00:00")  # naive is UTC
    assert parse_time("2026-03-14T12:00:00+02:00") == parse_time("2026-03-14T10:00:00Z")
    with pytest.raises(typer.BadParameter):
        parse_time("yesterday")
    assert parse_positions(["7", "2:40"]) == [(0, 7), (2, 40)]
    with pytest.raises(typer.BadParameter):
        parse_positions(["x:1"])


def test_identity_values_ignore_other_entities():
    command = {
        "envelope": {"source_record_id": "006A", "correlation_id": "c1", "event_id": "e1"},
        "command_id": "k1",
        "command": {
            "order": {
                "salesforce_opportunity_id": "006A",
                "customer": {"salesforce_account_id": "001X", "customer_no": "ABF"},
                "lines": [{"salesforce_line_id": "00k1", "product_code": "W-1"}],
            },
            "customer": {"envelope": {"source_record_id": "001X"}},
        },
    }
    assert identity_values(command) == {"006A", "c1", "k1"}
