"""Every process serves /metrics and /healthz; health says degraded and unhealthy when it should."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request

import pytest

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.odbc import SageOdbc, SageUnavailable
from sagesf.config import MetricsSettings
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


def _outward_address() -> str | None:
    """This machine's address on its network (not loopback), or None when it has none."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        address: str = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_by_default_metrics_and_health_answer_on_loopback_only():
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address besides loopback")
    settings = MetricsSettings()
    server = MetricsServer(Health(), settings.host, 0)
    try:
        assert _get(server.port, "/healthz")[0] == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outward, server.port), timeout=5).close()
    finally:
        server.stop()


def test_a_client_that_sends_half_a_request_neither_blocks_the_server_nor_keeps_its_socket():
    server = MetricsServer(Health(), port=0)  # the default idle timeout
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(5)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        assert _get(server.port, "/healthz")[0] == 200  # others are served meanwhile
        for sock in slow:
            try:
                closed = sock.recv(1024) == b""
            except TimeoutError:
                closed = False
            assert closed, "the server kept an idle half-sent request open"
    finally:
        for sock in slow:
            sock.close()
        server.stop()
