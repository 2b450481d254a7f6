"""Bounded reads of Kafka topics for the operator commands: a range of offsets, then stop.

What it owns: reading "partition P of topic T from offset A up to offset B" (or from a point in
time, or the last N records) and stopping there, for `sagesf dlq` and `sagesf trace`. Pipeline
stages read with `sagesf.sink.SinkLoop` (or faust), never with this.

How it works: one confluent_kafka Consumer with `assign()` (it never joins a consumer group and
never commits, so it cannot disturb a stage; its `group.id` is a throwaway one librdkafka
wants). `ranges()` turns a topic and a bound (`since_ms` through offsets_for_times, `last` records
per partition, or explicit offsets) into `PartitionRange`s whose end is the high watermark at the
time of asking, so a scan of a busy topic ends instead of following new records. `read()` assigns
them all at once and yields records until every range is done; a partition also counts as done at
end-of-partition, which covers offsets taken by transaction markers that are never delivered.
Topic metadata requests never auto-create topics (`allow.auto.create.topics` false).

Limits: records come in offset order per partition, interleaved across partitions (callers sort
by time when they need to). `timeout` is the longest wait without any progress, not a bound on
the whole scan, which takes as long as the data needs. Records deleted by retention while the
scan runs are skipped by Kafka (the consumer jumps forward).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from sagesf.config import KafkaSettings

__all__ = ["PartitionRange", "ScanTimeout", "ScannedRecord", "TopicMissing", "TopicReader"]


class TopicMissing(LookupError):
    """The topic does not exist on the cluster."""


class ScanTimeout(TimeoutError):
    """No record arrived for `timeout` seconds although the ranges were not finished."""


@dataclass(frozen=True)
class ScannedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> bytes | None:
        """The last value of header `name` (Kafka allows repeats; the last one wins), or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    def header_text(self, name: str) -> str | None:
        value = self.header(name)
        return None if value is None else value.decode("utf-8", errors="replace")

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class PartitionRange:
    """Offsets [start, end) of one partition; empty when start >= end."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    return tuple((str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in pairs)


class TopicReader:
    """Reads bounded ranges of topics with assign(); use as a context manager."""

    def __init__(
        self, kafka: KafkaSettings, *, timeout: float = 30.0, config: dict[str, Any] | None = None
    ) -> None:
        """`config`: more librdkafka settings (e.g. `isolation.level`, read_committed by default)."""
        self.timeout = timeout
        self._consumer = Consumer(
            {
                **(config or {}),
                **kafka.client_config(),
                "group.id": f"sagesf-ops-reader-{uuid.uuid4().hex[:10]}",  # never joined, never committed
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "allow.auto.create.topics": False,
                "auto.offset.reset": "earliest",
                "log_level": 2,  # the commands report errors themselves
            }
        )

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    # --- where things are ---------------------------------------------------------------------

    def existing_topics(self) -> set[str]:
        """Every topic on the cluster (internal ones included)."""
        return set(self._consumer.list_topics(timeout=self.timeout).topics)

    def partitions(self, topic: str) -> list[int]:
        """The topic's partition ids; TopicMissing when it does not exist."""
        metadata = self._consumer.list_topics(topic, timeout=self.timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            if metadata is not None and metadata.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaException(metadata.error)
            raise TopicMissing(topic)
        return sorted(metadata.partitions)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high): the first offset still kept and the offset the next record will get."""
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=self.timeout, cached=False
        )
        return int(low), int(high)

    def offsets_for_time(self, topic: str, partitions: Iterable[int], timestamp_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is >= `timestamp_ms` (-1: none yet)."""
        asked = [TopicPartition(topic, p, timestamp_ms) for p in partitions]
        if not asked:
            return {}
        found = self._consumer.offsets_for_times(asked, timeout=self.timeout)
        out = {}
        for tp in found:
            if tp.error is not None:
                raise KafkaException(tp.error)
            out[tp.partition] = int(tp.offset)
        return out

    def ranges(
        self,
        topic: str,
        *,
        since_ms: int | None = None,
        last: int | None = None,
        partitions: Iterable[int] | None = None,
    ) -> list[PartitionRange]:
        """The ranges to read from `topic`: everything kept, or from `since_ms`, or the `last` N.

        Both bounds together: the later start wins. Ends are the current high watermarks.
        """
        chosen = list(partitions) if partitions is not None else self.partitions(topic)
        since = self.offsets_for_time(topic, chosen, since_ms) if since_ms is not None else {}
        out = []
        for p in chosen:
            low, high = self.watermarks(topic, p)
            start = low
            if since_ms is not None:
                at = since.get(p, -1)
                start = max(start, high if at < 0 else at)
            if last is not None:
                start = max(start, high - last)
            out.append(PartitionRange(topic, p, min(start, high), high))
        return out

    # --- reading -----------------------------------------------------------------------------

    def read(
        self, ranges: Sequence[PartitionRange], *, batch: int = 500
    ) -> Generator[ScannedRecord, None, None]:
        """Yield every record in `ranges` (each partition in offset order), then stop."""
        todo = {(r.topic, r.partition): r for r in ranges if r.size > 0}
        if not todo:
            return
        assignment = [TopicPartition(r.topic, r.partition, r.start) for r in todo.values()]
        self._consumer.assign(assignment)
        # librdkafka keeps a partition's pause flag across assignments: an earlier read's `_finish`
        # would otherwise leave it paused here
        self._consumer.resume(assignment)
        last_progress = time.monotonic()
        try:
            while todo:
                messages = self._consumer.consume(batch, 0.5)
                if not messages and time.monotonic() - last_progress > self.timeout:
                    left = ", ".join(f"{t}/{p}" for t, p in sorted(todo))
                    raise ScanTimeout(f"no records for {self.timeout:.0f} s while reading {left}")
                for msg in messages:
                    where = (msg.topic() or "", msg.partition() or 0)
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            self._finish(todo, where)
                            continue
                        if err.fatal() or err.code() in (
                            KafkaError.UNKNOWN_TOPIC_OR_PART,
                            KafkaError.TOPIC_AUTHORIZATION_FAILED,
                        ):
                            raise KafkaException(err)
                        continue  # transient (broker reconnects): librdkafka retries
                    last_progress = time.monotonic()
                    rng = todo.get(where)
                    offset = msg.offset() or 0
                    if rng is None or offset >= rng.end:
                        self._finish(todo, where)
                        continue
                    yield ScannedRecord(
                        topic=where[0],
                        partition=where[1],
                        offset=offset,
                        timestamp_ms=msg.timestamp()[1],
                        key=msg.key(),
                        value=msg.value(),
                        headers=_headers(msg.headers()),
                    )
                    if offset + 1 >= rng.end:
                        self._finish(todo, where)
        finally:
            self._consumer.unassign()

    def _finish(self, todo: dict[tuple[str, int], PartitionRange], where: tuple[str, int]) -> None:
        if todo.pop(where, None) is not None:
            self._consumer.pause([TopicPartition(*where)])
