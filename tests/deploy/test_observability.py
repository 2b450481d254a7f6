"""Dashboards and alert rules: every query parses and reads metrics the code exports; rules pass promtool.

What a user would notice otherwise: a Grafana panel that says "No data" forever because it asks
for a metric (or a label) nothing exports, an alert that can never fire, a rule file Prometheus
refuses at start-up. promtool is the real one (built by deploy/tools/ensure.sh): `check rules`,
`check config`, and `test rules` with alerts.test.yml, which feeds each alert the series it is
about and says when it must fire and when not.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from tests.deploy.support import (
    ALERTS,
    DASHBOARDS,
    DEPLOY,
    PROMETHEUS_CONFIG,
    TARGET_LABELS,
    alert_rules,
    dashboard_queries,
    exported_metrics,
    promql_selectors,
    run,
    tool,
)

# The headline panels the issue asks for, by dashboard: a metric each must query.
REQUIRED = {
    "pipeline-health.json": {
        "sagesf_records_in_total",  # events in per stage
        "sagesf_records_produced_total",  # events out
        "sagesf_end_to_end_latency_seconds_bucket",  # end-to-end latency
        "sagesf_consumer_lag",  # lag per group
        "sagesf_dead_letters_total",  # dead letters by reason
        "sagesf_health_state",
    },
    "salesforce-api-budget.json": {
        "sagesf_salesforce_api_usage_used",
        "sagesf_salesforce_api_usage_limit",
        "sagesf_salesforce_api_calls_total",  # calls per record
        "sagesf_salesforce_records_written_total",
        "sagesf_salesforce_backpressure_seconds_total",
    },
    "sage-polling.json": {
        "sagesf_sage_detection_delay_seconds_bucket",
        "sagesf_sage_poll_duration_seconds_bucket",
        "sagesf_sage_rows_per_poll_sum",
        "sagesf_sage_circuit_state",
    },
}
REQUIRED_ALERTS = {
    "SagesfDeadLettersGrowing",
    "SagesfConsumerLagGrowing",
    "SagesfSageUnavailable",
    "SagesfSalesforceApiBudgetHigh",
    "SagesfReplayPositionStalled",
    "SagesfSalesforceReadRefused",  # a read refused for permission: the source waits, an operator must act
}


def _check_names_and_labels(where: str, expr: str) -> list[str]:
    exported = exported_metrics()
    selectors = promql_selectors(expr)
    problems = [f"{where}: {name} is not exported by the code" for name in selectors.metrics - set(exported)]
    for metric, label in selectors.matcher_labels:
        if metric in exported and label not in exported[metric].labels | TARGET_LABELS:
            problems.append(f"{where}: {metric} has no label {label!r}")
    for metrics, label in selectors.grouping_labels:
        known = [exported[m].labels for m in metrics if m in exported]
        if known and not any(label in labels | TARGET_LABELS for labels in known):
            problems.append(f"{where}: grouping by {label!r}, which none of {sorted(metrics)} has")
    return problems


def test_every_dashboard_query_parses_and_reads_exported_metrics_and_labels():
    queries = dashboard_queries()
    assert len(queries) >= 30
    problems: list[str] = []
    for file, title, expr in queries:
        try:
            problems += _check_names_and_labels(f"{file} / {title}", expr)
        except ValueError as exc:
            problems.append(f"{file} / {title}: PromQL does not parse: {exc}")
    assert not problems, "\n".join(problems)


def test_the_dashboards_show_what_the_issue_asks_for():
    used: dict[str, set[str]] = {}
    for file, _title, expr in dashboard_queries():
        used.setdefault(file, set()).update(promql_selectors(expr).metrics)
    for file, metrics in REQUIRED.items():
        assert metrics <= used.get(file, set()), f"{file} lacks {sorted(metrics - used.get(file, set()))}"


def test_dashboards_are_importable_grafana_json():
    uids = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.append(board["uid"])
        assert board["title"].startswith("sagesf / ")
        assert board["description"], f"{path.name}: say what the dashboard is for"
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        ids = Counter(panel["id"] for panel in board["panels"])
        assert max(ids.values()) == 1, f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"
            assert panel["description"], f"{path.name}: {panel['title']} has no description"
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            grid = panel["gridPos"]
            assert grid["x"] >= 0, f"{path.name}: {panel['title']} off the grid"
            assert grid["x"] + grid["w"] <= 24, f"{path.name}: {panel['title']} off the grid"
    assert len(set(uids)) == len(uids)


def test_alert_rules_read_exported_metrics():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    problems: list[str] = []
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        problems += _check_names_and_labels(rule["alert"], rule["expr"])
    assert not problems, "\n".join(problems)


def test_the_metrics_check_catches_a_panel_nobody_feeds():
    """The checks above can fail: a misspelt metric and a label it does not have are reported."""
    problems = _check_names_and_labels(
        "probe", 'sum by (stgae) (rate(sagesf_records_in_totl{topic="x"}[1m]))'
    )
    assert problems == ["probe: sagesf_records_in_totl is not exported by the code"]
    problems = _check_names_and_labels("probe", "sum by (stgae) (rate(sagesf_records_in_total[1m]))")
    assert problems == ["probe: grouping by 'stgae', which none of ['sagesf_records_in_total'] has"]
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        promql_selectors("sum by (stage (rate(sagesf_records_in_total[1m]))")


@pytest.mark.timeout(1800)  # the first run on a machine builds promtool
def test_promtool_accepts_the_rules_and_the_compose_prometheus_config():
    promtool = tool("promtool")
    rules = run([promtool, "check", "rules", str(ALERTS)])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout + rules.stderr
    config = run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert config.returncode == 0, config.stdout + config.stderr


@pytest.mark.timeout(1800)
def test_promtool_unit_tests_each_alert_fires_when_it_should_and_not_otherwise():
    tests = DEPLOY / "prometheus" / "alerts.test.yml"
    done = run([tool("promtool"), "test", "rules", str(tests)], cwd=tests.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    covered = {
        alert["alertname"]
        for case in yaml.safe_load(tests.read_text())["tests"]
        for alert in case.get("alert_rule_test", [])
    }
    assert covered == {rule["alert"] for rule in alert_rules()}, "every alert needs a promtool test"


@pytest.mark.timeout(1800)
def test_promtool_rejects_a_broken_rule(tmp_path):
    """The syntax check is real: a rule with a PromQL error fails."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum by (job (up)"}]}]})
    )
    done = run([tool("promtool"), "check", "rules", str(broken)])
    assert done.returncode != 0
    assert "parse error" in (done.stdout + done.stderr)
