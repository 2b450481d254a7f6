"""Prometheus metrics and the per-process `/metrics` and `/healthz` endpoint.

Every metric a dashboard or alert uses is defined here, once, so that deploy/ can check that it is
exported. Label values are bounded (stage, topic, error class), never record IDs.

`MetricsServer` serves both paths from a small threaded HTTP server (prometheus_client's own
`start_http_server` has no health path). `/healthz` answers from a `Health` model: 200 with
status "ok" or "degraded" (a dependency is down, the process waits for it), 503 "unhealthy"
(work is pending and no progress was made for `stall_after` seconds: a stalled consumer, which a
liveness probe should restart).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

RECORDS_IN = Counter("sagesf_records_in_total", "Records consumed from Kafka", ["stage", "topic"])
RECORDS_DONE = Counter("sagesf_records_done_total", "Records handled successfully", ["stage"])
RECORDS_PRODUCED = Counter("sagesf_records_produced_total", "Records acknowledged by Kafka", ["topic"])
PRODUCE_FAILURES = Counter("sagesf_produce_failures_total", "Records Kafka did not acknowledge", ["topic"])
DEAD_LETTERS = Counter(
    "sagesf_dead_letters_total", "Records sent to a dead-letter topic", ["stage", "error_class"]
)
RETRIES = Counter("sagesf_retries_total", "Batches retried after a retriable error", ["stage"])
BACKPRESSURE_SECONDS = Counter(
    "sagesf_backpressure_seconds_total", "Time spent paused on backpressure", ["stage"]
)
BATCH_SECONDS = Histogram(
    "sagesf_batch_duration_seconds", "Time to handle one consumed batch, commit included", ["stage"]
)
POSITIONS_STORED = Counter(
    "sagesf_positions_stored_total", "Source positions stored after Kafka acknowledged", ["component"]
)
POSITION_TIMESTAMP = Gauge(
    "sagesf_position_stored_timestamp_seconds",
    "When a source last stored its position (time() minus this is the position age)",
    ["component", "stream"],
)
HEALTH_STATE = Gauge("sagesf_health_state", "0 ok, 1 degraded, 2 unhealthy", ["component"])

OK, DEGRADED, UNHEALTHY = "ok", "degraded", "unhealthy"
_RANK = {OK: 0, DEGRADED: 1, UNHEALTHY: 2}


@dataclass
class _Component:
    status: str = OK
    detail: str = ""
    last_progress: float = field(default_factory=time.monotonic)
    pending: int = 0


class Health:
    """What /healthz reports: dependencies up or down, and whether work is making progress."""

    def __init__(self, stall_after: float = 120.0) -> None:
        self.stall_after = stall_after
        self._components: dict[str, _Component] = {}
        self._lock = threading.Lock()

    def _get(self, name: str) -> _Component:
        return self._components.setdefault(name, _Component())

    def dependency(self, name: str, up: bool, detail: str = "") -> None:
        """A dependency (Kafka, Salesforce, Sage) is reachable or not: down means degraded."""
        with self._lock:
            comp = self._get(name)
            comp.status, comp.detail = (OK, "") if up else (DEGRADED, detail)

    def progress(self, name: str, pending: int = 0) -> None:
        """The component did work; `pending` is what it still has to do (e.g. consumer lag)."""
        with self._lock:
            comp = self._get(name)
            comp.last_progress = time.monotonic()
            comp.pending = pending

    def waiting(self, name: str, pending: int) -> None:
        """The component has `pending` work but did not finish any of it just now."""
        with self._lock:
            self._get(name).pending = pending

    def report(self) -> tuple[str, dict[str, dict[str, object]]]:
        now = time.monotonic()
        overall = OK
        details: dict[str, dict[str, object]] = {}
        with self._lock:
            for name, comp in self._components.items():
                status = comp.status
                idle = now - comp.last_progress
                if comp.pending > 0 and idle > self.stall_after:
                    status = UNHEALTHY
                details[name] = {
                    "status": status,
                    "detail": comp.detail,
                    "pending": comp.pending,
                    "seconds_since_progress": round(idle, 1),
                }
                HEALTH_STATE.labels(name).set(_RANK[status])
                if _RANK[status] > _RANK[overall]:
                    overall = status
        return overall, details


class _Handler(BaseHTTPRequestHandler):
    health: Health

    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
        elif self.path.startswith("/healthz"):
            status, details = self.health.report()
            body = json.dumps({"status": status, "components": details}).encode()
            ctype, code = "application/json", 503 if status == UNHEALTHY else 200
        else:
            body, ctype, code = b"not found\n", "text/plain", 404
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class MetricsServer:
    """Serves /metrics and /healthz on a background thread until `stop()`."""

    def __init__(self, health: Health, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"health": health})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
