"""The Processes page in a browser: each process's health, parts, lag and throughput, read from
its real /healthz and /metrics (sagesf.metrics.MetricsServer). Screenshots in test-output/ui/."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from sagesf.metrics import CONSUMER_LAG, RECORDS_DONE, Health, MetricsServer
from sandbox.processes import free_port
from tests.ui.conftest import Console, Shots


@pytest.fixture(scope="module")
def worker() -> Iterator[tuple[Health, str]]:
    """A process's health and metrics endpoint, as every sagesf process serves them."""
    health = Health(stall_after=60)
    server = MetricsServer(health, "127.0.0.1", 0)
    yield health, f"http://127.0.0.1:{server.port}/metrics"
    server.stop()


def test_the_processes_page_shows_health_lag_and_throughput(
    page: Page, shots: Shots, worker: tuple[Health, str], console_factory: Callable[..., Console]
) -> None:
    health, url = worker
    health.dependency("kafka", True)
    health.dependency("sage100", False, "Sage 100 database locked (SQLSTATE HY000)")
    health.progress("ui-orders", pending=12)
    CONSUMER_LAG.labels("ui-orders", "sagesf-processors", "salesorder.v1", "0").set(12)
    RECORDS_DONE.labels("ui-orders").inc(40)
    gone = f"http://127.0.0.1:{free_port()}/metrics"
    console = console_factory(processes={"processors": url, "sage-sink": gone})
    console.login(page, "viewer")
    page.goto(f"{console.url}/processes")
    processors = page.locator("#process-processors")
    expect(processors.locator(".process-head .status")).to_have_text("degraded")
    expect(processors).to_contain_text("Sage 100 database locked")
    expect(page.locator("#processors-ui-orders td.lag")).to_have_text("12")
    expect(page.locator("#process-sage-sink .process-head .status")).to_have_text("unreachable")
    RECORDS_DONE.labels("ui-orders").inc(60)
    time.sleep(1)
    page.reload()
    per_second = page.locator("#processors-ui-orders td").nth(3)
    expect(per_second).not_to_have_text("–")
    assert float(per_second.inner_text()) > 0
    shots("processes")
