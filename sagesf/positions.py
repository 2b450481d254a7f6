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
import threading
import time
from typing import Any

from sagesf import topic_names
from sagesf.config import KafkaSettings
from sagesf.metrics import POSITION_TIMESTAMP, POSITIONS_STORED
from sagesf.producer import ConfirmedProducer
from sagesf.topic_scan import TopicReader

DEFAULT_TOPIC = topic_names.POSITIONS


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
        self._lock = threading.Lock()  # a source's loop writes while its streaming thread reads

    def _key(self, stream: str) -> str:
        return f"{self.component}/{stream}"

    def load(self, timeout: float = 30.0) -> dict[str, Any]:
        """Read the topic to its end and return this component's positions by stream."""
        prefix = f"{self.component}/"
        found: dict[str, Any] = {}
        with TopicReader(self.kafka, timeout=timeout) as reader:
            for record in reader.read(reader.ranges(self.topic)):
                key = (record.key or b"").decode()
                if not key.startswith(prefix):
                    continue
                stream = key[len(prefix) :]
                if record.value is None:  # tombstone: the stream was reset
                    found.pop(stream, None)
                else:
                    found[stream] = json.loads(record.value)["position"]
        with self._lock:
            self._positions = found
            self._loaded = True
        return dict(found)

    def get(self, stream: str) -> Any:
        """The last stored position of `stream`, or None if it never stored one (thread-safe)."""
        if not self._loaded:
            self.load()
        with self._lock:
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
        with self._lock:
            self._positions.update(positions)
        for stream in positions:
            POSITIONS_STORED.labels(self.component).inc()
            POSITION_TIMESTAMP.labels(self.component, stream).set(now)

    def reset(self, stream: str) -> None:
        """Forget a stream's position (a tombstone; the source starts from its default)."""
        self.producer.send(self.topic, None, self._key(stream).encode())
        self.producer.confirm()
        with self._lock:
            self._positions.pop(stream, None)
