"""Publishing canonical records: the one place that turns a record into Kafka bytes and sends them.

Sources (sagesf.source) and sinks (sagesf.sink) hand their records to a `CanonicalPublisher`;
connectors never encode or produce themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from sagesf.dead_letter_writer import DeadLetterWriter, FailedRecord
from sagesf.producer import ConfirmedProducer, Delivered, Headers
from sagesf.serde import AvroSerde

__all__ = ["CanonicalPublisher", "CanonicalRecord", "DeadLetterItem"]

# (original record, error, Kafka Connect stage, where it failed): what DeadLetterWriter.send takes
DeadLetterItem = tuple[FailedRecord, BaseException, str, str]


@dataclass(slots=True)
class CanonicalRecord:
    """One canonical record to publish.

    `topic` is the canonical topic name (sagesf.topic_names; the publisher maps it to the deployed
    name), `schema` the canonical schema (schemas/<schema>.avsc), `key` the entity key, `value`
    the record (None: a tombstone). `event_time` is when the change happened in its system, for
    delay metrics; it is not written.
    """

    topic: str
    schema: str
    key: str | None
    value: dict[str, Any] | None
    headers: Headers = ()
    event_time: datetime | None = None


class CanonicalPublisher:
    """Encodes canonical records (Avro, Confluent framing, string keys) and sends them and dead letters.

    Serdes are made once per (topic, schema) and resolve their schema id in the registry on first
    use, or all at once in `prepare` so that an unregistered schema stops a process at start-up.
    `send` only enqueues; `confirm` returns once Kafka acknowledged everything sent since the last
    confirm (or raises `ProduceFailed`, a Retriable). `dead_letter` sends dead letters and waits
    for them (and everything sent before them). One publisher serves one thread.
    """

    def __init__(
        self,
        producer: ConfirmedProducer,
        registry: SchemaRegistryClient,
        *,
        stage: str,
        auto_register: bool,
        topics: Mapping[str, str] | None = None,
        dead_letter_topic: str | None = None,
        headers: Headers = (),
        timeout: float = 60.0,
    ) -> None:
        self.producer = producer
        self.registry = registry
        self.auto_register = auto_register
        self.topics = dict(topics or {})
        self.dead_letters = DeadLetterWriter(producer, stage, dead_letter_topic)
        self.headers = tuple(headers)
        self.timeout = timeout
        self._values: dict[tuple[str, str], AvroSerde] = {}
        self._keys: dict[str, AvroSerde] = {}

    def topic(self, name: str) -> str:
        """The deployed topic of a canonical topic name (after the configured overrides)."""
        return self.topics.get(name, name)

    def prepare(self, schemas: Iterable[tuple[str, str]]) -> None:
        """Resolve the schema ids of (topic, schema) pairs now (SchemaRegistrationError if missing)."""
        for topic, schema in schemas:
            self._key_serde(topic).schema_id  # noqa: B018 - resolves and caches the id
            self._value_serde(topic, schema).schema_id  # noqa: B018

    def encode(self, record: CanonicalRecord) -> tuple[bytes | None, bytes | None]:
        """The Kafka key and value bytes of a record; SerdeError (Permanent) if it does not fit."""
        key = None if record.key is None else self._key_serde(record.topic).encode(record.key)
        return key, self._value_serde(record.topic, record.schema).encode(record.value)

    def send(self, record: CanonicalRecord) -> None:
        """Encode and enqueue one record; SerdeError (Permanent) if it does not fit its schema."""
        key, value = self.encode(record)
        headers = self.headers + tuple(record.headers) if record.headers else self.headers
        self.producer.send(self.topic(record.topic), value, key, headers or None)

    def dead_letter(self, items: Sequence[DeadLetterItem]) -> None:
        """Send dead letters; returns once Kafka has them (and everything sent before)."""
        self.dead_letters.send(list(items))

    def confirm(self) -> list[Delivered]:
        """Wait until Kafka acknowledged everything sent since the last confirm."""
        return self.producer.confirm(self.timeout)

    def _value_serde(self, topic: str, schema: str) -> AvroSerde:
        found = self._values.get((topic, schema))
        if found is None:
            found = AvroSerde.canonical(
                self.registry, schema, self.topic(topic), auto_register=self.auto_register
            )
            self._values[(topic, schema)] = found
        return found

    def _key_serde(self, topic: str) -> AvroSerde:
        found = self._keys.get(topic)
        if found is None:
            found = AvroSerde.string_key(self.registry, self.topic(topic), auto_register=self.auto_register)
            self._keys[topic] = found
        return found
