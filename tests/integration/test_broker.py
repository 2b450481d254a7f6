"""The sandbox broker is a real Kafka: it creates topics, and compaction and transactions work."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer

from tests.kit.kafka import read_topic


def _consume_all(
    bootstrap: str, topic: str, isolation: str = "read_committed"
) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of `topic` up to its end, as (key, value) pairs."""
    return [(r.key, r.value) for r in read_topic(bootstrap, topic, isolation=isolation)]


def test_aborted_transaction_is_invisible_to_read_committed(kafka_bootstrap, new_topic):
    topic = new_topic("txn")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{uuid.uuid4()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"aborted")
    producer.flush()
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"committed")
    producer.commit_transaction(30)

    assert _consume_all(kafka_bootstrap, topic) == [(b"k", b"committed")]
    # read_uncommitted sees the aborted record too: the abort really happened on the broker
    assert (b"k", b"aborted") in _consume_all(kafka_bootstrap, topic, isolation="read_uncommitted")


def test_compaction_keeps_latest_value_per_key(kafka_bootstrap, new_topic):
    topic = new_topic(
        "compact",
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "100",
        },
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(20):
        producer.produce(topic, key=f"k{i % 2}".encode(), value=str(i).encode())
        producer.flush()
    deadline = time.monotonic() + 60
    records: list[tuple[bytes | None, bytes | None]] = []
    while time.monotonic() < deadline:
        # a new record rolls the active segment (segment.ms) so the cleaner may compact the rest
        producer.produce(topic, key=b"roll", value=b"x")
        producer.flush()
        time.sleep(1.5)
        records = [r for r in _consume_all(kafka_bootstrap, topic) if r[0] != b"roll"]
        if len(records) == 2:
            break
    assert sorted(records) == [(b"k0", b"18"), (b"k1", b"19")]
