"""After the demo scenario, every metric the dashboards chart has data on the running processes.

Runs `sagesf demo` (the sandbox with both connectors and the processors, and the order scenario:
Closed Won -> Sage order -> order number, status and stock back in Salesforce) in its own
sandbox directory, asks `sagesf sandbox status` for each process's /metrics URL, scrapes them
all, and checks each metric a dashboard queries: the ones that measure flow (records in and
out, latency, API calls, polls, positions) must have a non-zero sample somewhere; the ones that
count failures or waits (dead letters, retries, backpressure, breaker openings) may stay at zero
on a clean run, and the state gauges (lag, health, breaker) must at least be there, so no panel
says "No data" after a demo. Then `sagesf sandbox down`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.paths import REPO_ROOT
from sandbox.pipeline import COMPONENTS
from tests.deploy.support import PROMETHEUS_METRICS, dashboard_queries, exported_metrics, promql_selectors

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


def _sagesf(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagesf", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )


def _scrape(url: str) -> dict[str, float]:
    """Sample name -> the largest value among its series (a histogram's _count counts for it)."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the sandbox's own http URL
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = max(values.get(sample.name, 0.0), float(sample.value))
    return values


@pytest.mark.timeout(900)
def test_dashboard_metrics_have_data_after_the_demo(tmp_path):
    env = {**os.environ, "SAGESF_SANDBOX_DIR": str(tmp_path / "sandbox"), "COLUMNS": "250"}
    env.pop("SAGESF_ENV_FILE", None)
    try:
        demo = _sagesf(env, "demo", timeout=600)
        assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
        status = _sagesf(env, "sandbox", "status", timeout=60)
        urls = dict(re.findall(r"([a-z][a-z-]+)\s*\S?\s*running\s*\S?\s*(http://\S+/metrics)", status.stdout))
        assert set(urls) == {c.name for c in COMPONENTS}, status.stdout
        scraped = {name: _scrape(url) for name, url in urls.items()}
    finally:
        down = _sagesf(env, "sandbox", "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr

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
