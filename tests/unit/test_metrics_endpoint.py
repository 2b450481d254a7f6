"""Every process serves /metrics and /healthz; health says degraded and unhealthy when it should."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

import pytest

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.odbc import SageOdbc, SageUnavailable
from sagesf.metrics import RECORDS_DONE, Health, MetricsServer
from sandbox.sage100.database import connection_string


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_and_health_over_http():
    health = Health(stall_after=0.3)
    server = MetricsServer(health, port=0)
    try:
        RECORDS_DONE.labels("unit-test-stage").inc(3)
        code, body = _get(server.port, "/metrics")
        assert code == 200
        assert 'sagesf_records_done_total{stage="unit-test-stage"} 3.0' in body

        health.progress("sage-sink")
        code, body = _get(server.port, "/healthz")
        assert (code, json.loads(body)["status"]) == (200, "ok")

        health.dependency("sage100", up=False, detail="ODBC: database is locked")
        code, body = _get(server.port, "/healthz")
        report = json.loads(body)
        assert (code, report["status"]) == (200, "degraded")
        assert report["components"]["sage100"]["detail"] == "ODBC: database is locked"

        health.dependency("sage100", up=True)
        health.waiting("sage-sink", pending=12)  # work waiting, no progress since
        time.sleep(0.4)
        code, body = _get(server.port, "/healthz")
        assert (code, json.loads(body)["status"]) == (503, "unhealthy")

        health.progress("sage-sink", pending=0)
        assert _get(server.port, "/healthz")[0] == 200
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.stop()


def test_healthz_gives_a_short_reason_and_the_log_the_drivers_message(tmp_path, caplog):
    """A real ODBC error from the sandbox database: its driver text stays in the (masked) log."""
    caplog.set_level(logging.WARNING, logger="connectors.sage100.availability")
    health = Health()
    server = MetricsServer(health, port=0)
    odbc = SageOdbc(connection_string(tmp_path / "moved-away.db"), login_timeout=2)
    breaker = CircuitBreaker("sage-sink", failure_threshold=2, initial_backoff=0.01, health=health)
    try:
        for _ in range(2):
            with pytest.raises(SageUnavailable):
                breaker.call(lambda: odbc.fetchall("SELECT 1"))
        code, body = _get(server.port, "/healthz")
    finally:
        server.stop()
    assert code == 200  # degraded: Sage is down, nothing is stalled
    detail = json.loads(body)["components"]["sage100"]["detail"]
    assert detail == "2 failures in a row, last: Sage 100 ODBC error while connecting"
    logged = caplog.records[-1].getMessage()
    assert "[SQLite]connect failed (14) (SQLDriverConnect)" in logged
