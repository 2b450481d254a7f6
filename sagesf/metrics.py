"""Prometheus metrics and the per-process `/metrics` and `/healthz` endpoint.

Every metric a dashboard or alert uses is defined here, once, so that deploy/ can check that it is
exported. Label values are bounded (stage, topic, error class), never record IDs.

`MetricsServer` serves them from a small threaded HTTP server (prometheus_client's own
`start_http_server` has no health path). The health paths answer from a `Health` model whose
components are of two kinds: dependencies (Kafka, Salesforce, Sage 100, the tables' recovery:
`dependency(name, up)`) and work (a consumer stage, a source: `progress(name, pending)` when it
did work, `waiting(name, pending)` when it has work it did not finish, `blocked(name, pending,
seconds, reason)` when it deliberately waits, e.g. a backpressure pause or a retry backoff).

The report is, per component and overall (the worst):
- "ok";
- "degraded": a dependency is down, or work is deliberately blocked (the process is alive and
  waits; restarting it would not help). A stall while any dependency is down also reads
  "degraded", not "unhealthy": the dependency explains it;
- "unhealthy": work is pending (`pending` > 0: records in hand, or consumer lag) and nothing
  progressed for `stall_after` seconds, with no dependency down to explain it: a stalled
  consumer (a handler that never returns, a fetch that never delivers, a dead loop thread).

Probes (deploy/k8s wires them; compose's healthchecks use the liveness path):
- `/healthz` and `/healthz/live`: 503 only when "unhealthy" (liveness: restart a stalled process,
  never one that waits for Sage or Salesforce);
- `/healthz/ready`: 503 unless "ok" (readiness: every dependency up, nothing blocked).
Each answers JSON `{"status": ..., "components": {name: {status, detail, pending,
seconds_since_progress}}}`. A detail is a short reason (`short_reason`): secrets masked
(sagesf.logs.redact), and a driver's own text (`[unixODBC][Driver Manager]...`, the SQLSTATE,
the ODBC function) cut off: the full message is in the log, where it is masked the same way.

Limits: stall detection needs the component to report `pending`; a component that only ever
calls `progress(name)` (pending 0) can be degraded but never unhealthy. While any dependency is
reported down, no stall in the process reads "unhealthy" (a dependency stuck "down" by mistake
would hide a stall; readiness and the alerts still show it). Consumer lag comes from the
client's cached high watermarks, so it is as fresh as the last fetch response.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from sagesf.logs import redact

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
CONSUMER_LAG = Gauge(
    "sagesf_consumer_lag",
    "Records after the stage's position: high watermark minus position, per assigned partition",
    ["stage", "group", "topic", "partition"],
)
END_TO_END_LATENCY = Histogram(
    "sagesf_end_to_end_latency_seconds",
    "From a record's event time (by default its Kafka timestamp) to the stage committing it",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
)

OK, DEGRADED, UNHEALTHY = "ok", "degraded", "unhealthy"
_RANK = {OK: 0, DEGRADED: 1, UNHEALTHY: 2}
DETAIL_LENGTH = 200
# where an ODBC driver's own text starts: `[HY000] [SQLite]...`, `[unixODBC][Driver Manager]...`
_DRIVER_TEXT = re.compile(r"\s*\[[A-Za-z0-9][\w.-]*\].*", re.DOTALL)
_ODBC_FUNCTION = re.compile(r"\s*\(SQL[A-Z]\w*\)")


def short_reason(text: str) -> str:
    """What /healthz says about a failure: secrets masked, the driver's own text cut off, short.

    `Sage 100 ODBC error while querying: [HY000] [SQLite]database is locked (5) (SQLExecDirectW)`
    reads `Sage 100 ODBC error while querying`. Masked before it is cut, so the cut cannot leave
    the head of a secret behind.
    """
    text = _ODBC_FUNCTION.sub("", _DRIVER_TEXT.sub("", redact(text), count=1)).rstrip(" :;,")
    return text if len(text) <= DETAIL_LENGTH else text[: DETAIL_LENGTH - 3] + "..."


@dataclass
class _Component:
    status: str = OK  # what dependency() last said
    detail: str = ""
    last_progress: float = field(default_factory=time.monotonic)
    pending: int = 0
    blocked_until: float = 0.0  # a deliberate wait (blocked()) ends then
    blocked_reason: str = ""


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
            comp.status, comp.detail = (OK, "") if up else (DEGRADED, short_reason(detail))

    def progress(self, name: str, pending: int = 0) -> None:
        """The component did work; `pending` is what it still has to do (e.g. consumer lag)."""
        with self._lock:
            comp = self._get(name)
            comp.last_progress = time.monotonic()
            comp.pending = pending
            comp.blocked_until, comp.blocked_reason = 0.0, ""

    def waiting(self, name: str, pending: int) -> None:
        """The component has `pending` work but did not finish any of it just now."""
        with self._lock:
            self._get(name).pending = pending

    def blocked(self, name: str, pending: int, seconds: float, reason: str) -> None:
        """The component waits `seconds` on purpose (backpressure, retry backoff) with work pending.

        It reads "degraded" with `reason` meanwhile, and the stall clock starts only after the wait.
        """
        with self._lock:
            comp = self._get(name)
            comp.pending = pending
            comp.blocked_until = max(comp.blocked_until, time.monotonic() + max(0.0, seconds))
            comp.blocked_reason = short_reason(reason)

    def report(self) -> tuple[str, dict[str, dict[str, object]]]:
        now = time.monotonic()
        overall = OK
        details: dict[str, dict[str, object]] = {}
        with self._lock:
            down = sorted(name for name, comp in self._components.items() if comp.status != OK)
            for name, comp in self._components.items():
                status, detail = comp.status, comp.detail
                if now < comp.blocked_until:
                    status, detail = DEGRADED, comp.blocked_reason
                idle = now - max(comp.last_progress, comp.blocked_until)
                if comp.pending > 0 and idle > self.stall_after:
                    if down:
                        status = DEGRADED
                        detail = f"no progress for {idle:.0f} s while {', '.join(down)} is down"
                    else:
                        status = UNHEALTHY
                        detail = f"{comp.pending} pending and no progress for {idle:.0f} s"
                details[name] = {
                    "status": status,
                    "detail": detail,
                    "pending": comp.pending,
                    "seconds_since_progress": round(now - comp.last_progress, 1),
                }
                HEALTH_STATE.labels(name).set(_RANK[status])
                if _RANK[status] > _RANK[overall]:
                    overall = status
        return overall, details


class _Handler(BaseHTTPRequestHandler):
    health: Health

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            self.health.report()  # refreshes sagesf_health_state for this scrape
            body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
        elif path in ("/healthz", "/healthz/live", "/healthz/ready"):
            status, details = self.health.report()
            failing = status != OK if path == "/healthz/ready" else status == UNHEALTHY
            body = json.dumps({"status": status, "components": details}).encode()
            ctype, code = "application/json", 503 if failing else 200
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
    """Serves /metrics and /healthz on a background thread until `stop()`.

    One thread per connection, and a connection that sends nothing for `idle_timeout` seconds is
    closed (the handler's socket timeout), so a client that sends half a request and waits
    (slowloris) holds one thread for that long and never blocks the others.
    Limits: a client that trickles a byte inside every `idle_timeout` keeps its thread; the
    NetworkPolicy of deploy/k8s admits only the monitoring namespace.
    """

    def __init__(
        self, health: Health, host: str = "127.0.0.1", port: int = 0, *, idle_timeout: float = 5.0
    ) -> None:
        handler = type("Handler", (_Handler,), {"health": health, "timeout": idle_timeout})
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
