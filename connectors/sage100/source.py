"""The Sage 100 source: changed rows polled over ODBC become canonical records (`SageSource`).

It is a sagesf.source `Source`: `sagesf run sage-source` drives it with the core SourceLoop,
which publishes what `read()` yields and stores the watermarks in positions.v1 under
`<component>/<table>` once Kafka has the records.

Metrics (prometheus_client, next to the breaker's `sagesf_sage_circuit_state`):
`sagesf_sage_poll_rows_total{table,outcome}` (published, duplicate, echo, dead_letter),
`sagesf_sage_rows_per_poll{table}`, `sagesf_sage_poll_duration_seconds{table}`,
`sagesf_sage_detection_delay_seconds{table}` (DateUpdated/TimeUpdated to Kafka acknowledgement),
`sagesf_sage_watermark_timestamp_seconds{table}`, `sagesf_sage_poll_failures_total{table,kind}`
(kind sage: a Sage failure; Kafka failures are the loop's, `sagesf_produce_failures_total`),
`sagesf_sage_sweep_rows_total{table,kind}` (vanished, changed, dead_letter),
`sagesf_sage_future_rows_total{table}` (row versions stamped later than now plus
`future_skew_seconds`: published, but the watermark stops at now plus the skew), served with
/healthz by sagesf.metrics.MetricsServer.

Limits: one process per Sage company and component name (two would overwrite each other's
positions); tables are polled one after another on one connection, so a slow table delays the
others, and a Sage failure on one table backs off all of them (Sage is one server).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from connectors.sage100.availability import CircuitBreaker, CircuitOpen
from connectors.sage100.config import Sage100Settings
from connectors.sage100.odbc import SageOdbc, SageUnavailable
from connectors.sage100.polling import ChangePoller, PollState
from connectors.sage100.streams import MappingContext, Stream, build_streams
from connectors.sage100.sweep import KeySweeper
from connectors.sage100.values import local_to_utc, stamp_local
from sagesf.metrics import Health
from sagesf.source import SourceBatch

log = logging.getLogger("connectors.sage100.source")  # the same name when run with -m

__all__ = ["STAGE", "SageSource"]

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

FUTURE_ROWS = Counter(
    "sagesf_sage_future_rows_total",
    "Changed Sage rows stamped later than now plus the allowed skew (a wrong clock or import)",
    ["table"],
)

STAGE = "sage-source"  # dead letters go to dlq.sage-source.v1


@dataclass
class _Table:
    stream: Stream
    poller: ChangePoller
    sweeper: KeySweeper | None
    next_poll: float = 0.0
    next_sweep: float = 0.0


class SageSource:
    """Polls and sweeps every configured table on schedule (see `read`)."""

    def __init__(
        self,
        settings: Sage100Settings,
        positions: Mapping[str, Any],
        *,
        odbc: SageOdbc | None = None,
        topics: Mapping[str, str] | None = None,
        health: Health | None = None,
        breaker: CircuitBreaker | None = None,
        sweep: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.source = settings.source
        self.name = STAGE
        self.odbc = odbc or SageOdbc(
            settings.odbc_connection_string(),
            query_timeout=settings.query_timeout,
            login_timeout=settings.login_timeout,
        )
        self.health = health or Health()
        self.breaker = breaker or CircuitBreaker(
            self.source.component, health=self.health, max_backoff=settings.breaker_max_backoff
        )
        if self.breaker.health is None:
            self.breaker.health = self.health
        self.clock = clock
        self.zone = settings.zone
        ctx = MappingContext(
            self.zone,
            settings.salesforce_id_udf,
            {**self.source.topics, **(topics or {})},
            integration_user=settings.integration_user_key,
        )
        streams = build_streams(settings.tables(), self.source.tables, ctx)
        self.tables: dict[str, _Table] = {}
        for name, stream in streams.items():
            stored = {
                k.removeprefix(f"{name}/keys/"): v
                for k, v in positions.items()
                if k.startswith(f"{name}/keys/")
            }
            sweeper = KeySweeper(stream, self.odbc, stored=stored) if sweep else None
            poller = ChangePoller(
                stream,
                self.odbc,
                integration_user=settings.integration_user_key,
                zone=self.zone,
                overlap_seconds=self.source.overlap_seconds,
                batch_rows=self.source.batch_rows,
                time_pad=settings.time_pad,
                state=PollState.from_position(positions.get(name)),
                notes=sweeper,
                observe_delay=DETECTION_DELAY.labels(name).observe,
                on_checkpoint=self._watermark_gauge(name),
                future_skew_seconds=self.source.future_skew_seconds,
                clock=clock,
            )
            self.tables[name] = _Table(stream, poller, sweeper)
            self._watermark_gauge(name)(poller.state)

    def _watermark_gauge(self, table: str) -> Callable[[PollState], None]:
        def show(state: PollState) -> None:
            if state.stamp > 0:
                WATERMARK.labels(table).set(local_to_utc(stamp_local(state.stamp), self.zone).timestamp())

        return show

    # --- the source ----------------------------------------------------------------------------

    def read(self) -> Iterator[SourceBatch]:
        """Poll every table whose poll is due and sweep every table whose sweep is due, one after
        another; when none is due, wait until one is (at most a second) and return.

        Sage unavailable (driver error, database locked, timeout: `SageUnavailable`) counts against
        the circuit breaker (sage100.availability) and is raised for the loop to back off; while
        the breaker is open no query goes to Sage (`CircuitOpen`, retry after its wait) and
        /healthz says "degraded". A failed poll is repeated from the same watermark, so nothing is
        lost, and rows already published are in `seen`, so nothing is published twice. Any other
        error (a wrong column in the configuration: `SageQueryError`) stops the process.
        """
        now = time.monotonic()
        due = [
            (name, entry)
            for name, entry in self.tables.items()
            if now >= entry.next_poll or (entry.sweeper is not None and now >= entry.next_sweep)
        ]
        if not due:
            time.sleep(max(0.0, min(self._next_due() - now, 1.0)))
            return
        for name, entry in due:
            if now >= entry.next_poll:
                yield from self._poll(name, entry)
                entry.next_poll = time.monotonic() + self.source.poll_interval
            if entry.sweeper is not None and now >= entry.next_sweep:
                yield from self._sweep(name, entry, entry.sweeper)
                entry.next_sweep = time.monotonic() + self.source.sweep_interval

    def _next_due(self) -> float:
        return min(
            min(e.next_poll, e.next_sweep) if e.sweeper is not None else e.next_poll
            for e in self.tables.values()
        )

    def _poll(self, table: str, entry: _Table) -> Iterator[SourceBatch]:
        self._allow()
        started = time.monotonic()
        try:
            yield from entry.poller.read()
        except SageUnavailable as exc:
            self.breaker.record_failure(exc)
            POLL_FAILURES.labels(table, "sage").inc()
            raise
        self.breaker.record_success()
        stats = entry.poller.stats
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
        if stats.future:
            FUTURE_ROWS.labels(table).inc(stats.future)
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

    def _sweep(self, table: str, entry: _Table, sweeper: KeySweeper) -> Iterator[SourceBatch]:
        self._allow()
        try:
            result = sweeper.sweep()
        except SageUnavailable as exc:
            self.breaker.record_failure(exc)
            POLL_FAILURES.labels(table, "sage").inc()
            raise
        self.breaker.record_success()

        def committed() -> None:
            entry.stream.confirmed(result.records)
            sweeper.commit(result)

        yield SourceBatch(
            records=list(result.records),
            rejected=result.rejected,
            positions=result.positions,
            committed=committed,
        )
        for kind, count in (
            ("vanished", result.vanished),
            ("changed", result.changed),
            ("dead_letter", len(result.rejected)),
        ):
            if count:
                SWEEP_ROWS.labels(table, kind).inc(count)
        log.log(
            logging.INFO if result.records else logging.DEBUG,
            "%s: key sweep of %d rows%s: %d vanished, %d changed without a new DateUpdated",
            table,
            result.keys,
            " (baseline)" if result.baseline else "",
            result.vanished,
            result.changed,
        )

    def _allow(self) -> None:
        if not self.breaker.allow():
            raise CircuitOpen(self.source.component, self.breaker.wait_time(), self.breaker.last_error)

    def close(self) -> None:
        self.odbc.close()
