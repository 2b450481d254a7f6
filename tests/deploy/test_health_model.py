"""The health model the probes read: readiness is "dependencies up", liveness is "not stalled".

Unit tests of `sagesf.metrics.Health` over HTTP (the paths Kubernetes and compose probe), and, on
the real broker, of what `SinkLoop` tells it: consumer lag as pending work and as the gauge
`sagesf_consumer_lag`, a handler that hangs turning liveness red, backpressure keeping it green
while readiness is red, and the end-to-end latency histogram.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import REGISTRY

from sagesf.config import KafkaSettings
from sagesf.errors import Backpressure
from sagesf.metrics import Health, MetricsServer
from sagesf.producer import ConfirmedProducer
from sagesf.publisher import CanonicalPublisher
from sagesf.sink import Inbound, SinkLoop
from tests.kit.stages import FunctionSink

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def served() -> Iterator[tuple[Health, int]]:
    health = Health(stall_after=0.3)
    server = MetricsServer(health, port=0)
    try:
        yield health, server.port
    finally:
        server.stop()


def _probes(port: int) -> tuple[int, int, str]:
    live, report = _get(port, "/healthz/live")
    ready, _ = _get(port, "/healthz/ready")
    return live, ready, str(report["status"])


def test_a_dependency_down_fails_readiness_but_not_liveness(served):
    health, port = served
    health.progress("sage-sink")
    assert _probes(port) == (200, 200, "ok")
    health.dependency("sage100", up=False, detail="ODBC: database is locked")
    assert _probes(port) == (200, 503, "degraded")
    health.dependency("sage100", up=True)
    assert _probes(port) == (200, 200, "ok")


def test_pending_work_without_progress_fails_liveness(served):
    health, port = served
    health.progress("salesforce-sink", pending=0)
    health.waiting("salesforce-sink", pending=40)
    assert _probes(port)[0] == 200  # not yet: stall_after has not passed
    time.sleep(0.4)
    live, ready, status = _probes(port)
    assert (live, ready, status) == (503, 503, "unhealthy")
    _, report = _get(port, "/healthz")
    component = report["components"]["salesforce-sink"]  # type: ignore[index]
    assert "40 pending and no progress" in component["detail"]
    health.progress("salesforce-sink", pending=3)
    assert _probes(port) == (200, 200, "ok")


def test_a_stall_while_a_dependency_is_down_is_explained_not_restarted(served):
    health, port = served
    health.dependency("sage100", up=False, detail="circuit open")
    health.waiting("sage-source", pending=1)
    time.sleep(0.4)
    live, ready, status = _probes(port)
    assert (live, ready, status) == (200, 503, "degraded")
    _, report = _get(port, "/healthz/live")
    assert "while sage100 is down" in report["components"]["sage-source"]["detail"]  # type: ignore[index]


def test_a_deliberate_wait_is_degraded_until_it_should_have_ended(served):
    health, port = served
    health.progress("salesforce-sink")
    health.blocked("salesforce-sink", pending=5, seconds=0.5, reason="backpressure: paused 1 s")
    time.sleep(0.4)  # past stall_after, but within the announced wait
    assert _probes(port) == (200, 503, "degraded")
    time.sleep(0.5)  # the wait is over and no progress followed: a stall
    assert _probes(port)[:2] == (503, 503)


def test_metrics_scrape_refreshes_the_health_gauge(served):
    health, port = served
    health.dependency("kafka/registry", up=False, detail="x")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert 'sagesf_health_state{component="kafka/registry"} 1.0' in body


# --- SinkLoop on the real broker --------------------------------------------------------------


def _sample(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _fill(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, f"v{i}".encode(), f"k{i}".encode())
    assert producer.flush(30) == 0


def _loop(
    kafka: KafkaSettings, topic: str, stage: str, handler, health: Health, batch_size: int = 500
) -> SinkLoop:
    # these sinks answer nothing and dead-letter raw bytes: the registry is never asked
    registry = SchemaRegistryClient({"url": "http://127.0.0.1:9"})
    publisher = CanonicalPublisher(
        ConfirmedProducer(kafka),
        registry,
        stage=stage,
        auto_register=False,
        dead_letter_topic=f"dlq.{stage}.v1",
    )
    return SinkLoop(
        kafka=kafka,
        group_id=f"health-{uuid.uuid4().hex[:8]}",
        topics=[topic],
        sink=FunctionSink(handler, stage),
        publisher=publisher,
        batch_size=batch_size,
        batch_timeout=0.5,
        health=health,
        extra_config=FAST_GROUP,
    )


@pytest.mark.integration
def test_consumer_lag_is_exported_and_reported_as_pending_work(kafka_bootstrap, new_topic):
    topic = new_topic("lag", partitions=2)
    _fill(kafka_bootstrap, topic, 30)
    stage = f"lag-{uuid.uuid4().hex[:6]}"
    health = Health(stall_after=60)
    seen: list[int] = []

    def handler(batch: Sequence[Inbound]) -> list[None]:
        seen.append(len(batch))
        return [None] * len(batch)

    loop = _loop(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), topic, stage, handler, health, batch_size=1
    )

    def lags() -> list[float | None]:
        return [
            _sample(
                "sagesf_consumer_lag",
                {"stage": stage, "group": loop.group_id, "topic": topic, "partition": str(p)},
            )
            for p in (0, 1)
        ]

    try:
        deadline = time.monotonic() + 30
        while (None in lags() or not seen) and time.monotonic() < deadline:
            loop.run_once()
        # both partitions known: the lag is exactly what has not been handled yet
        assert None not in lags(), lags()
        assert sum(lags()) == 30 - sum(seen) > 0  # type: ignore[arg-type]
        assert health.report()[1][stage]["pending"] == 30 - sum(seen)
        while sum(seen) < 30 and time.monotonic() < deadline:
            loop.run_once()
        assert sum(seen) == 30
        loop.run_once()
        for partition in (0, 1):
            labels = {"stage": stage, "group": loop.group_id, "topic": topic, "partition": str(partition)}
            assert _sample("sagesf_consumer_lag", labels) == 0
        assert health.report()[0] == "ok"
        count = _sample("sagesf_end_to_end_latency_seconds_count", {"stage": stage})
        assert count == 30
        total = _sample("sagesf_end_to_end_latency_seconds_sum", {"stage": stage})
        assert total is not None
        assert 0 < total < 30 * 60, "ages from the records' Kafka timestamps"
    finally:
        loop.close()
    labels = {"stage": stage, "group": loop.group_id, "topic": topic, "partition": "0"}
    assert _sample("sagesf_consumer_lag", labels) is None, "a closed loop leaves no stale lag"


@pytest.mark.integration
def test_a_handler_that_hangs_turns_liveness_red_and_backpressure_does_not(kafka_bootstrap, new_topic):
    topic = new_topic("stall")
    _fill(kafka_bootstrap, topic, 3)
    health = Health(stall_after=1.0)
    server = MetricsServer(health, port=0)
    release = threading.Event()
    calls = 0

    def handler(batch: Sequence[Inbound]) -> list[None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Backpressure("REQUEST_LIMIT_EXCEEDED", retry_after=2.0)
        release.wait(30)  # a call that does not return: a stalled consumer
        return [None] * len(batch)

    stage = f"stall-{uuid.uuid4().hex[:6]}"
    loop = _loop(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic, stage, handler, health)
    worker = threading.Thread(
        target=lambda: [loop.run_once() for _ in range(40) if not release.is_set()], daemon=True
    )
    try:
        worker.start()
        deadline = time.monotonic() + 30
        while calls == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # paused on backpressure longer than stall_after: alive, not ready
        live, ready, status = _probes(server.port)
        assert (live, ready, status) == (200, 503, "degraded")
        while calls < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # now inside the hanging call for longer than stall_after
        live, ready, status = _probes(server.port)
        assert (live, status) == (503, "unhealthy")
    finally:
        release.set()
        worker.join(30)
        loop.close()
        server.stop()
