"""Where sources remember how far they got: a compacted Kafka topic (positions.v1).

Salesforce replay IDs per channel and Sage watermarks per table live here, so a source that is
restarted, or moved to another host, resumes where the last one stopped. The key is
`<component>/<stream>` (UTF-8); the value is JSON `{"component", "stream", "position",
"stored_at": <epoch ms>}` (the fields of schemas/SourcePosition.avsc; topics.yaml declares the
topic `encoding: json`) where `position` is whatever JSON the source needs (a replay ID, a
watermark tuple).
Compaction keeps the latest value per key; reading the topic to its end on start rebuilds the map.

The checkpoint order is the caller's: produce the records -> `ConfirmedProducer.confirm()` ->
`put()`. `put` itself returns only after Kafka acknowledged the position.

Limits: one writer per (component, stream); two writers would overwrite each other's position.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from sagesf.config import KafkaSettings
from sagesf.metrics import POSITION_TIMESTAMP, POSITIONS_STORED
from sagesf.producer import ConfirmedProducer

DEFAULT_TOPIC = "positions.v1"


class PositionStore:
    def __init__(
        self,
        kafka: KafkaSettings,
        component: str,
        topic: str = DEFAULT_TOPIC,
        producer: ConfirmedProducer | None = None,
    ) -> None:
        self.kafka = kafka
        self.component = component
        self.topic = topic
        self.producer = producer or ConfirmedProducer(kafka)
        self._positions: dict[str, Any] = {}
        self._loaded = False

    def _key(self, stream: str) -> str:
        return f"{self.component}/{stream}"

    def load(self, timeout: float = 30.0) -> dict[str, Any]:
        """Read the topic to its end and return this component's positions by stream."""
        consumer = Consumer(
            {
                **self.kafka.client_config(),
                "group.id": f"sagesf-positions-{uuid.uuid4().hex[:8]}",  # never committed
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
            if metadata is None or metadata.error is not None:
                raise KafkaException(metadata.error if metadata else f"topic {self.topic} missing")
            partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
            ends = {}
            for tp in partitions:
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
                if high > low:
                    ends[tp.partition] = high
            if ends:
                consumer.assign([tp for tp in partitions if tp.partition in ends])
            prefix = f"{self.component}/"
            deadline = time.monotonic() + timeout
            while ends and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ends.pop(msg.partition() or 0, None)
                        continue
                    raise KafkaException(err)
                key = (msg.key() or b"").decode()
                if (msg.offset() or 0) + 1 >= ends.get(msg.partition() or 0, 0):
                    ends.pop(msg.partition() or 0, None)
                if not key.startswith(prefix):
                    continue
                value = msg.value()
                stream = key[len(prefix) :]
                if value is None:  # tombstone: the stream was reset
                    self._positions.pop(stream, None)
                else:
                    self._positions[stream] = json.loads(value)["position"]
            if ends:
                raise TimeoutError(f"reading {self.topic} did not reach its end within {timeout:.0f} s")
        finally:
            consumer.close()
        self._loaded = True
        return dict(self._positions)

    def get(self, stream: str) -> Any:
        """The last stored position of `stream`, or None if it never stored one."""
        if not self._loaded:
            self.load()
        return self._positions.get(stream)

    def put(self, stream: str, position: Any) -> None:
        """Store a position; returns after Kafka acknowledged it."""
        self.put_many({stream: position})

    def put_many(self, positions: dict[str, Any]) -> None:
        now = time.time()
        for stream, position in positions.items():
            value = json.dumps(
                {
                    "component": self.component,
                    "stream": stream,
                    "position": position,
                    "stored_at": int(now * 1000),
                }
            ).encode()
            self.producer.send(self.topic, value, self._key(stream).encode())
        self.producer.confirm()
        for stream, position in positions.items():
            self._positions[stream] = position
            POSITIONS_STORED.labels(self.component).inc()
            POSITION_TIMESTAMP.labels(self.component, stream).set(now)

    def reset(self, stream: str) -> None:
        """Forget a stream's position (a tombstone; the source starts from its default)."""
        self.producer.send(self.topic, None, self._key(stream).encode())
        self.producer.confirm()
        self._positions.pop(stream, None)
