"""The consumer loop every sink and processor stage runs: batch in, outcomes out, then commit.

Order per batch (written down in STYLE.md and tested): decode -> handle -> dead-letter the
permanent failures (acknowledged by Kafka) -> commit the offsets, synchronously. Auto-commit is
off, so a crash anywhere before the commit redelivers the batch (at-least-once; every sink is
idempotent on its own key, so a redelivery has no second effect).

What a handler returns or raises decides what happens (sagesf.errors):
- per-record `None`: done. Per-record `Permanent` (or any other exception): that record goes to
  the dead-letter topic; the others go on.
- `Retriable` (raised for the batch, or returned for some records): those records are handled
  again after an exponential backoff with jitter; offsets are not committed meanwhile. With
  `max_retry_seconds` set, giving up raises `RetriesExhausted` out of `run()`: the process stops
  without committing and a restart redelivers. Nothing is dropped.
- `Backpressure(retry_after)`: the partitions are paused for `retry_after` seconds, then the same
  records are handled again; this never counts against the retry budget.
- an unexpected exception raised for a whole batch of several records: the batch is handled
  again one record at a time, so a poison record is isolated and dead-lettered alone.
While waiting the loop keeps polling (paused), so the group does not evict the consumer.
Records that cannot be decoded go to the dead-letter topic with stage VALUE_CONVERTER.

Health and lag (sagesf.metrics): with records in hand the stage reports them pending, so a
handler that never returns turns /healthz "unhealthy" after `Health.stall_after`; after each
batch (and each empty poll) it reports the consumer lag of its assignment as pending, exported
as `sagesf_consumer_lag{stage,group,topic,partition}`: lag that stays while nothing is consumed is a
stalled consumer too. Backpressure pauses and retry backoffs are reported as `blocked`
("degraded": the process is alive and waits on purpose). Each committed record's age (now minus
its event time: the Kafka timestamp, or what `event_time` returns) is observed in
`sagesf_end_to_end_latency_seconds{stage}`. The lag is high watermark minus position, from the
client's cached watermarks (no broker round trip); a partition with no consumed record yet uses
its committed offset, asked at most every `LAG_REFRESH_SECONDS`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sagesf.config import KafkaSettings
from sagesf.dlq import STAGE_TASK_PUT, STAGE_VALUE_CONVERTER, DeadLetterWriter, FailedRecord
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

log = logging.getLogger(__name__)


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


Outcome = BaseException | None
BatchHandler = Callable[[Sequence[Inbound]], Sequence[Outcome] | None]
Decoder = Callable[[Inbound], None]  # fills in .key / .value, raises on bad bytes
EventTime = Callable[[Inbound], float | None]  # epoch seconds of a record's event, None: unknown
LAG_REFRESH_SECONDS = 30.0


class RetriesExhausted(RuntimeError):
    """A retriable failure outlasted `max_retry_seconds`; the batch stays uncommitted."""


@dataclass
class RetryPolicy:
    initial: float = 0.2
    maximum: float = 30.0
    max_retry_seconds: float | None = None  # None: keep retrying (the health endpoint says degraded)

    def delay(self, attempt: int) -> float:
        base: float = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


class ConsumerLoop:
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        group_id: str,
        topics: Sequence[str],
        stage: str,
        handler: BatchHandler,
        dead_letters: DeadLetterWriter,
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
        self.stage = stage
        self.group_id = group_id
        self.handler = handler
        self.decode = decode
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.retry = retry or RetryPolicy()
        self.health = health
        self.event_time = event_time or kafka_timestamp
        self.where = getattr(handler, "__qualname__", type(handler).__qualname__)
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
        """Consume one batch, handle it completely, commit. Returns how many records it held."""
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
        decoded = self._decode(batch)
        self._handle(decoded)
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
        bad: list[tuple[FailedRecord, BaseException, str, str]] = []
        for rec in batch:
            try:
                self.decode(rec)
            except Exception as exc:  # noqa: BLE001 - every undecodable record is dead-lettered
                bad.append((rec.failed(), exc, STAGE_VALUE_CONVERTER, _name(self.decode)))
            else:
                good.append(rec)
        self.dead_letters.send(bad)
        return good

    def _handle(self, batch: list[Inbound]) -> None:
        pending = batch
        attempt = 0
        first_failure: float | None = None
        while pending:
            outcomes = self._call(pending)
            retry: list[Inbound] = []
            dead: list[tuple[FailedRecord, BaseException, str, str]] = []
            pause = 0.0
            for rec, outcome in zip(pending, outcomes, strict=True):
                if outcome is None:
                    RECORDS_DONE.labels(self.stage).inc()
                elif isinstance(outcome, Backpressure):
                    retry.append(rec)
                    pause = max(pause, outcome.retry_after)
                elif isinstance(outcome, Retriable):
                    retry.append(rec)
                else:
                    dead.append((rec.failed(), outcome, STAGE_TASK_PUT, self.where))
            self.dead_letters.send(dead)
            if not retry:
                break
            backpressure = all(
                isinstance(o, Backpressure)
                for o in outcomes
                if o is not None and isinstance(o, Retriable | Backpressure)
            )
            if backpressure:
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
                    reason = next((str(o) for o in outcomes if isinstance(o, Retriable)), "retriable failure")
                    self.health.blocked(self.stage, len(retry), delay, f"retry {attempt}: {reason}"[:200])
                self._wait(delay)
            pending = retry

    def _call(self, pending: list[Inbound]) -> list[Outcome]:
        """Run the handler; turn a raised exception into per-record outcomes."""
        try:
            outcomes = self.handler(pending)
        except (Retriable, Backpressure) as exc:
            return [exc] * len(pending)
        except Exception as exc:  # noqa: BLE001 - isolate the poison record, see the module doc
            if len(pending) == 1:
                return [exc]
            log.warning("%s: batch failed (%s); handling its records one by one", self.stage, exc)
            return [self._call([rec])[0] for rec in pending]
        if outcomes is None:
            return [None] * len(pending)
        outcomes = list(outcomes)
        if len(outcomes) != len(pending):
            raise RuntimeError(f"{self.where} returned {len(outcomes)} outcomes for {len(pending)} records")
        return [o if o is None or isinstance(o, BaseException) else Permanent(str(o)) for o in outcomes]

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


def kafka_timestamp(rec: Inbound) -> float | None:
    """A record's Kafka timestamp (its producer's create time) in epoch seconds."""
    return rec.timestamp_ms / 1000.0 if rec.timestamp_ms > 0 else None


def _name(obj: object) -> str:
    return getattr(obj, "__qualname__", type(obj).__qualname__)


class GroupLag:
    """Consumer lag of a group that does not run through ConsumerLoop (faust's processors).

    Reads the group's committed offsets and the partitions' high watermarks with a consumer that
    never joins the group, sets `sagesf_consumer_lag` per partition, and tells `health` how much
    work is pending per stage (`Health.waiting`): a stage whose handler stops making progress
    with records waiting turns /healthz unhealthy after `stall_after`, so a liveness probe
    restarts a stalled worker. A partition without a committed offset counts from its low
    watermark. Cost: one metadata, one committed-offsets and one watermark request per partition
    per call; call it every few seconds, not per record.
    """

    def __init__(
        self, kafka: KafkaSettings, group_id: str, stages: dict[str, str], health: Health | None = None
    ) -> None:
        self.group_id = group_id
        self.stages = stages  # topic -> stage
        self.health = health
        self._consumer = Consumer(
            {**kafka.client_config(), "group.id": group_id, "enable.auto.commit": False}
        )

    def measure(self, timeout: float = 10.0) -> dict[str, int]:
        """Pending records per stage, now."""
        metadata = self._consumer.list_topics(timeout=timeout).topics
        partitions = [
            TopicPartition(topic, p)
            for topic in self.stages
            if topic in metadata and metadata[topic].error is None
            for p in metadata[topic].partitions
        ]
        pending: dict[str, int] = dict.fromkeys(self.stages.values(), 0)
        if not partitions:
            return pending
        for tp in self._consumer.committed(partitions, timeout=timeout):
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=timeout
            )
            position = tp.offset if tp.offset >= 0 else low
            lag = max(0, high - position)
            stage = self.stages[tp.topic]
            CONSUMER_LAG.labels(stage, self.group_id, tp.topic, str(tp.partition)).set(lag)
            pending[stage] += lag
        if self.health is not None:
            for stage, count in pending.items():
                self.health.waiting(stage, count)
        return pending

    def close(self) -> None:
        self._consumer.close()


def close_in_order(closers: Sequence[Callable[[], None]]) -> None:
    """Call each closer in order; one that fails is logged and the rest still run."""
    for close in closers:
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - closing the rest matters more
            log.warning("closing failed: %s", exc)
