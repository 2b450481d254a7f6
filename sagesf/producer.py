"""A Kafka producer whose caller knows, before going on, that Kafka has the records.

The checkpoint order of every source is: produce -> wait for acks -> store position. `send`
enqueues and `confirm` flushes and raises `ProduceFailed` (Retriable) if any record enqueued since
the last confirm was not acknowledged, so a caller that stores its position after `confirm()`
returns never records a position for data Kafka does not have.

Idempotence is on (acks=all, no duplicates from the producer's own retries). Keys are placed with
`murmur2_random`, the Java client's partitioner (also aiokafka's, so faust's): one key lands on
the same partition whichever of our processes writes it, which is what keeps an entity's events
in order. librdkafka's own default (CRC32) would put the same key elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from sagesf.config import KafkaSettings
from sagesf.errors import Permanent, Retriable
from sagesf.metrics import PRODUCE_FAILURES, RECORDS_PRODUCED

Headers = Sequence[tuple[str, bytes | str]]


class ProduceFailed(Retriable):
    """Kafka did not acknowledge some records; nothing after them may be checkpointed."""


class RecordTooLarge(Permanent):
    """A record over the producer's `message.max.bytes`: it can never be sent as it is."""


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class OutboundRecord:
    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers | None = None


class ConfirmedProducer:
    def __init__(self, kafka: KafkaSettings, extra: dict[str, Any] | None = None) -> None:
        conf: dict[str, Any] = {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": 60000,
        }
        conf.update(extra or {})
        self._producer = Producer(conf)
        self._sent = 0
        # seq -> where it landed; failures as text. Metrics are counted per confirm(), not per
        # record: a labelled counter lookup per message cost as much as the produce itself.
        self._delivered: dict[int, Delivered] = {}
        self._failed: list[str] = []

    def _on_delivery(self, seq: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(f"{msg.topic() or '?'}: {err.str()}")
        else:
            self._delivered[seq] = Delivered(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """Enqueue one record (to `partition`, else the key's); call `confirm()` before relying on it."""
        callback = partial(self._on_delivery, self._sent)
        self._sent += 1
        listed: list[tuple[str, str | bytes | None]] | None = list(headers) if headers else None
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, key, headers=listed, on_delivery=callback)
                else:
                    self._producer.produce(topic, value, key, partition, headers=listed, on_delivery=callback)
                return
            except BufferError:
                # the local queue is full: let librdkafka send some, then try again
                self._producer.poll(0.1)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    size = len(value or b"") + len(key or b"")
                    raise RecordTooLarge(
                        f"a record of {size} bytes for {topic} is over Kafka's size limit (message.max.bytes)"
                    ) from None
                raise

    def confirm(self, timeout: float = 60.0) -> list[Delivered]:
        """Wait until every enqueued record is acknowledged; raise ProduceFailed otherwise.

        Returns where each record landed, in the order they were sent.
        """
        remaining = self._producer.flush(timeout)
        delivered, failed = self._delivered, self._failed
        self._delivered, self._failed, self._sent = {}, [], 0
        for topic, count in Counter(d.topic for d in delivered.values()).items():
            RECORDS_PRODUCED.labels(topic).inc(count)
        for topic, count in Counter(f.split(": ", 1)[0] for f in failed).items():
            PRODUCE_FAILURES.labels(topic).inc(count)
        if remaining:
            raise ProduceFailed(f"{remaining} records not acknowledged within {timeout:.0f} s")
        if failed:
            raise ProduceFailed(f"{len(failed)} records not acknowledged: {failed[0]}")
        return [delivered[seq] for seq in sorted(delivered)]

    def send_and_confirm(self, records: Iterable[OutboundRecord], timeout: float = 60.0) -> list[Delivered]:
        for rec in records:
            self.send(rec.topic, rec.value, rec.key, rec.headers)
        return self.confirm(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout)
