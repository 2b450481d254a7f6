"""A connector under test: its adapter, its real process, and the Kafka side the suite checks.

`SinkUnderTest` sends the adapter's commands (Avro, through the registry, as a producer of
commands would) and reads the answers, the dead letters and the committed offset;
`SourceUnderTest` reads the canonical topics the adapter's changes land on. Both start the
component as `sagesf run <component>` with the adapter's environment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from confluent_kafka.schema_registry import SchemaRegistryClient

from sagesf.config import KafkaSettings
from sagesf.producer import ConfirmedProducer, Delivered
from sagesf.serde import AvroSerde
from sagesf.topic_scan import ScannedRecord
from tests.conformance.processes import ComponentProcess, wait_until
from tests.conformance.protocol import Change, Command, SinkAdapter, SourceAdapter, Stack
from tests.kit.kafka import committed, read_topic

__all__ = ["SinkUnderTest", "SourceUnderTest"]


def core_env(stack: Stack) -> dict[str, str]:
    """The settings every sagesf process shares: this test's broker and registry."""
    return {
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap,
        "SAGESF_REGISTRY__URL": stack.registry_url,
        "SAGESF_REGISTRY__AUTO_REGISTER": "true",
    }


class SinkUnderTest:
    """A sink connector's adapter and process, and its topics seen from Kafka."""

    def __init__(self, adapter: SinkAdapter, stack: Stack) -> None:
        self.adapter = adapter
        self.stack = stack
        self.topics = adapter.topics
        self.process = ComponentProcess(
            adapter.component, {**core_env(stack), **adapter.env()}, stack.tmp_path
        )
        registry = SchemaRegistryClient({"url": stack.registry_url})
        self._keys = AvroSerde.string_key(registry, self.topics.commands, auto_register=True)
        self._values = AvroSerde.canonical(
            registry, adapter.command_schema, self.topics.commands, auto_register=True
        )
        self._result_keys = AvroSerde.string_key(registry, self.topics.results, auto_register=True)
        self._results = AvroSerde.canonical(
            registry, adapter.result_schema, self.topics.results, auto_register=True
        )
        self._producer = ConfirmedProducer(KafkaSettings(bootstrap_servers=stack.bootstrap))

    def send(self, commands: Iterable[Command]) -> list[Delivered]:
        """Put commands on the sink's command topic; where each landed, once Kafka has them all."""
        for command in commands:
            key, value = self.encoded(command)
            self._producer.send(self.topics.commands, value, key)
        return self._producer.confirm()

    def encoded(self, command: Command) -> tuple[bytes, bytes]:
        """A command's Kafka key and value bytes, as `send` produced them."""
        return self._keys.encode(command.key), self._values.encode(command.value)

    def answers(self) -> list[str]:
        """The keys of the answers on the results topic, in order (an answer carries its command's
        key); every answer must decode with the adapter's result schema."""
        records = read_topic(self.stack.bootstrap, self.topics.results)
        for record in records:
            assert self._results.decode(record.value) is not None, f"an empty answer at {record.position}"
        return [str(self._result_keys.decode(r.key)) for r in records if r.key is not None]

    def wait_for_answers(self, expected: int, timeout: float = 60.0) -> None:
        def answered() -> bool:
            assert self.process.running(), f"the sink exited:\n{self.process.log_tail()}"
            return len(read_topic(self.stack.bootstrap, self.topics.results)) >= expected

        try:
            wait_until(answered, timeout, f"{expected} answers on {self.topics.results}", every=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.process.log_tail()}") from None

    def dead_letters(self, expected: int = 0) -> list[ScannedRecord]:
        return read_topic(self.stack.bootstrap, self.topics.dead_letters, expected=expected, timeout=15)

    def committed(self) -> int:
        """The offset the sink's group committed on its command topic (below 0: nothing)."""
        return committed(self.stack.bootstrap, self.topics.group, self.topics.commands)[0]

    def close(self) -> None:
        self.process.stop()
        self._producer.close()
        self.adapter.close()


class SourceUnderTest:
    """A source connector's adapter and process, and the topics its changes land on."""

    def __init__(self, adapter: SourceAdapter, stack: Stack) -> None:
        self.adapter = adapter
        self.stack = stack
        self.process = ComponentProcess(
            adapter.component, {**core_env(stack), **adapter.env()}, stack.tmp_path
        )
        self._registry = SchemaRegistryClient({"url": stack.registry_url})

    def start(self, timeout: float = 45.0) -> None:
        """Start the process and wait until it says it reads its system."""
        self.process.start()
        self.process.wait_ready(self.adapter.ready, timeout)

    def keys(self, topic: str) -> list[str]:
        """The keys of every record on one of its topics, in order, decoded as any consumer would."""
        serde = AvroSerde.string_key(self._registry, topic, auto_register=True)
        return [
            str(serde.decode(r.key)) for r in read_topic(self.stack.bootstrap, topic) if r.key is not None
        ]

    def times_published(self, changes: Sequence[Change]) -> Counter[str]:
        """How many records each of `changes` has on its topic."""
        counts: Counter[str] = Counter()
        for topic in {c.topic for c in changes}:
            counts.update(self.keys(topic))
        return Counter({c.key: counts[c.key] for c in changes})

    def published(self, changes: Sequence[Change]) -> set[str]:
        """The keys of `changes` that have a record on their topic."""
        found: set[str] = set()
        for topic in {c.topic for c in changes}:
            found |= set(self.keys(topic))
        return {c.key for c in changes} & found

    def wait_published(self, changes: Sequence[Change], timeout: float = 45.0) -> None:
        """Until every change has its record; AssertionError naming the missing ones otherwise."""
        missing: set[str] = set()

        def all_there() -> bool:
            nonlocal missing
            missing = {c.key for c in changes} - self.published(changes)
            return not missing

        try:
            wait_until(all_there, timeout, f"{len(changes)} changes published", every=0.3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; missing {sorted(missing)}\n{self.process.log_tail()}") from None

    def dead_letters(self, expected: int = 0) -> list[ScannedRecord]:
        return read_topic(
            self.stack.bootstrap, self.adapter.topics.dead_letters, expected=expected, timeout=30
        )

    def close(self) -> None:
        self.process.stop()
        self.adapter.close()
