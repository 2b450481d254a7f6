"""The core runtime on the real broker: confirmed produce, position store, consumer loop, DLQ."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from sagesf.config import KafkaSettings
from sagesf.consumer import BatchHandler, ConsumerLoop, Decoder, GroupLag, Inbound, Outcome, RetryPolicy
from sagesf.dlq import DeadLetterWriter
from sagesf.errors import Backpressure, Permanent, Retriable
from sagesf.metrics import Health
from sagesf.positions import PositionStore
from sagesf.producer import ConfirmedProducer, ProduceFailed

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[Message] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                break
            raise AssertionError(err)
        out.append(msg)
    consumer.close()
    return out


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    return tp.offset


@pytest.fixture
def kafka(kafka_bootstrap) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_bootstrap)


def test_confirm_raises_when_kafka_does_not_take_the_record(kafka):
    producer = ConfirmedProducer(kafka, extra={"message.timeout.ms": 2000})
    producer.send(f"no.such.topic.{uuid.uuid4().hex}", b"x")
    with pytest.raises(ProduceFailed):
        producer.confirm(timeout=10)


def test_position_store_survives_a_killed_process(kafka, new_topic):
    """A process stores positions and is killed -9; a new process reads the last one back."""
    topic = new_topic("positions", config={"cleanup.policy": "compact"})
    script = textwrap.dedent(f"""
        import os, sys
        from sagesf.config import KafkaSettings
        from sagesf.positions import PositionStore
        store = PositionStore(KafkaSettings(bootstrap_servers={kafka.bootstrap_servers!r}), "sf-source",
                              topic={topic!r})
        for i in range(1, 51):
            store.put("/data/AccountChangeEvent", {{"replay_id": i * 7}})
        store.put("/data/OpportunityChangeEvent", {{"replay_id": 3}})
        print("stored", flush=True)
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "stored" in proc.stdout

    fresh = PositionStore(kafka, "sf-source", topic=topic)
    assert fresh.get("/data/AccountChangeEvent") == {"replay_id": 350}
    assert fresh.get("/data/OpportunityChangeEvent") == {"replay_id": 3}
    assert fresh.get("/data/ContactChangeEvent") is None
    # another component's positions are separate
    assert PositionStore(kafka, "sage-source", topic=topic).get("/data/AccountChangeEvent") is None
    fresh.reset("/data/OpportunityChangeEvent")
    assert PositionStore(kafka, "sf-source", topic=topic).get("/data/OpportunityChangeEvent") is None


def _loop(
    kafka: KafkaSettings, topic: str, dlq_topic: str, handler: BatchHandler, decode: Decoder | None = None
) -> tuple[ConsumerLoop, str]:
    producer = ConfirmedProducer(kafka)
    group = f"g-{uuid.uuid4().hex[:8]}"
    loop = ConsumerLoop(
        kafka=kafka,
        group_id=group,
        topics=[topic],
        stage="test-stage",
        handler=handler,
        decode=decode,
        dead_letters=DeadLetterWriter(producer, "test-stage", topic=dlq_topic),
        retry=RetryPolicy(initial=0.05, maximum=0.2),
        extra_config=FAST_GROUP,
    )
    return loop, group


def _fill(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = ConfirmedProducer(kafka)
    for i, v in enumerate(values):
        producer.send(topic, v, key=f"k{i}".encode(), headers=[("trace", b"t%d" % i)])
    producer.confirm()


def _run_until(loop: ConsumerLoop, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        loop.run_once()
    loop.close()
    assert done(), "the loop did not finish in time"


def test_poison_message_goes_to_dead_letter_topic_and_loop_moves_on(kafka, kafka_bootstrap, new_topic):
    topic, dlq_topic = new_topic("orders"), new_topic("orders-dlq")
    _fill(kafka, topic, [b'{"n": 1}', b"\x00\xffnot json", b'{"n": 2}', b'{"n": -5}', b'{"n": 3}'])
    handled: list[int] = []

    def decode(rec: Inbound) -> None:
        rec.value = json.loads(rec.value_bytes or b"")

    def handler(batch):
        outcomes: list[Outcome] = []
        for rec in batch:
            if rec.value["n"] < 0:
                outcomes.append(Permanent("quantity must be > 0", field="n", value=rec.value["n"]))
            else:
                handled.append(rec.value["n"])
                outcomes.append(None)
        return outcomes

    loop, group = _loop(kafka, topic, dlq_topic, handler, decode)
    _run_until(loop, lambda: len(handled) == 3)
    assert handled == [1, 2, 3]

    dead = read_topic(kafka_bootstrap, dlq_topic)
    assert [m.value() for m in dead] == [b"\x00\xffnot json", b'{"n": -5}']  # original bytes
    assert [m.key() for m in dead] == [b"k1", b"k3"]
    first = dict(dead[0].headers() or [])
    assert first["__connect.errors.topic"] == topic.encode()
    assert first["__connect.errors.partition"] == b"0"
    assert first["__connect.errors.offset"] == b"1"
    assert first["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert first["__connect.errors.exception.class.name"] == b"json.decoder.JSONDecodeError"
    assert first["trace"] == b"t1"  # original headers kept
    second = dict(dead[1].headers() or [])
    assert second["__connect.errors.stage"] == b"TASK_PUT"
    assert second["__connect.errors.exception.message"] == b"quantity must be > 0"
    assert second["__sagesf.errors.field"] == b"n"
    assert committed(kafka_bootstrap, group, topic) == 5


def test_retriable_and_backpressure_redeliver_without_loss_or_dead_letters(kafka, kafka_bootstrap, new_topic):
    topic, dlq_topic = new_topic("cmds"), new_topic("cmds-dlq")
    _fill(kafka, topic, [b"a", b"b", b"c"])
    calls: list[list[bytes]] = []
    written: list[bytes] = []

    def handler(batch):
        calls.append([r.value_bytes for r in batch])
        if len(calls) == 1:
            raise Retriable("Sage database locked")
        if len(calls) == 2:
            raise Backpressure("REQUEST_LIMIT_EXCEEDED", retry_after=0.5)
        if len(calls) == 3:
            # b fails retriably on its own; a and c are written
            written.extend([batch[0].value_bytes, batch[2].value_bytes])
            return [None, Retriable("timeout"), None]
        written.extend(r.value_bytes for r in batch)
        return None

    loop, group = _loop(kafka, topic, dlq_topic, handler)
    started = time.monotonic()
    _run_until(loop, lambda: len(written) == 3)
    assert time.monotonic() - started >= 0.5  # the backpressure pause happened
    assert sorted(written) == [b"a", b"b", b"c"]
    assert calls[-1] == [b"b"]
    assert read_topic(kafka_bootstrap, dlq_topic) == []
    assert committed(kafka_bootstrap, group, topic) == 3


def test_uncommitted_batch_is_redelivered_after_a_crash(kafka, kafka_bootstrap, new_topic):
    """A handler that dies mid-batch (before the commit) sees the batch again on restart."""
    topic, dlq = new_topic("crash"), new_topic("crash-dlq")
    _fill(kafka, topic, [b"1", b"2"])

    class Crash(BaseException):
        pass

    def crashing(batch):
        raise Crash

    def run_forever(loop: ConsumerLoop) -> None:
        while True:
            loop.run_once()

    loop, group = _loop(kafka, topic, dlq, crashing)
    with pytest.raises(Crash):
        run_forever(loop)
    loop.consumer.close()
    seen: list[bytes | None] = []
    loop2 = ConsumerLoop(
        kafka=kafka,
        group_id=group,
        topics=[topic],
        stage="test-stage",
        handler=lambda b: seen.extend(r.value_bytes for r in b),
        dead_letters=DeadLetterWriter(ConfirmedProducer(kafka), "test-stage", topic=dlq),
        extra_config=FAST_GROUP,
    )
    _run_until(loop2, lambda: len(seen) == 2)
    assert seen == [b"1", b"2"]


def test_loop_stops_on_event(kafka, new_topic):
    topic = new_topic("idle")
    loop, _ = _loop(kafka, topic, new_topic("idle-dlq"), lambda b: None)
    stop = threading.Event()
    t = threading.Thread(target=loop.run, args=(stop,))
    t.start()
    time.sleep(1)
    stop.set()
    t.join(10)
    assert not t.is_alive()
    loop.close()


def test_keys_land_where_faust_and_java_clients_put_them(kafka, new_topic):
    """Our producer and faust's (aiokafka, murmur2 like Java) agree on each key's partition, so one
    entity's events stay in order whichever process wrote them."""
    from aiokafka.partitioner import DefaultPartitioner

    topic = new_topic("partitioned", partitions=6)
    keys = [f"006Dn0000{n:05d}AbCIAK".encode() for n in range(40)]
    producer = ConfirmedProducer(kafka)
    for key in keys:
        producer.send(topic, b"v", key)
    delivered = producer.confirm()
    aiokafka = DefaultPartitioner()
    assert [d.partition for d in delivered] == [aiokafka(k, list(range(6)), list(range(6))) for k in keys]
    assert len({d.partition for d in delivered}) > 1


def test_group_lag_counts_uncommitted_records_and_a_stall_turns_health_unhealthy(kafka, new_topic):
    """For groups outside ConsumerLoop (faust): lag from committed offsets; stalled = unhealthy."""
    topic = new_topic("lagged")
    _fill(kafka, topic, [b"a", b"b", b"c", b"d", b"e"])
    group = f"g-{uuid.uuid4().hex[:8]}"
    committer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    committer.close()
    health = Health(stall_after=0.2)
    health.progress("orders")
    lag = GroupLag(kafka, group, {topic: "orders"}, health)
    try:
        assert lag.measure() == {"orders": 3}
        time.sleep(0.3)
        assert health.report()[0] == "unhealthy"
        health.progress("orders")  # the stage handled something: alive again
        assert health.report()[0] == "ok"
    finally:
        lag.close()
