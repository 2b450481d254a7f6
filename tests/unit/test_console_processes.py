"""The Processes page reads each process's real /healthz and /metrics (sagesf.metrics.MetricsServer)."""

from __future__ import annotations

import re
import time

import pytest

from sagesf.metrics import CONSUMER_LAG, RECORDS_DONE, Health, MetricsServer
from tests.kit.console import console_settings, logged_in, make_console


@pytest.fixture
def process():
    health = Health(stall_after=60)
    server = MetricsServer(health, "127.0.0.1", 0)
    yield health, f"http://127.0.0.1:{server.port}"
    server.stop()


def cells(page: str, row_id: str) -> list[str]:
    """The cells after the first of the table row `row_id` on the page."""
    row = re.search(rf'<tr id="{re.escape(row_id)}"><td[^>]*>[^<]*</td>(.*?)</tr>', page, re.DOTALL)
    assert row, f"no row {row_id}"
    return [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.DOTALL)]


def test_each_process_shows_its_health_lag_and_throughput(tmp_path, process):
    health, url = process
    health.dependency("kafka", False, "broker 10.0.0.5:9092 down")
    health.progress("console-test-stage", pending=7)
    CONSUMER_LAG.labels("console-test-stage", "g", "t", "0").set(4)
    CONSUMER_LAG.labels("console-test-stage", "g", "t", "1").set(3)
    settings = console_settings(tmp_path, processes={"worker": url, "gone": "http://127.0.0.1:9/metrics"})
    client = make_console(settings, {"ann": ("viewer",)})
    logged_in(client, "ann")

    first = client.get("/processes").text
    assert re.search(r'id="process-worker".*?status-degraded">degraded', first, re.DOTALL)
    assert "broker 10.0.0.5:9092 down" in first
    assert cells(first, "worker-console-test-stage")[0] == "7"  # lag summed over partitions
    assert re.search(r'id="process-gone".*?status-unreachable">unreachable', first, re.DOTALL)

    RECORDS_DONE.labels("console-test-stage").inc(30)
    time.sleep(1.0)
    second = client.get("/processes").text
    _lag, _done, per_second = cells(second, "worker-console-test-stage")
    assert float(per_second) > 10  # 30 records in about a second
    assert float(per_second) <= 30
