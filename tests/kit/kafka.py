"""Kafka as tests see it: what is on a topic, how far a group committed, and putting records there.

Reading goes through the core's bounded reader (sagesf.topic_scan.TopicReader): assign, never a
consumer group, stop at the end of every partition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from sagesf.config import KafkaSettings
from sagesf.topic_scan import ScannedRecord, TopicReader

__all__ = ["committed", "count", "produce", "read_topic", "wait_for_records"]


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expected: int = 0,
    timeout: float = 30.0,
    isolation: str = "read_committed",
) -> list[ScannedRecord]:
    """Every record of `topic` up to its end, in partition then offset order.

    With `expected`, reads again until at least that many are there or `timeout` passes (records
    produced by a process that is still running)."""
    deadline = time.monotonic() + timeout
    while True:
        with TopicReader(
            KafkaSettings(bootstrap_servers=bootstrap), timeout=timeout, config={"isolation.level": isolation}
        ) as reader:
            found = list(reader.read(reader.ranges(topic)))
        if len(found) >= expected or time.monotonic() >= deadline:
            return sorted(found, key=lambda r: (r.partition, r.offset))
        time.sleep(0.2)


def wait_for_records(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[ScannedRecord]:
    """The topic's records once there are at least `expected`; AssertionError after `timeout`."""
    found = read_topic(bootstrap, topic, expected=expected, timeout=timeout)
    assert len(found) >= expected, f"{topic}: {len(found)} records after {timeout:.0f} s, expected {expected}"
    return found


def count(bootstrap: str, topic: str) -> int:
    """How many records `topic` holds now (the same as `len(read_topic(...))`)."""
    return len(read_topic(bootstrap, topic))


def committed(bootstrap: str, group: str, topic: str, partitions: Sequence[int] = (0,)) -> dict[int, int]:
    """The offsets `group` committed on `topic`, per partition (-1001: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: int(tp.offset) for tp in found}


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    *,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> None:
    """Produce (key, value) pairs and wait until Kafka acknowledged every one."""
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": f"test-{uuid.uuid4().hex[:6]}"})
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        if partition is None:
            producer.produce(topic, value, key, headers=list(headers or []), on_delivery=delivered)
        else:
            producer.produce(topic, value, key, partition, headers=list(headers or []), on_delivery=delivered)
    assert producer.flush(30) == 0, f"{topic}: records not acknowledged within 30 s"
    assert not failures, failures
