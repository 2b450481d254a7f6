"""Every process serves /metrics and /healthz; health says degraded and unhealthy when it should."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from sagesf.metrics import RECORDS_DONE, Health, MetricsServer


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
