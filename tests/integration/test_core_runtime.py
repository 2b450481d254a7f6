"""The core runtime on the real broker: confirmed produce, position store, the sink and source loops, DLQ."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from sagesf.config import KafkaSettings
from sagesf.dead_letter_writer import FailedRecord
from sagesf.errors import Backpressure, Permanent, Retriable
from sagesf.group_lag import GroupLag
from sagesf.metrics import Health
from sagesf.positions import PositionStore
from sagesf.producer import ConfirmedProducer, ProduceFailed
from sagesf.publisher import CanonicalPublisher, CanonicalRecord
from sagesf.retry import RetryPolicy
from sagesf.serde import AvroSerde
from sagesf.sink import Decoder, Inbound, Outcome, SinkLoop
from sagesf.source import Rejected, SourceBatch, SourceLoop
from tests.kit.kafka import committed, read_topic
from tests.kit.stages import FunctionSink, MemoryPositions, run_until

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


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


@pytest.fixture
def registry(schema_registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry_url})


def publisher(kafka: KafkaSettings, registry: SchemaRegistryClient, dlq_topic: str) -> CanonicalPublisher:
    return CanonicalPublisher(
        ConfirmedProducer(kafka),
        registry,
        stage="test-stage",
        auto_register=True,
        dead_letter_topic=dlq_topic,
    )


def _loop(
    kafka: KafkaSettings,
    registry: SchemaRegistryClient,
    topic: str,
    dlq_topic: str,
    handler: Callable[[Sequence[Inbound]], Any],
    decode: Decoder | None = None,
    group: str | None = None,
) -> tuple[SinkLoop, str]:
    group = group or f"g-{uuid.uuid4().hex[:8]}"
    loop = SinkLoop(
        kafka=kafka,
        group_id=group,
        topics=[topic],
        sink=FunctionSink(handler),
        publisher=publisher(kafka, registry, dlq_topic),
        decode=decode,
        retry=RetryPolicy(initial=0.05, maximum=0.2),
        extra_config=FAST_GROUP,
    )
    return loop, group


def _fill(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = ConfirmedProducer(kafka)
    for i, v in enumerate(values):
        producer.send(topic, v, key=f"k{i}".encode(), headers=[("trace", b"t%d" % i)])
    producer.confirm()


def _run_until(loop: SinkLoop, done: Callable[[], bool], timeout: float = 60) -> None:
    try:
        run_until(loop, done, timeout)
    finally:
        loop.close()


def test_poison_message_goes_to_dead_letter_topic_and_loop_moves_on(
    kafka, registry, kafka_bootstrap, new_topic
):
    topic, dlq_topic = new_topic("orders"), new_topic("orders-dlq")
    _fill(kafka, topic, [b'{"n": 1}', b"\x00\xffnot json", b'{"n": 2}', b'{"n": -5}', b'{"n": 3}'])
    handled: list[int] = []

    def decode(rec: Inbound) -> None:
        rec.value = json.loads(rec.value_bytes or b"")

    def handler(batch):
        outcomes: list[Permanent | None] = []
        for rec in batch:
            if rec.value["n"] < 0:
                outcomes.append(Permanent("quantity must be > 0", field="n", value=rec.value["n"]))
            else:
                handled.append(rec.value["n"])
                outcomes.append(None)
        return outcomes

    loop, group = _loop(kafka, registry, topic, dlq_topic, handler, decode)
    _run_until(loop, lambda: len(handled) == 3)
    assert handled == [1, 2, 3]

    dead = read_topic(kafka_bootstrap, dlq_topic)
    assert [m.value for m in dead] == [b"\x00\xffnot json", b'{"n": -5}']  # original bytes
    assert [m.key for m in dead] == [b"k1", b"k3"]
    first = dict(dead[0].headers)
    assert first["__connect.errors.topic"] == topic.encode()
    assert first["__connect.errors.partition"] == b"0"
    assert first["__connect.errors.offset"] == b"1"
    assert first["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert first["__connect.errors.exception.class.name"] == b"json.decoder.JSONDecodeError"
    assert first["trace"] == b"t1"  # original headers kept
    second = dict(dead[1].headers)
    assert second["__connect.errors.stage"] == b"TASK_PUT"
    assert second["__connect.errors.exception.message"] == b"quantity must be > 0"
    assert second["__sagesf.errors.field"] == b"n"
    assert committed(kafka_bootstrap, group, topic) == {0: 5}


def test_retriable_and_backpressure_redeliver_without_loss_or_dead_letters(
    kafka, registry, kafka_bootstrap, new_topic
):
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

    loop, group = _loop(kafka, registry, topic, dlq_topic, handler)
    started = time.monotonic()
    _run_until(loop, lambda: len(written) == 3)
    assert time.monotonic() - started >= 0.5  # the backpressure pause happened
    assert sorted(written) == [b"a", b"b", b"c"]
    assert calls[-1] == [b"b"]
    assert read_topic(kafka_bootstrap, dlq_topic) == []
    assert committed(kafka_bootstrap, group, topic) == {0: 3}


def test_uncommitted_batch_is_redelivered_after_a_crash(kafka, registry, new_topic):
    """A handler that dies mid-batch (before the commit) sees the batch again on restart."""
    topic, dlq = new_topic("crash"), new_topic("crash-dlq")
    _fill(kafka, topic, [b"1", b"2"])

    class Crash(BaseException):
        pass

    def crashing(batch):
        raise Crash

    def run_forever(loop: SinkLoop) -> None:
        while True:
            loop.run_once()

    loop, group = _loop(kafka, registry, topic, dlq, crashing)
    with pytest.raises(Crash):
        run_forever(loop)
    loop.consumer.close()
    seen: list[bytes | None] = []

    def remember(batch: Sequence[Inbound]) -> None:
        seen.extend(r.value_bytes for r in batch)

    loop2, _ = _loop(kafka, registry, topic, dlq, remember, group=group)
    _run_until(loop2, lambda: len(seen) == 2)
    assert seen == [b"1", b"2"]


def test_loop_stops_on_event(kafka, registry, new_topic):
    topic = new_topic("idle")
    loop, _ = _loop(kafka, registry, topic, new_topic("idle-dlq"), lambda b: None)
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
    """For groups outside SinkLoop (faust): lag from committed offsets; stalled = unhealthy."""
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


# --- sinks answer through the loop ------------------------------------------------------------------


def position_record(topic: str, stream: str, position: str) -> CanonicalRecord:
    """A small canonical record (SourcePosition) to publish in these tests."""
    envelope = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stream}/{position}")),
        "event_time": 1_700_000_000_000,
        "source_system": "SAGESF",
        "source_record_id": stream,
        "correlation_id": None,
    }
    value = {"envelope": envelope, "component": "test", "stream": stream, "position": position}
    return CanonicalRecord(topic, "SourcePosition", stream, value)


def decoded(registry: SchemaRegistryClient, bootstrap: str, topic: str) -> list[tuple[str, str]]:
    keys = AvroSerde.string_key(registry, topic, auto_register=False)
    values = AvroSerde.canonical(registry, "SourcePosition", topic, auto_register=False)
    out = []
    for record in read_topic(bootstrap, topic):
        assert record.key is not None
        assert record.value is not None
        out.append((str(keys.decode(record.key)), str(values.decode(record.value)["position"])))
    return out


def test_a_sinks_answers_are_published_before_the_commit_including_the_rejected_ones(
    kafka, registry, kafka_bootstrap, new_topic
):
    """Done and rejected records are answered once; a retriable one only when it finally succeeds."""
    topic, dlq_topic, answers = new_topic("cmds"), new_topic("cmds-dlq"), new_topic("answers")
    _fill(kafka, topic, [b"ok", b"bad", b"later"])
    attempts: dict[bytes, int] = {}

    def handler(batch):
        outcomes = []
        for rec in batch:
            value = rec.value_bytes
            attempts[value] = attempts.get(value, 0) + 1
            answer = position_record(answers, rec.key_bytes.decode(), f"{value.decode()}#{attempts[value]}")
            if value == b"bad":
                outcomes.append(Outcome(Permanent("refused"), answer))
            elif value == b"later" and attempts[value] == 1:
                outcomes.append(Outcome(Retriable("busy"), answer))  # not answered: written again
            else:
                outcomes.append(Outcome(result=answer))
        return outcomes

    loop, group = _loop(kafka, registry, topic, dlq_topic, handler)
    _run_until(loop, lambda: attempts.get(b"later", 0) == 2)

    assert sorted(decoded(registry, kafka_bootstrap, answers)) == [
        ("k0", "ok#1"),
        ("k1", "bad#1"),
        ("k2", "later#2"),
    ]
    assert [r.value for r in read_topic(kafka_bootstrap, dlq_topic)] == [b"bad"]
    assert committed(kafka_bootstrap, group, topic) == {0: 3}


def test_an_answer_that_does_not_fit_its_schema_dead_letters_its_record_and_the_loop_goes_on(
    kafka, registry, kafka_bootstrap, new_topic
):
    topic, dlq_topic, answers = new_topic("cmds"), new_topic("cmds-dlq"), new_topic("answers")
    _fill(kafka, topic, [b"broken", b"fine"])

    def handler(batch):
        outcomes = []
        for rec in batch:
            answer = position_record(answers, rec.key_bytes.decode(), rec.value_bytes.decode())
            if rec.value_bytes == b"broken":
                assert answer.value is not None
                answer.value["position"] = 42  # not a string: does not fit SourcePosition
            outcomes.append(Outcome(result=answer))
        return outcomes

    loop, group = _loop(kafka, registry, topic, dlq_topic, handler)
    _run_until(loop, lambda: committed(kafka_bootstrap, group, topic) == {0: 2})

    assert decoded(registry, kafka_bootstrap, answers) == [("k1", "fine")]
    [dead] = read_topic(kafka_bootstrap, dlq_topic)
    assert dead.value == b"broken"
    assert b"does not fit" in (dead.header("__connect.errors.exception.message") or b"")


# --- sources: publish, confirm, then store the position ----------------------------------------------


class ScriptedSource:
    """A Source that yields what a test scripts, and remembers what was committed."""

    name = "test-source"

    def __init__(self, passes: list[list[SourceBatch]]) -> None:
        self.passes = passes
        self.committed: list[dict[str, Any] | None] = []

    def read(self) -> Iterator[SourceBatch]:
        if not self.passes:
            return
        for batch in self.passes.pop(0):
            if batch.positions is not None:
                positions = batch.positions
                batch.committed = lambda positions=positions: self.committed.append(positions)
            yield batch


def test_a_source_batch_is_published_and_confirmed_before_its_position_is_stored(
    kafka, registry, kafka_bootstrap, new_topic
):
    out, dlq_topic = new_topic("out"), new_topic("out-dlq")
    unfit = position_record(out, "s", "x")
    assert unfit.value is not None
    unfit.value["position"] = None  # does not fit its schema: a dead letter, the rest go on
    bad_row = Rejected(
        FailedRecord("SOME_TABLE", -1, -1, b"K1", b'{"row": 1}'), Permanent("no such type"), "t"
    )
    source = ScriptedSource(
        [
            [
                SourceBatch(records=[position_record(out, "s", "1")]),  # sent now, confirmed below
                SourceBatch(
                    records=[unfit, position_record(out, "s", "2")], rejected=[bad_row], positions={"s": 2}
                ),
            ]
        ]
    )
    positions = MemoryPositions()
    loop = SourceLoop(source, publisher(kafka, registry, dlq_topic), positions)

    assert loop.run_once() == 2

    assert decoded(registry, kafka_bootstrap, out) == [("s", "1"), ("s", "2")]
    assert positions.stored == {"s": 2}
    assert source.committed == [{"s": 2}]
    dead = read_topic(kafka_bootstrap, dlq_topic)
    assert dead[0].value == b'{"row": 1}'
    assert (dead[1].value or b"").startswith(b'{"envelope"')  # the record as JSON
    assert dead[0].header("__connect.errors.topic") == b"SOME_TABLE"
    assert (
        dead[1].header("__connect.errors.topic") == f"unpublished:{out}".encode()
    )  # never replayed into out


def test_a_source_stores_no_position_when_kafka_does_not_acknowledge(kafka, registry, new_topic):
    """ProduceFailed at the confirm: nothing stored, nothing committed; the loop backs off and reads again."""
    dlq_topic = new_topic("dlq")
    missing = f"no.such.topic.{uuid.uuid4().hex[:8]}"
    source = ScriptedSource([[SourceBatch(records=[position_record(missing, "s", "1")], positions={"s": 1})]])
    positions = MemoryPositions()
    producer = ConfirmedProducer(kafka, extra={"message.timeout.ms": 2000})
    loop = SourceLoop(
        source,
        CanonicalPublisher(
            producer, registry, stage="t", auto_register=True, dead_letter_topic=dlq_topic, timeout=10
        ),
        positions,
    )
    with pytest.raises(ProduceFailed):
        loop.run_once()
    assert positions.stored == {}
    assert source.committed == []


def test_the_source_loop_backs_off_on_retriable_and_waits_out_backpressure(kafka, registry, new_topic):
    out = new_topic("out")
    health = Health()
    calls: list[float] = []
    stop = threading.Event()

    class Flaky:
        name = "flaky-source"

        def read(self) -> Iterator[SourceBatch]:
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise Retriable("Sage database locked")
            if len(calls) == 2:
                raise Backpressure("slow down", retry_after=0.6)
            if len(calls) == 3:
                yield SourceBatch(records=[position_record(out, "s", "1")], positions={"s": 1})
                return
            stop.set()
            yield from ()

    positions = MemoryPositions()
    loop = SourceLoop(
        Flaky(),
        publisher(kafka, registry, new_topic("dlq")),
        positions,
        health=health,
        retry=RetryPolicy(0.2, 1.0),
    )
    loop.run(stop)

    assert len(calls) == 4
    assert calls[2] - calls[1] >= 0.6  # backpressure waited retry_after
    assert calls[1] - calls[0] >= 0.1  # a backoff (0.1-0.2 s with jitter)
    assert positions.stored == {"s": 1}
    assert health.report()[0] == "ok"


def test_a_record_over_kafkas_size_limit_is_dead_lettered_cut_and_the_source_goes_on(
    kafka, registry, kafka_bootstrap, new_topic
):
    """An Account with thousands of contacts can make a record bigger than Kafka takes: it must be a
    dead letter (its value cut, so the dead letter fits), not a crash that every restart repeats."""
    out, dlq_topic = new_topic("out"), new_topic("out-dlq")
    huge = position_record(out, "big", "x" * 1_500_000)
    source = ScriptedSource(
        [[SourceBatch(records=[huge, position_record(out, "small", "1")], positions={"s": 1})]]
    )
    positions = MemoryPositions()
    loop = SourceLoop(source, publisher(kafka, registry, dlq_topic), positions)

    assert loop.run_once() == 1

    assert decoded(registry, kafka_bootstrap, out) == [("small", "1")]
    assert positions.stored == {"s": 1}
    [dead] = read_topic(kafka_bootstrap, dlq_topic)
    assert dead.key == b"big"
    assert "size limit" in (dead.header_text("__connect.errors.exception.message") or "")
    assert int(dead.header_text("__sagesf.errors.value.truncated") or 0) > 1_500_000
    assert dead.value is not None
    assert len(dead.value) <= 512 * 1024
