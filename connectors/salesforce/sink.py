"""The Salesforce sink: applies SalesforceCommands (salesforce.commands.v1), answers on salesforce.results.v1.

Run it with `sagesf run salesforce-sink` (settings: `SAGESF_SALESFORCE__*` in
connectors/salesforce/config.py; Kafka, registry and metrics from sagesf.config).

What it owns: `SalesforceSink`, a sagesf.sink `Sink` that the core SinkLoop drives
(connectors/salesforce/components.py assembles it). Per consumed batch:
1. Each command is read (commands.py); a malformed one is rejected without calling Salesforce.
   An old or replayed command of a guarded object (Account) is compared with its record
   (stale_guard.py, one query per 200 records) and answered STALE, unwritten, when the record
   holds a newer change; live commands are not compared and cost nothing more.
2. Commands for the same record are coalesced into one write, latest field values winning. The
   batch is what the loop gathered in `batch_window` seconds (up to `max_batch_records`), so a
   burst of stock updates for one item inside the window costs one record in one request.
3. The writes go to Salesforce (writer.py): sObject Collections, 200 records a request, or a
   Bulk API 2.0 job for an object with more than `bulk_threshold` records in the batch. Every
   call carries `Sforce-Call-Options: client=<call_options_client>` (client.py), so the CDC
   source can drop the change events our own writes cause.
4. Every command that got a final answer gets one SalesforceResult (CREATED / UPDATED / STALE /
   REJECTED with Salesforce's statusCode and message), returned with its outcome; the loop
   publishes it, acknowledged by Kafka, before it commits the offsets.
5. `write` returns one outcome per command to the loop, which decides (sagesf.sink):
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
from collections.abc import Sequence
from typing import Any

from connectors.salesforce.commands import Outcome as WriteOutcome
from connectors.salesforce.commands import (
    SalesforceCommand,
    WriteApi,
    coalesce,
    parse_command,
    rejected_record,
    result_record,
)
from connectors.salesforce.errors import SalesforceRecordError
from connectors.salesforce.metrics import BACKPRESSURE, BACKPRESSURE_SECONDS, COALESCED, DEAD_LETTERS
from connectors.salesforce.stale_guard import StaleGuard
from connectors.salesforce.writer import SalesforceWriter, Written
from sagesf.dead_letter_replay import REPLAYED_FROM_HEADER
from sagesf.errors import Backpressure, Permanent, Retriable
from sagesf.metrics import Health
from sagesf.publisher import CanonicalRecord
from sagesf.sink import Inbound, Outcome

log = logging.getLogger(__name__)

__all__ = ["STAGE", "SalesforceSink"]

STAGE = "salesforce-sink"  # dead letters go to dlq.salesforce-sink.v1
DEPENDENCY = "salesforce"


class SalesforceSink:
    """Writes a batch of commands to Salesforce (see the module doc)."""

    name = STAGE

    def __init__(
        self,
        *,
        writer: SalesforceWriter,
        results_topic: str,
        health: Health | None = None,
        guard: StaleGuard | None = None,
    ) -> None:
        self.writer = writer
        self.results_topic = results_topic
        self.health = health
        self.guard = guard

    def write(self, batch: Sequence[Inbound]) -> list[Outcome]:
        errors: list[BaseException | None] = [None] * len(batch)
        results: dict[int, dict[str, Any]] = {}
        commands: list[tuple[int, SalesforceCommand]] = []
        for i, rec in enumerate(batch):
            try:
                commands.append((i, parse_command(rec.value)))
            except Permanent as exc:
                log.warning("command at %s[%d]@%d rejected: %s", rec.topic, rec.partition, rec.offset, exc)
                errors[i] = exc
                results[i] = rejected_record(rec.value, exc)
                DEAD_LETTERS.labels(_label(rec.value), "INVALID_COMMAND").inc()
        by_position = dict(commands)
        pause: Backpressure | None = None
        try:
            commands = self._fresh(batch, commands, results)
        except (Retriable, Backpressure) as stop:  # the check could not be made: all again later
            for i, _ in commands:
                errors[i] = stop
            pause = stop if isinstance(stop, Backpressure) else None
            self._report(stop)
            commands = []
        writes = coalesce(commands)
        COALESCED.inc(len(commands) - len(writes))
        if self.guard is not None:
            self.guard.stamp(writes)
        for write, written in zip(writes, self.writer.write(writes), strict=True):
            merged = len(write.members)
            for i in write.members:
                command = by_position[i]
                if isinstance(written, Written):
                    outcome = WriteOutcome.CREATED if written.created else WriteOutcome.UPDATED
                    results[i] = result_record(
                        command,
                        outcome=outcome,
                        api=written.api,
                        record_id=written.record_id,
                        created=written.created,
                        coalesced=merged,
                    )
                    continue
                errors[i] = written
                if isinstance(written, Permanent):
                    code = written.status_code if isinstance(written, SalesforceRecordError) else None
                    results[i] = result_record(
                        command,
                        outcome=WriteOutcome.REJECTED,
                        api=_api(written),
                        coalesced=merged,
                        error=written,
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
        elif self.health is not None and not any(isinstance(e, Retriable) for e in errors):
            self.health.dependency(DEPENDENCY, True)
        return [
            Outcome(error, self._result(batch[i], results[i]) if i in results else None)
            for i, error in enumerate(errors)
        ]

    def _fresh(
        self,
        batch: Sequence[Inbound],
        commands: list[tuple[int, SalesforceCommand]],
        results: dict[int, dict[str, Any]],
    ) -> list[tuple[int, SalesforceCommand]]:
        """The commands to write: those the guard finds older than their record are answered
        STALE (in `results`) and left out."""
        if self.guard is None:
            return commands
        replayed = {i for i, _ in commands if any(k == REPLAYED_FROM_HEADER for k, _ in batch[i].headers)}
        stale = self.guard.stale(commands, replayed)
        for i, command in commands:
            if i in stale:
                log.info("command %s not written: %s", command.command_id, stale[i].reason)
                results[i] = result_record(
                    command, outcome=WriteOutcome.STALE, api=WriteApi.NONE, stale=stale[i]
                )
        return [(i, c) for i, c in commands if i not in stale]

    def _result(self, rec: Inbound, value: dict[str, Any]) -> CanonicalRecord:
        key = rec.key if isinstance(rec.key, str) else None
        return CanonicalRecord(self.results_topic, "SalesforceResult", key, value)

    def _report(self, error: BaseException) -> None:
        if isinstance(error, Retriable) and self.health is not None:
            self.health.dependency(DEPENDENCY, False, str(error))


def _api(error: BaseException) -> WriteApi:
    api = error.api if isinstance(error, SalesforceRecordError) else None
    return WriteApi(api) if api else WriteApi.NONE


def _label(value: Any) -> str:
    sobject = value.get("sobject") if isinstance(value, dict) else None
    return str(sobject)[:40] if sobject else "UNKNOWN"
