"""`make demo`'s command from a user's point of view, and what it leaves behind.

One demo run serves the module (it is the slowest thing the suite does): the steps it prints, a
second run changing nothing, every metric a dashboard charts having data on the running processes
(the ones that measure flow non-zero somewhere; the failure counters may stay at zero on a clean
run; the state gauges must at least exist, so no panel says "No data" after a demo), and
`sagesf sandbox down` stopping it all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.paths import REPO_ROOT
from sandbox.pipeline import COMPONENTS
from tests.deploy.support import PROMETHEUS_METRICS, dashboard_queries, exported_metrics, promql_selectors

Sagesf = Callable[..., subprocess.CompletedProcess[str]]

# zero (or no series at all) is the right value after a clean demo
MAY_BE_ZERO = {
    "sagesf_dead_letters_total",
    "sagesf_salesforce_dead_letters_total",
    "sagesf_retries_total",
    "sagesf_processor_retries_total",
    "sagesf_backpressure_seconds_total",
    "sagesf_salesforce_backpressure_seconds_total",
    "sagesf_sage_circuit_opened_total",
    "sagesf_sage_poll_failures_total",
    "sagesf_salesforce_echoes_dropped_total",
}
# state gauges: 0 is a normal value (no lag, ok, closed, nothing held) but the series must exist
MUST_EXIST = {
    "sagesf_consumer_lag",
    "sagesf_health_state",
    "sagesf_sage_circuit_state",
    "sagesf_processor_held_orders",
    "sagesf_processor_inventory_pending_items",
}


@pytest.fixture(scope="module")
def sagesf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sagesf]:
    """`sagesf ...` as a user runs it, on this module's own sandbox (stopped at the end)."""
    sandbox_dir: Path = tmp_path_factory.mktemp("demo") / "sandbox"
    env = {**os.environ, "SAGESF_SANDBOX_DIR": str(sandbox_dir), "COLUMNS": "250"}
    env.pop("SAGESF_ENV_FILE", None)

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sagesf", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=timeout,
            check=False,
        )

    try:
        yield run
    finally:
        run("sandbox", "down", timeout=120)


@pytest.fixture(scope="module")
def demo(sagesf: Sagesf) -> subprocess.CompletedProcess[str]:
    return sagesf("demo")


@pytest.mark.timeout(400)
def test_demo_prints_its_steps_and_a_second_run_changes_nothing(sagesf: Sagesf, demo) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    for expected in (
        "0. Start the sandbox",
        "topics apply",
        "schemas register",
        "1. As a sales rep in Salesforce",
        "2. Change event detected",
        "3. Customer created in Sage 100",
        "4. Products mapped to Sage items",
        "1001-HON-H252 -> HRDW-1000",
        "5. Sage sales order written",
        "SO_SalesOrderDetail 000001 HRDW-1000 x 6",
        "6. Order number and status back on the opportunity",
        "Sage_Sync_Status__c=Synced",
        "7. Stock updated in Sage and synced back to Product2",
        "8. A Sage-side status change arrives in Salesforce",
        "Sage_Order_Status__c = Open",
        "9. Customer changes flow both ways",
        "-> Account Credit_Limit__c",
        "10. Credit check: Salesforce asks, Sage answers",
        "Approved__c=True",
        "Stop it: .venv/bin/sagesf sandbox down",
    ):
        assert expected in out, out
    assert "FAILED" not in out
    status = sagesf("sandbox", "status")
    assert status.stdout.count("running") == 3 + len(COMPONENTS), status.stdout
    again = sagesf("demo")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change" in again.stdout


def test_every_metric_a_dashboard_charts_has_data_after_the_demo(sagesf: Sagesf, demo) -> None:
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
    status = sagesf("sandbox", "status", timeout=60)
    urls = dict(re.findall(r"([a-z][a-z-]+)\s*\S?\s*running\s*\S?\s*(http://\S+/metrics)", status.stdout))
    assert set(urls) == {c.name for c in COMPONENTS}, status.stdout
    scraped = {name: _scrape(url) for name, url in urls.items()}

    exported = exported_metrics()
    seen: dict[str, float] = {}
    for values in scraped.values():
        for sample, value in values.items():
            seen[sample] = max(seen.get(sample, 0.0), value)
    used = set()
    for _file, _title, expr in dashboard_queries():
        used |= promql_selectors(expr).metrics
    problems = []
    for sample in sorted(used - set(PROMETHEUS_METRICS)):
        metric = exported[sample]
        if metric.kind == "histogram":
            sample = metric.name + "_count"  # observed at least once
        total = metric.name + "_total" if metric.kind == "counter" else None
        family = {metric.name, total} - {None}
        if family & MAY_BE_ZERO:
            continue
        if family & MUST_EXIST:
            if sample not in seen:
                problems.append(f"{sample}: no series on any process")
            continue
        if seen.get(sample, 0.0) <= 0:
            problems.append(f"{sample}: {'no series' if sample not in seen else 'zero'} on every process")
    assert not problems, "after the demo:\n" + "\n".join(problems)


def test_sandbox_down_stops_every_process(sagesf: Sagesf, demo) -> None:
    down = sagesf("sandbox", "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert sagesf("sandbox", "kafka", "status").returncode == 1


def _scrape(url: str) -> dict[str, float]:
    """Sample name -> the largest value among its series (a histogram's _count counts for it)."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the sandbox's own http URL
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = max(values.get(sample.name, 0.0), float(sample.value))
    return values
