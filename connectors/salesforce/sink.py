"""The Salesforce sink: applies SalesforceCommands (salesforce.commands.v1), answers on salesforce.results.v1.

Run it with `python -m connectors.salesforce.sink` (settings: `SAGESF_SALESFORCE__*` in
connectors/salesforce/config.py; Kafka, registry and metrics from sagesf.config).

What it owns: `SalesforceSink`, the batch handler of a sagesf.consumer.ConsumerLoop, and the
assembly of that loop (`build_sink_loop`) and of the process (`main`). Per consumed batch:
1. Each command is read (commands.py); a malformed one is rejected without calling Salesforce.
2. Commands for the same record are coalesced into one write, latest field values winning. The
   batch is what the loop gathered in `batch_window` seconds (up to `max_batch_records`), so a
   burst of stock updates for one item inside the window costs one record in one request.
3. The writes go to Salesforce (writer.py): sObject Collections, 200 records a request, or a
   Bulk API 2.0 job for an object with more than `bulk_threshold` records in the batch. Every
   call carries `Sforce-Call-Options: client=<call_options_client>` (client.py), so the CDC
   source can drop the change events our own writes cause.
4. Every command that got a final answer gets one SalesforceResult (CREATED / UPDATED /
   REJECTED with Salesforce's statusCode and message), produced and acknowledged by Kafka before
   the handler returns, hence before the loop commits the offsets.
5. The handler returns one outcome per command to the loop, which decides (sagesf.consumer):
   `None` done; `SalesforceRecordError`/`InvalidCommand` (Permanent) -> dlq.salesforce-sink.v1
   with Kafka Connect's error headers (the message is `<statusCode>: <message>`);
   `RateLimited`/`BudgetSpent` (Backpressure) -> partitions paused for `retry_after`, the same
   commands handled again, nothing lost; `SalesforceUnavailable` (Retriable: 5xx, timeouts) ->
   retried with exponential backoff and jitter.

Checkpoint order (STYLE.md 5): write to Salesforce -> results acknowledged -> offsets committed.
A crash in between redelivers the commands and writes the same values again: updates by ID and
upserts by external ID are idempotent on the record (the record gains a LastModifiedDate and
one more change event, which the source's echo guard drops). Within one run a command is
written once: after backpressure or a retriable failure only the commands not yet written are
sent again, and an interrupted Bulk job is resumed, not repeated.

Limits: one Salesforce org and one command topic per process; coalescing happens within one
batch (commands for one record that straddle two windows make two writes); see writer.py and
commands.py for theirs.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.salesforce.auth import AuthenticationFailed
from connectors.salesforce.budget import ApiBudget
from connectors.salesforce.client import SalesforceConnection, connect
from connectors.salesforce.commands import (
    Outcome,
    SalesforceCommand,
    WriteApi,
    coalesce,
    parse_command,
    rejected_record,
    result_record,
)
from connectors.salesforce.config import SalesforceSettings, load_salesforce_settings
from connectors.salesforce.errors import SalesforceRecordError
from connectors.salesforce.metrics import BACKPRESSURE, BACKPRESSURE_SECONDS, COALESCED, DEAD_LETTERS
from connectors.salesforce.writer import SalesforceWriter, Written
from sagesf.config import ConfigError, Settings, load_settings
from sagesf.consumer import ConsumerLoop, Inbound, RetryPolicy, close_in_order
from sagesf.consumer import Outcome as LoopOutcome
from sagesf.dlq import DeadLetterWriter
from sagesf.errors import Backpressure, Permanent, Retriable
from sagesf.logs import configure_logging, register_settings_secrets
from sagesf.metrics import Health, MetricsServer
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroDecoder, AvroSerde

log = logging.getLogger(__name__)

__all__ = ["STAGE", "Built", "SalesforceSink", "build_sink_loop", "main"]

STAGE = "salesforce-sink"  # dead letters go to dlq.salesforce-sink.v1
DEPENDENCY = "salesforce"


class SalesforceSink:
    """The batch handler (see the module doc)."""

    def __init__(
        self,
        *,
        writer: SalesforceWriter,
        producer: ConfirmedProducer,
        results_topic: str,
        key_serde: AvroSerde,
        result_serde: AvroSerde,
        health: Health | None = None,
    ) -> None:
        self.writer = writer
        self.producer = producer
        self.results_topic = results_topic
        self.key_serde = key_serde
        self.result_serde = result_serde
        self.health = health

    def __call__(self, batch: Sequence[Inbound]) -> list[LoopOutcome]:
        outcomes: list[LoopOutcome] = [None] * len(batch)
        results: dict[int, dict[str, Any]] = {}
        commands: list[tuple[int, SalesforceCommand]] = []
        for i, rec in enumerate(batch):
            try:
                commands.append((i, parse_command(rec.value)))
            except Permanent as exc:
                log.warning("command at %s[%d]@%d rejected: %s", rec.topic, rec.partition, rec.offset, exc)
                outcomes[i] = exc
                results[i] = rejected_record(rec.value, exc)
                DEAD_LETTERS.labels(_label(rec.value), "INVALID_COMMAND").inc()
        by_position = dict(commands)
        writes = coalesce(commands)
        COALESCED.inc(len(commands) - len(writes))
        pause: Backpressure | None = None
        for write, written in zip(writes, self.writer.write(writes), strict=True):
            merged = len(write.members)
            for i in write.members:
                command = by_position[i]
                if isinstance(written, Written):
                    outcome = Outcome.CREATED if written.created else Outcome.UPDATED
                    results[i] = result_record(
                        command,
                        outcome=outcome,
                        api=written.api,
                        record_id=written.record_id,
                        created=written.created,
                        coalesced=merged,
                    )
                    continue
                outcomes[i] = written
                if isinstance(written, Permanent):
                    code = written.status_code if isinstance(written, SalesforceRecordError) else None
                    results[i] = result_record(
                        command, outcome=Outcome.REJECTED, api=_api(written), coalesced=merged, error=written
                    )
                    DEAD_LETTERS.labels(command.sobject, code or "UNKNOWN").inc()
                elif isinstance(written, Backpressure):
                    pause = written
            if not isinstance(written, Written | Permanent):
                self._report(written)
        if pause is not None:
            reason = str(getattr(pause, "reason", "rate_limit"))
            BACKPRESSURE.labels(reason).inc()
            BACKPRESSURE_SECONDS.labels(reason).inc(pause.retry_after)
        elif self.health is not None and not any(isinstance(o, Retriable) for o in outcomes):
            self.health.dependency(DEPENDENCY, True)
        for i in sorted(results):
            self.producer.send(self.results_topic, self.result_serde.encode(results[i]), self._key(batch[i]))
        # the results are in Kafka before the loop dead-letters and commits (raises Retriable if not)
        self.producer.confirm()
        return outcomes

    def _report(self, error: BaseException) -> None:
        if isinstance(error, Retriable) and self.health is not None:
            self.health.dependency(DEPENDENCY, False, str(error)[:200])

    def _key(self, rec: Inbound) -> bytes | None:
        return self.key_serde.encode(rec.key) if isinstance(rec.key, str) else None


def _api(error: BaseException) -> WriteApi:
    api = error.api if isinstance(error, SalesforceRecordError) else None
    return WriteApi(api) if api else WriteApi.NONE


def _label(value: Any) -> str:
    sobject = value.get("sobject") if isinstance(value, dict) else None
    return str(sobject)[:40] if sobject else "UNKNOWN"


# --- the process ---------------------------------------------------------------------------------


@dataclass
class Built:
    """The sink's consumer loop and what to close after it (in order)."""

    loop: ConsumerLoop
    connection: SalesforceConnection
    budget: ApiBudget
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        close_in_order([self.loop.close, *self.closers])


def build_sink_loop(
    core: Settings,
    settings: SalesforceSettings,
    *,
    health: Health | None = None,
    connection: SalesforceConnection | None = None,
    retry: RetryPolicy | None = None,
) -> Built:
    """Log in (unless given a connection) and assemble the sink's consumer loop."""
    conn = connection or connect(settings)
    budget = ApiBudget(settings.api_budget_share, settings.budget_recheck_seconds)
    conn.add_listener(budget.listener)
    writer = SalesforceWriter(
        conn,
        budget,
        bulk_threshold=settings.bulk_threshold,
        rate_limit_pause=settings.rate_limit_pause,
        poll_interval=settings.bulk_poll_interval,
        bulk_timeout=settings.bulk_timeout,
    )
    options = settings.sink
    registry = SchemaRegistryClient(core.registry.client_config())
    auto = core.registry.auto_register
    producer = ConfirmedProducer(core.kafka)
    handler = SalesforceSink(
        writer=writer,
        producer=producer,
        results_topic=options.results_topic,
        key_serde=AvroSerde.string_key(registry, options.results_topic, auto_register=auto),
        result_serde=AvroSerde.canonical(
            registry, "SalesforceResult", options.results_topic, auto_register=auto
        ),
        health=health,
    )
    loop = ConsumerLoop(
        kafka=core.kafka,
        group_id=options.group_id,
        topics=[options.commands_topic],
        stage=STAGE,
        handler=handler,
        dead_letters=DeadLetterWriter(producer, STAGE, options.dead_letter_topic),
        decode=AvroDecoder.for_topic(
            registry, options.commands_topic, "SalesforceCommand", auto_register=auto
        ),
        batch_size=settings.max_batch_records,
        batch_timeout=settings.batch_window,
        retry=retry,
        health=health,
        extra_config=options.consumer_config,
    )
    closers: list[Callable[[], None]] = [producer.close]
    if connection is None:
        closers.append(conn.close)
    return Built(loop, conn, budget, closers)


def main() -> None:
    configure_logging(component=STAGE)
    try:
        core: Settings = load_settings()
        settings = load_salesforce_settings()
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    for each in (core, settings):
        register_settings_secrets(each)
    try:
        connection = connect(settings)
    except AuthenticationFailed as exc:  # wrong credentials: restarting will not help
        raise SystemExit(str(exc)) from None
    health = Health()
    metrics = MetricsServer(health, core.metrics.host, core.metrics.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    built = build_sink_loop(core, settings, health=health, connection=connection)
    built.closers.append(connection.close)
    log.info(
        "Salesforce sink running: %s -> %s (%s, budget %.0f%% of the daily limit, metrics on port %d)",
        settings.sink.commands_topic,
        built.connection.instance_url,
        settings.auth_flow,
        settings.api_budget_share * 100,
        metrics.port,
    )
    try:
        built.loop.run(stop)
    finally:
        built.close()
        metrics.stop()


if __name__ == "__main__":
    main()
