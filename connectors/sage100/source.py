"""The Sage 100 source: polls Sage over ODBC and publishes canonical records to Kafka, as a process.

Owns `SageSource` (one change poller and one key sweeper per configured table, the circuit
breaker, metrics and health) and the process entry point:

    python -m connectors.sage100.source [--once]

How it works: `run()` loops over the configured tables, polling each every `poll_interval`
seconds (sage100.polling: watermark, overlap window, de-duplication, echo filter; records are
published and acknowledged by Kafka before the watermark is stored in positions.v1 under
`<component>/<table>`), and sweeping each every `sweep_interval` (sage100.sweep: deleted and
unstamped changes). On start it reads its positions back, so a restarted or moved process
resumes where the last one stopped, re-reading only the overlap window.

Sage unavailable (driver error, database locked, timeout: `SageUnavailable`) counts against the
circuit breaker (sage100.availability); while it is open no query goes to Sage, and /healthz
says "degraded". The failed poll is simply repeated later from the same watermark, so nothing
is lost, and rows already published are in `seen`, so nothing is published twice. A Kafka
failure (`ProduceFailed`) is retried with exponential backoff and jitter the same way, without
blaming Sage. Any other error (a wrong column in the configuration: `SageQueryError`) stops the
process with the message.

Metrics (prometheus_client, next to the breaker's `sagesf_sage_circuit_state`):
`sagesf_sage_poll_rows_total{table,outcome}` (published, duplicate, echo, dead_letter),
`sagesf_sage_rows_per_poll{table}`, `sagesf_sage_poll_duration_seconds{table}`,
`sagesf_sage_detection_delay_seconds{table}` (DateUpdated/TimeUpdated to Kafka acknowledgement),
`sagesf_sage_watermark_timestamp_seconds{table}`, `sagesf_sage_poll_failures_total{table,kind}`,
`sagesf_sage_sweep_rows_total{table,kind}` (vanished, changed), served with /healthz by
sagesf.metrics.MetricsServer.

Limits: one process per Sage company and component name (two would overwrite each other's
positions); tables are polled one after another on one connection, so a slow table delays the
others.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from connectors.sage100.availability import CircuitBreaker, CircuitOpen
from connectors.sage100.config import Sage100Settings
from connectors.sage100.odbc import SageOdbc, SageUnavailable
from connectors.sage100.polling import ChangePoller, PollState, PollStats, Publisher
from connectors.sage100.streams import MappingContext, Stream, build_streams
from connectors.sage100.sweep import KeySweeper
from connectors.sage100.values import local_to_utc, stamp_local
from sagesf.consumer import RetryPolicy
from sagesf.errors import Retriable
from sagesf.metrics import Health

log = logging.getLogger("connectors.sage100.source")  # the same name when run with -m

__all__ = ["PositionBackend", "SageSource", "main"]

POLL_ROWS = Counter(
    "sagesf_sage_poll_rows_total", "Changed Sage rows handled by the source", ["table", "outcome"]
)
POLL_SIZE = Histogram(
    "sagesf_sage_rows_per_poll",
    "Changed rows read by one poll of a Sage table",
    ["table"],
    buckets=(0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000),
)
POLL_SECONDS = Histogram(
    "sagesf_sage_poll_duration_seconds",
    "Time for one poll of a Sage table, Kafka acknowledgement included",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DETECTION_DELAY = Histogram(
    "sagesf_sage_detection_delay_seconds",
    "From a row's DateUpdated/TimeUpdated to Kafka acknowledging its record",
    ["table"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900, 3600),
)
WATERMARK = Gauge(
    "sagesf_sage_watermark_timestamp_seconds",
    "The watermark of a Sage table, as UTC epoch seconds",
    ["table"],
)
POLL_FAILURES = Counter("sagesf_sage_poll_failures_total", "Polls or sweeps that failed", ["table", "kind"])
SWEEP_ROWS = Counter(
    "sagesf_sage_sweep_rows_total", "Rows the key sweep found vanished or changed", ["table", "kind"]
)

COMPONENT_HEALTH = "sage-source"


class PositionBackend(Protocol):
    """Where positions live: sagesf.positions.PositionStore in production."""

    def get(self, stream: str) -> Any: ...

    def put(self, stream: str, position: Any) -> None: ...


@dataclass
class _Table:
    stream: Stream
    poller: ChangePoller
    sweeper: KeySweeper | None
    next_poll: float = 0.0
    next_sweep: float = 0.0
    failures: int = 0


class SageSource:
    def __init__(
        self,
        settings: Sage100Settings,
        publisher: Publisher,
        positions: PositionBackend,
        *,
        odbc: SageOdbc | None = None,
        topics: Mapping[str, str] | None = None,
        health: Health | None = None,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
        sweep: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.source = settings.source
        self.publisher = publisher
        self.positions = positions
        self.odbc = odbc or SageOdbc(
            settings.odbc_connection_string(),
            query_timeout=settings.query_timeout,
            login_timeout=settings.login_timeout,
        )
        self.health = health or Health()
        self.breaker = breaker or CircuitBreaker(self.source.component, health=self.health)
        if self.breaker.health is None:
            self.breaker.health = self.health
        self.retry = retry or RetryPolicy(initial=0.5, maximum=30.0)
        self.clock = clock
        self.zone = settings.zone
        ctx = MappingContext(self.zone, settings.salesforce_id_udf, {**self.source.topics, **(topics or {})})
        streams = build_streams(settings.tables(), self.source.tables, ctx)
        self.tables: dict[str, _Table] = {}
        for name, stream in streams.items():
            sweeper = KeySweeper(stream, self.odbc) if sweep else None
            poller = ChangePoller(
                stream,
                self.odbc,
                publisher,
                integration_user=settings.integration_user_key,
                zone=self.zone,
                overlap_seconds=self.source.overlap_seconds,
                batch_rows=self.source.batch_rows,
                time_pad=settings.time_pad,
                state=PollState.from_position(positions.get(name)),
                checkpoint=self._checkpointer(name),
                on_group=sweeper.note if sweeper is not None else None,
                observe_delay=DETECTION_DELAY.labels(name).observe,
                clock=clock,
            )
            self.tables[name] = _Table(stream, poller, sweeper)
            self._watermark_gauge(name, poller.state.stamp)

    def _checkpointer(self, table: str) -> Callable[[dict[str, Any]], None]:
        def store(position: dict[str, Any]) -> None:
            self.positions.put(table, position)
            self._watermark_gauge(table, int(position["stamp"]))

        return store

    def _watermark_gauge(self, table: str, stamp: int) -> None:
        if stamp > 0:
            WATERMARK.labels(table).set(local_to_utc(stamp_local(stamp), self.zone).timestamp())

    # --- one step ------------------------------------------------------------------------------

    def poll(self, table: str) -> PollStats:
        """Poll one table now (raises SageUnavailable, CircuitOpen or ProduceFailed)."""
        entry = self.tables[table]
        if not self.breaker.allow():
            raise CircuitOpen(self.source.component, self.breaker.wait_time(), self.breaker.last_error)
        started = time.monotonic()
        try:
            stats = entry.poller.poll()
        except SageUnavailable as exc:
            self.breaker.record_failure(exc)
            POLL_FAILURES.labels(table, "sage").inc()
            raise
        except Retriable:
            self.breaker.record_success()  # Sage answered; Kafka did not
            POLL_FAILURES.labels(table, "kafka").inc()
            raise
        self.breaker.record_success()
        POLL_SECONDS.labels(table).observe(time.monotonic() - started)
        POLL_SIZE.labels(table).observe(stats.rows)
        for outcome, count in (
            ("published", stats.emitted),
            ("duplicate", stats.duplicates),
            ("echo", stats.echoes),
            ("dead_letter", stats.dead_letters),
        ):
            if count:
                POLL_ROWS.labels(table, outcome).inc(count)
        if stats.emitted or stats.dead_letters:
            log.info(
                "%s: %d changed rows published (%d duplicates, %d echoes, %d dead letters) in %.3f s",
                table,
                stats.emitted,
                stats.duplicates,
                stats.echoes,
                stats.dead_letters,
                time.monotonic() - started,
            )
        return stats

    def sweep(self, table: str) -> int:
        """Run the key sweep of one table now; returns how many records it published."""
        entry = self.tables[table]
        if entry.sweeper is None:
            return 0
        if not self.breaker.allow():
            raise CircuitOpen(self.source.component, self.breaker.wait_time(), self.breaker.last_error)
        try:
            result = entry.sweeper.sweep()
        except SageUnavailable as exc:
            self.breaker.record_failure(exc)
            POLL_FAILURES.labels(table, "sage").inc()
            raise
        self.breaker.record_success()
        if result.records:
            self.publisher.publish(result.records)
            self.publisher.confirm()
            entry.stream.confirmed(result.records)
        entry.sweeper.commit(result)
        if result.vanished:
            SWEEP_ROWS.labels(table, "vanished").inc(result.vanished)
        if result.changed:
            SWEEP_ROWS.labels(table, "changed").inc(result.changed)
        log.log(
            logging.INFO if result.records else logging.DEBUG,
            "%s: key sweep of %d rows%s: %d vanished, %d changed without a new DateUpdated",
            table,
            result.keys,
            " (baseline)" if result.baseline else "",
            result.vanished,
            result.changed,
        )
        return len(result.records)

    def run_once(self, sweep: bool = False) -> dict[str, PollStats]:
        """Poll every table once (and sweep them if asked), raising the first failure."""
        out = {name: self.poll(name) for name in self.tables}
        if sweep:
            for name in self.tables:
                self.sweep(name)
        return out

    # --- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll and sweep on schedule until `stop` is set; retry failures with backoff."""
        stop = stop or threading.Event()
        log.info(
            "Sage 100 source %s polling %s every %.1f s on %s",
            self.source.component,
            ", ".join(self.tables),
            self.source.poll_interval,
            self.odbc.describe(),
        )
        now = time.monotonic()
        for entry in self.tables.values():
            entry.next_poll = now
            entry.next_sweep = now  # the first sweep takes the baseline
        while not stop.is_set():
            for name, entry in self.tables.items():
                if stop.is_set():
                    break
                now = time.monotonic()
                try:
                    if now >= entry.next_poll:
                        self.poll(name)
                        entry.next_poll = time.monotonic() + self.source.poll_interval
                    if entry.sweeper is not None and now >= entry.next_sweep:
                        self.sweep(name)
                        entry.next_sweep = time.monotonic() + self.source.sweep_interval
                    entry.failures = 0
                    self.health.progress(COMPONENT_HEALTH)
                except Retriable as exc:
                    entry.failures += 1
                    wait = max(self.breaker.wait_time(), self.retry.delay(entry.failures - 1))
                    entry.next_poll = time.monotonic() + wait
                    self.health.waiting(COMPONENT_HEALTH, pending=1)
                    sage_down = isinstance(exc, SageUnavailable | CircuitOpen)
                    # Sage outages log once per breaker state change (availability.py); others here
                    level = logging.WARNING if entry.failures == 1 and not sage_down else logging.DEBUG
                    log.log(level, "%s: %s; retrying in %.1f s", name, exc, wait)
            due = min(
                min(e.next_poll, e.next_sweep) if e.sweeper is not None else e.next_poll
                for e in self.tables.values()
            )
            stop.wait(max(0.0, min(due - time.monotonic(), self.source.poll_interval)))

    def close(self) -> None:
        self.odbc.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m connectors.sage100.source [--once]`: run the source as a process."""
    import argparse

    from confluent_kafka.schema_registry import SchemaRegistryClient

    from connectors.sage100.config import load_sage_settings
    from connectors.sage100.publish import KafkaPublisher
    from sagesf.config import ConfigError, Settings, load_settings
    from sagesf.logs import configure_logging, register_settings_secrets
    from sagesf.metrics import MetricsServer
    from sagesf.positions import PositionStore
    from sagesf.producer import ConfirmedProducer

    parser = argparse.ArgumentParser(
        prog="python -m connectors.sage100.source", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--once", action="store_true", help="poll every table once and exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, component="sage-source")
    try:
        core = load_settings(Settings)
        sage = load_sage_settings()
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    register_settings_secrets(core)
    register_settings_secrets(sage)
    health = Health()
    server = MetricsServer(health, core.metrics.host, core.metrics.port)
    producer = ConfirmedProducer(core.kafka)
    registry = SchemaRegistryClient(core.registry.client_config())
    publisher = KafkaPublisher(
        producer,
        registry,
        auto_register=core.registry.auto_register,
        timeout=sage.source.produce_timeout,
        dead_letter_topic=sage.source.dead_letter_topic,
    )
    positions = PositionStore(
        core.kafka, sage.source.component, topic=sage.source.positions_topic, producer=producer
    )
    source = SageSource(sage, publisher, positions, health=health)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.once:
            source.run_once()
        else:
            source.run(stop)
    except Retriable as exc:  # --once: Sage, Kafka or the registry did not answer
        log.error("%s", exc)
        raise SystemExit(1) from None
    finally:
        source.close()
        producer.close()
        server.stop()


if __name__ == "__main__":
    main()
