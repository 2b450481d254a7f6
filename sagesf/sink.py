"""The sink role: a connector writes a batch of consumed records to its system and says, per record,
how it went and what to answer; `SinkLoop` consumes, publishes the answers, dead-letters, commits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sagesf.config import KafkaSettings
from sagesf.dead_letter_writer import STAGE_TASK_PUT, STAGE_VALUE_CONVERTER, FailedRecord
from sagesf.errors import Backpressure, Permanent, Retriable
from sagesf.metrics import (
    BACKPRESSURE_SECONDS,
    BATCH_SECONDS,
    CONSUMER_LAG,
    END_TO_END_LATENCY,
    RECORDS_DONE,
    RECORDS_IN,
    RETRIES,
    Health,
)
from sagesf.publisher import CanonicalPublisher, CanonicalRecord, DeadLetterItem
from sagesf.retry import RetriesExhausted, RetryPolicy

log = logging.getLogger(__name__)

__all__ = ["Decoder", "Inbound", "Outcome", "Sink", "SinkLoop", "kafka_timestamp"]

LAG_REFRESH_SECONDS = 30.0


@dataclass
class Inbound:
    """One consumed record: its origin, original bytes and decoded key/value."""

    topic: str
    partition: int
    offset: int
    key_bytes: bytes | None
    value_bytes: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int = 0
    key: Any = None
    value: Any = None

    def failed(self) -> FailedRecord:
        return FailedRecord(
            self.topic, self.partition, self.offset, self.key_bytes, self.value_bytes, self.headers
        )


@dataclass(frozen=True)
class Outcome:
    """How writing one record went, and what to answer.

    `error` None: written. A `Retriable` or `Backpressure`: write it again later (no answer is
    published for it now). Any other error (a `Permanent`): dead-lettered. `result`, if any, is
    published (before the offset is committed) whenever the record is done or dead-lettered.
    """

    error: BaseException | None = None
    result: CanonicalRecord | None = None

    @property
    def again(self) -> bool:
        return isinstance(self.error, Retriable | Backpressure)


class Sink(Protocol):
    """A sink connector: implement `write`.

    `write(batch)` gets decoded records (`Inbound.key`, `.value`) in partition order and returns
    one outcome per record, in order: an `Outcome`, or the shorthands `None` (written, no answer)
    and an exception (that error, no answer); or `None` for the whole batch (all written). It may
    raise instead: `Retriable`/`Backpressure` for the whole batch; anything else makes the loop
    write the records one by one, so a poison record is isolated. Writes must be idempotent: a
    crash before the commit redelivers them. `name` is the stage: dead letters go to `dlq.<name>.v1`.
    """

    name: str

    def write(self, batch: Sequence[Inbound]) -> Sequence[Outcome | BaseException | None] | None: ...


Decoder = Callable[[Inbound], None]  # fills in .key / .value, raises on bad bytes
EventTime = Callable[[Inbound], float | None]  # epoch seconds of a record's event, None: unknown


class SinkLoop:
    """Consumes a sink's input topics and drives its `write` (see `run_once` for the order).

    What an outcome decides (sagesf.errors): done -> counted; `Permanent` (or any other error)
    -> dead letter, the others go on; `Retriable` -> written again after an exponential backoff
    with jitter, nothing committed meanwhile (with `max_retry_seconds`, giving up raises
    `RetriesExhausted` out of `run()`: the process stops uncommitted and a restart redelivers);
    `Backpressure(retry_after)` -> partitions paused that long, then written again, never counted
    against the retry budget. While waiting the loop keeps polling (paused) so the group keeps it.
    Records that cannot be decoded are dead letters with Connect stage VALUE_CONVERTER.

    Health and lag (sagesf.metrics): records in hand are reported pending, so a `write` that never
    returns turns /healthz unhealthy after `Health.stall_after`; after each batch the consumer lag
    of the assignment (`sagesf_consumer_lag{stage,group,topic,partition}`, from the client's cached
    watermarks) is pending: lag that stays while nothing is consumed is a stall too. Pauses and
    backoffs report `blocked` (degraded, waiting on purpose). Each committed record's age (now minus
    its Kafka timestamp, or `event_time`) goes to `sagesf_end_to_end_latency_seconds{stage}`.
    """

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        sink: Sink,
        publisher: CanonicalPublisher,
        decode: Decoder | None = None,
        batch_size: int = 500,
        batch_timeout: float = 0.5,
        retry: RetryPolicy | None = None,
        health: Health | None = None,
        extra_config: dict[str, Any] | None = None,
        event_time: EventTime | None = None,
    ) -> None:
        conf: dict[str, Any] = {
            **kafka.client_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
        }
        conf.update(extra_config or {})
        self.consumer = Consumer(conf)
        self._starts_latest = conf["auto.offset.reset"] in ("latest", "largest", "end")
        self.consumer.subscribe(list(topics))
        self.sink = sink
        self.stage = sink.name
        self.group_id = group_id
        self.publisher = publisher
        self.decode = decode
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.retry = retry or RetryPolicy()
        self.health = health
        self.event_time = event_time or kafka_timestamp
        self.where = f"{type(sink).__module__}.{type(sink).__qualname__}"
        self._committed: dict[tuple[str, int], int] = {}  # committed offset per partition, -1: none
        self._committed_asked = 0.0
        self._assigned: set[tuple[str, int]] = set()
        self._lag_labels: set[tuple[str, str]] = set()

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, max_idle_polls: int | None = None) -> None:
        """Handle batches until `stop` is set (or `max_idle_polls` empty polls in a row)."""
        idle = 0
        while not (stop is not None and stop.is_set()):
            handled = self.run_once()
            idle = 0 if handled else idle + 1
            if max_idle_polls is not None and idle >= max_idle_polls:
                return

    def run_once(self) -> int:
        """Consume one batch, write it completely, commit. Returns how many records it held.

        The order, which is what makes a crash anywhere lose nothing and write nothing twice
        (the sink's writes being idempotent):
        1. consume up to `batch_size` records (or what arrives within `batch_timeout`);
        2. decode them; those that cannot be decoded are dead-lettered (acknowledged by Kafka);
        3. write them with the sink; per outcome, publish its answer (`Outcome.result`) and
           dead-letter the failures, and wait until Kafka acknowledged both;
        4. write the retriable ones again (backoff, or a pause for backpressure) until none is
           left, repeating 3 each time;
        5. commit the batch's offsets, synchronously.
        """
        # 1.
        messages = self.consumer.consume(self.batch_size, self.batch_timeout)
        batch = [self._inbound(m) for m in messages if self._usable(m)]
        if not batch:
            lag = self.observe_lag()
            if self.health is not None:
                if lag > 0:  # records wait but none came: the stall clock keeps running
                    self.health.waiting(self.stage, lag)
                else:
                    self.health.progress(self.stage, 0)
            return 0
        started = time.monotonic()
        if self.health is not None:
            self.health.waiting(self.stage, len(batch))
        for rec in batch:
            RECORDS_IN.labels(self.stage, rec.topic).inc()
        # 2.
        decoded = self._decode(batch)
        # 3. and 4.
        self._write(decoded)
        # 5.
        self._commit(batch)
        BATCH_SECONDS.labels(self.stage).observe(time.monotonic() - started)
        self._observe_latency(batch)
        lag = self.observe_lag()
        if self.health is not None:
            self.health.progress(self.stage, lag)
        return len(batch)

    def close(self) -> None:
        for topic, partition in list(self._lag_labels):
            CONSUMER_LAG.remove(self.stage, self.group_id, topic, partition)
        self._lag_labels.clear()
        self.consumer.close()

    # --- lag and latency ------------------------------------------------------------------

    def observe_lag(self) -> int:
        """Set `sagesf_consumer_lag` for the current assignment; return the total (0 if unknown)."""
        try:
            assignment = self.consumer.assignment()
        except (KafkaException, RuntimeError):  # closed, or not in the group yet
            return 0
        assigned = {(tp.topic, tp.partition) for tp in assignment}
        for key in assigned - self._assigned:  # another member may have committed meanwhile
            self._committed.pop(key, None)
            self._committed_asked = 0.0
        self._assigned = assigned
        positions = {(tp.topic, tp.partition): tp.offset for tp in self._positions(assignment)}
        lags: dict[tuple[str, str], int] = {}
        unknown: list[TopicPartition] = []
        for tp in assignment:
            key = (tp.topic, tp.partition)
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is None or high < 0:
                continue  # no fetch response yet: unknown
            position = positions.get(key, -1)
            if position < 0:  # nothing consumed since the assignment: it starts at the committed offset
                if key not in self._committed:
                    unknown.append(tp)
                    continue
                committed = self._committed[key]
                # never committed: it starts where auto.offset.reset says
                start = high if self._starts_latest else max(low, 0)
                position = committed if committed >= 0 else start
            lags[(tp.topic, str(tp.partition))] = max(0, high - position)
        if unknown:
            self._ask_committed(unknown)
        for labels, lag in lags.items():
            CONSUMER_LAG.labels(self.stage, self.group_id, *labels).set(lag)
        for gone in self._lag_labels - set(lags):
            CONSUMER_LAG.remove(self.stage, self.group_id, *gone)
        self._lag_labels = set(lags)
        return sum(lags.values())

    def _positions(self, assignment: list[TopicPartition]) -> list[TopicPartition]:
        if not assignment:
            return []
        try:
            return list(self.consumer.position(assignment))
        except KafkaException:
            return []

    def _ask_committed(self, partitions: list[TopicPartition]) -> None:
        """Committed offsets of partitions not consumed from yet (a broker round trip: rarely)."""
        now = time.monotonic()
        if now - self._committed_asked < LAG_REFRESH_SECONDS:
            return
        self._committed_asked = now
        try:
            found = self.consumer.committed(partitions, timeout=2.0)
        except KafkaException as exc:
            log.debug("%s: committed offsets unavailable for the lag: %s", self.stage, exc)
            return
        for tp in found:
            self._committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else -1

    def _observe_latency(self, batch: list[Inbound]) -> None:
        now = time.time()
        histogram = END_TO_END_LATENCY.labels(self.stage)
        for rec in batch:
            try:
                when = self.event_time(rec)
            except Exception:  # noqa: BLE001 - a metric must never fail a committed batch
                when = None
            if when is not None and when > 0:
                histogram.observe(max(0.0, now - when))

    # --- steps ----------------------------------------------------------------------------

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() == KafkaError._PARTITION_EOF:
            return False
        if err.fatal():
            raise KafkaException(err)
        log.warning("consumer error on %s: %s", self.stage, err.str())
        return False

    @staticmethod
    def _inbound(msg: Message) -> Inbound:
        raw = msg.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in pairs]
        return Inbound(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key_bytes=msg.key(),
            value_bytes=msg.value(),
            headers=headers,
            timestamp_ms=msg.timestamp()[1],
        )

    def _decode(self, batch: list[Inbound]) -> list[Inbound]:
        if self.decode is None:
            return batch
        good: list[Inbound] = []
        bad: list[DeadLetterItem] = []
        for rec in batch:
            try:
                self.decode(rec)
            except Exception as exc:  # noqa: BLE001 - every undecodable record is dead-lettered
                bad.append((rec.failed(), exc, STAGE_VALUE_CONVERTER, _name(self.decode)))
            else:
                good.append(rec)
        if bad:
            self.publisher.dead_letter(bad)
        return good

    def _write(self, batch: list[Inbound]) -> None:
        pending = batch
        attempt = 0
        first_failure: float | None = None
        while pending:
            outcomes = self._call(pending)
            try:
                self._answer(pending, outcomes)
            except Retriable as exc:  # Kafka did not take the answers: write the records again
                outcomes = [Outcome(exc)] * len(pending)
            retry = [rec for rec, outcome in zip(pending, outcomes, strict=True) if outcome.again]
            if not retry:
                break
            errors = [o.error for o in outcomes if o.again]
            if all(isinstance(e, Backpressure) for e in errors):
                pause = max(e.retry_after for e in errors if isinstance(e, Backpressure))
                log.warning("%s: backpressure, pausing %.1f s", self.stage, pause)
                if self.health is not None:
                    self.health.blocked(self.stage, len(retry), pause, f"backpressure: paused {pause:.0f} s")
                self._wait(pause)
                BACKPRESSURE_SECONDS.labels(self.stage).inc(pause)
            else:
                now = time.monotonic()
                first_failure = first_failure or now
                limit = self.retry.max_retry_seconds
                if limit is not None and now - first_failure > limit:
                    raise RetriesExhausted(f"{self.stage}: still failing after {limit:.0f} s")
                delay = self.retry.delay(attempt)
                attempt += 1
                RETRIES.labels(self.stage).inc()
                log.warning("%s: retriable failure, retry %d in %.2f s", self.stage, attempt, delay)
                if self.health is not None:
                    reason = next((str(e) for e in errors if isinstance(e, Retriable)), "retriable failure")
                    self.health.blocked(self.stage, len(retry), delay, f"retry {attempt}: {reason}")
                self._wait(delay)
            pending = retry

    def _answer(self, pending: list[Inbound], outcomes: list[Outcome]) -> None:
        """Publish the answers of the records that are done or failed for good, dead-letter the
        failures, and wait until Kafka has all of it (Retriable otherwise)."""
        dead: list[DeadLetterItem] = []
        answered = False
        for rec, outcome in zip(pending, outcomes, strict=True):
            if outcome.again:
                continue
            error = outcome.error
            if outcome.result is not None:
                try:
                    self.publisher.send(outcome.result)
                    answered = True
                except Permanent as exc:  # an answer that does not fit its schema: a bug, said loudly
                    log.error(
                        "%s: the answer to %s does not fit its schema: %s", self.stage, rec.failed(), exc
                    )
                    error = error or exc
            if error is None:
                RECORDS_DONE.labels(self.stage).inc()
            else:
                dead.append((rec.failed(), error, STAGE_TASK_PUT, self.where))
        if dead:
            self.publisher.dead_letter(dead)  # waits for the answers sent before it too
        elif answered:
            self.publisher.confirm()

    def _call(self, pending: list[Inbound]) -> list[Outcome]:
        """Run the sink; turn what it returns or raises into one Outcome per record."""
        try:
            returned = self.sink.write(pending)
        except (Retriable, Backpressure) as exc:
            return [Outcome(exc)] * len(pending)
        except Exception as exc:  # noqa: BLE001 - isolate the poison record, see the class doc
            if len(pending) == 1:
                return [Outcome(exc)]
            log.warning("%s: batch failed (%s); writing its records one by one", self.stage, exc)
            return [self._call([rec])[0] for rec in pending]
        if returned is None:
            return [Outcome()] * len(pending)
        outcomes = list(returned)
        if len(outcomes) != len(pending):
            raise RuntimeError(f"{self.where} returned {len(outcomes)} outcomes for {len(pending)} records")
        return [_outcome(o) for o in outcomes]

    def _wait(self, seconds: float) -> None:
        """Sleep while staying in the group: pause the partitions and keep polling."""
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        deadline = time.monotonic() + seconds
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                msg = self.consumer.poll(min(left, 0.5))
                if msg is not None and msg.error() is None:  # pragma: no cover - paused, should not happen
                    log.error("%s: message received while paused; it will be redelivered", self.stage)
        finally:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.resume(assignment)

    def _commit(self, batch: list[Inbound]) -> None:
        last: dict[tuple[str, int], int] = {}
        for rec in batch:
            key = (rec.topic, rec.partition)
            last[key] = max(last.get(key, -1), rec.offset)
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self._committed.update({(t, p): o + 1 for (t, p), o in last.items()})
        except KafkaException as exc:
            # a rebalance took the partitions: the new owner redelivers; effects are idempotent
            log.warning("%s: commit failed (%s); the records will be redelivered", self.stage, exc)


def _outcome(returned: Outcome | BaseException | None) -> Outcome:
    if isinstance(returned, Outcome):
        return returned
    if returned is None or isinstance(returned, BaseException):
        return Outcome(returned)
    return Outcome(Permanent(str(returned)))


def kafka_timestamp(rec: Inbound) -> float | None:
    """A record's Kafka timestamp (its producer's create time) in epoch seconds."""
    return rec.timestamp_ms / 1000.0 if rec.timestamp_ms > 0 else None


def _name(obj: object) -> str:
    return getattr(obj, "__qualname__", type(obj).__qualname__)
