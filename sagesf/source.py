"""The source role: a connector reads its system and yields canonical records with the position they
reach; `SourceLoop` publishes them and stores the positions, in that order, for every source."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sagesf.dead_letter_writer import STAGE_TASK_POLL, FailedRecord
from sagesf.errors import Backpressure, Permanent, Retriable, SagesfError
from sagesf.metrics import Health
from sagesf.publisher import CanonicalRecord, DeadLetterItem
from sagesf.retry import RetryPolicy

__all__ = [
    "WRITTEN_BY_HEADER",
    "WRITTEN_BY_INTEGRATION",
    "NotReplayable",
    "PositionWriter",
    "Publisher",
    "Rejected",
    "Replayer",
    "Source",
    "SourceBatch",
    "SourceLoop",
]

log = logging.getLogger(__name__)

# A record a source publishes although the integration itself made the change it shows (the
# system cannot say whether someone else changed the row too) carries this header; consumers that
# write back to that system compare fields before they do (processors/customers.py).
WRITTEN_BY_HEADER = "sagesf.written-by"
WRITTEN_BY_INTEGRATION = b"integration"


@dataclass(frozen=True)
class Rejected:
    """Something a source read but cannot publish: it goes to the source's dead-letter topic.

    `failed` names where it came from (a Sage table, a Salesforce channel: `topic`; its key; the
    original as JSON bytes: `value`), `error` says why (a `Permanent`), `where` which class failed.
    """

    failed: FailedRecord
    error: BaseException
    where: str


@dataclass
class SourceBatch:
    """What a source hands the loop in one step.

    `positions` (stream -> JSON-able position) is where the source stands once Kafka has every
    record yielded so far: the batch is a checkpoint. `None` means "more of the same checkpoint
    follows": the loop sends the records now, so Kafka works while the source reads on, and
    confirms them with a later checkpoint. `{}` is a checkpoint with nothing to store.
    `committed` is called once the checkpoint is stored: only then may the source advance the
    state it reads from.
    """

    records: list[CanonicalRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    positions: dict[str, Any] | None = None
    committed: Callable[[], None] | None = None


class Source(Protocol):
    """A source connector: implement `read`.

    `read()` yields what is new since the last committed checkpoint, as `SourceBatch`es, and
    returns when nothing more is ready (when nothing is ready at all it may wait up to about a
    second first; the loop checks its stop signal between calls). A record the source cannot map
    is yielded as `Rejected`, never raised. Raise `Retriable` when the system or a read fails for
    now (the loop backs off and calls `read` again; honour the stored state, which has not moved),
    `Backpressure` when the system asks to slow down. `name` is the stage: dead letters go to
    `dlq.<name>.v1`.
    """

    name: str

    def read(self) -> Iterable[SourceBatch]: ...


class Publisher(Protocol):
    """What the loop needs of sagesf.publisher.CanonicalPublisher (tests capture instead)."""

    def send(self, record: CanonicalRecord) -> None: ...

    def dead_letter(self, items: Sequence[DeadLetterItem]) -> None: ...

    def confirm(self) -> Any: ...


class PositionWriter(Protocol):
    """What the loop needs of sagesf.positions.PositionStore."""

    def put_many(self, positions: dict[str, Any]) -> None: ...


class NotReplayable(SagesfError):
    """A source's dead letter that re-reading cannot publish: what it names is gone, or it is not
    something the source can read again. The message says why; the replay skips it."""


@dataclass
class Replayer:
    """How `sagesf dlq replay <source>` replays a source's dead letters (sagesf.runner
    `Component.replay` builds it), after the cause is fixed.

    `reread(failed)` reads again what the dead letter names (a Sage row by table and key, a
    Salesforce event) and maps it as the source would now: the records to publish. It raises
    `NotReplayable` when there is nothing to publish any more, a `Permanent` when it still cannot
    be mapped, `Retriable` when the system cannot be read now. `publisher` publishes the records
    (the source's topics and serdes). A replay stores no position: the source reads on from
    where it stands.
    """

    reread: Callable[[FailedRecord], list[CanonicalRecord]]
    publisher: Publisher


class SourceLoop:
    """Drives one `Source`: publish, confirm, store the position (see `commit`)."""

    def __init__(
        self,
        source: Source,
        publisher: Publisher,
        positions: PositionWriter,
        *,
        health: Health | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.source = source
        self.publisher = publisher
        self.positions = positions
        self.health = health or Health()
        self.retry = retry or RetryPolicy(initial=0.5, maximum=30.0)
        self.stage = source.name

    def run(self, stop: threading.Event) -> None:
        """Read and publish until `stop` is set; back off on Retriable (its `retry_after` when it
        has one, else exponentially with jitter), wait out Backpressure."""
        failures = 0
        while not stop.is_set():
            try:
                self.run_once(stop)
            except Backpressure as exc:
                wait, reason = exc.retry_after, f"backpressure: {exc}"
                log.warning("%s: %s; pausing %.1f s", self.stage, exc, wait)
            except Retriable as exc:
                failures += 1
                # a failure that knows when to try again (a circuit breaker's wait) governs alone
                wait = exc.retry_after or self.retry.delay(failures - 1)
                reason = f"retry {failures}: {exc}"
                # an outage logs once, then quietly: the health endpoint says it meanwhile
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "%s: %s; retrying in %.1f s", self.stage, exc, wait)
            else:
                failures = 0
                self.health.progress(self.stage)
                continue
            self.health.blocked(self.stage, 1, wait, reason)
            stop.wait(wait)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """One `read()` pass, every batch committed; returns how many records it published."""
        published = 0
        for batch in self.source.read():
            published += self.commit(batch)
            if stop is not None and stop.is_set():
                break
        return published

    def commit(self, batch: SourceBatch) -> int:
        """Publish one batch and, when it is a checkpoint, store its positions.

        The order, which is what makes a crash anywhere lose nothing:
        1. encode and send every record; one that does not fit its schema joins the rejected;
        2. send the rejected to the dead-letter topic (acknowledged by Kafka);
        3. not a checkpoint (`positions` None): stop here, a later checkpoint confirms;
        4. wait until Kafka acknowledged every record sent since the last checkpoint
           (`ProduceFailed`, a Retriable, otherwise: nothing is stored, the source reads again);
        5. store the positions in positions.v1 (acknowledged too);
        6. tell the source (`committed`): from now on it reads from the new state.
        Returns how many records were sent.
        """
        # 1.
        rejected = [_item(r) for r in batch.rejected]
        sent = 0
        for record in batch.records:
            try:
                self.publisher.send(record)
            except Permanent as exc:
                rejected.append(_item(_unencodable(record, exc)))
            else:
                sent += 1
        # 2.
        if rejected:
            for failed, error, _, _ in rejected:
                log.warning("%s: dead letter from %s: %s", self.stage, failed.topic, error)
            self.publisher.dead_letter(rejected)
        # 3.
        if batch.positions is None:
            return sent
        # 4.
        self.publisher.confirm()
        # 5.
        if batch.positions:
            self.positions.put_many(batch.positions)
        # 6.
        if batch.committed is not None:
            batch.committed()
        return sent


def _item(rejected: Rejected) -> DeadLetterItem:
    return (rejected.failed, rejected.error, STAGE_TASK_POLL, rejected.where)


def _unencodable(record: CanonicalRecord, error: BaseException) -> Rejected:
    """A record the source mapped but that does not fit its schema (a mapping bug): the record as
    JSON. Its origin is no Kafka topic, so `sagesf dlq replay` skips it: fix, then re-read."""
    value = json.dumps(record.value, default=str, separators=(",", ":")).encode()
    key = None if record.key is None else record.key.encode()
    failed = FailedRecord(f"unpublished:{record.topic}", -1, -1, key, value)
    return Rejected(failed, error, "sagesf.publisher.CanonicalPublisher")
