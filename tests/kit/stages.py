"""Driving the pipeline's loops in tests: until a condition holds, in the background, or without
Kafka (a capturing publisher and positions in memory for a source's own logic)."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastavro import schemaless_writer

from sagesf.producer import ProduceFailed
from sagesf.publisher import CanonicalRecord, DeadLetterItem
from sagesf.schemas import load_schema
from sagesf.sink import Inbound

__all__ = ["CapturingPublisher", "FunctionSink", "MemoryPositions", "in_background", "run_until"]


class Loop(Protocol):
    def run_once(self) -> int: ...

    def run(self, stop: threading.Event) -> None: ...


def run_until(loop: Loop, done: Callable[[], bool], timeout: float = 60.0, what: str = "the loop") -> None:
    """Run `loop` one step at a time until `done()`; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} did not finish within {timeout:.0f} s"
        loop.run_once()


@contextlib.contextmanager
def in_background(loop: Loop) -> Iterator[threading.Event]:
    """Run `loop` on a thread for the `with` block; stops and joins it at the end."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            loop.run(stop)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, f"the loop failed: {failures[0]!r}"


class FunctionSink:
    """A sagesf.sink Sink made of a function, for tests of the sink loop itself."""

    def __init__(self, write: Callable[[Sequence[Inbound]], Any], name: str = "test-stage") -> None:
        self.name = name
        self._write = write

    def write(self, batch: Sequence[Inbound]) -> Any:
        return self._write(batch)


class CapturingPublisher:
    """Stands in for sagesf.publisher.CanonicalPublisher: captures what a source would publish.

    Every value must serialise with its Avro schema, as the real publisher requires. `fail_next`
    makes that many confirms fail (Kafka did not acknowledge): what was sent since the last
    confirm is lost, as it would be.
    """

    def __init__(self) -> None:
        self.records: list[CanonicalRecord] = []  # acknowledged
        self.sent: list[CanonicalRecord] = []  # handed over, not yet acknowledged
        self.dead: list[DeadLetterItem] = []
        self.fail_next = 0

    def send(self, record: CanonicalRecord) -> None:
        if record.value is not None:
            schemaless_writer(io.BytesIO(), load_schema(record.schema), record.value)
        self.sent.append(record)

    def dead_letter(self, items: Sequence[DeadLetterItem]) -> None:
        self.dead.extend(items)

    def confirm(self) -> None:
        sent, self.sent = self.sent, []
        if self.fail_next:
            self.fail_next -= 1
            raise ProduceFailed("simulated: Kafka did not acknowledge")  # lost on the way
        self.records.extend(sent)

    def take(self) -> list[CanonicalRecord]:
        out, self.records = self.records, []
        return out


@dataclass
class MemoryPositions:
    """Stands in for sagesf.positions.PositionStore."""

    stored: dict[str, Any] = field(default_factory=dict)
    puts: int = 0

    def put_many(self, positions: dict[str, Any]) -> None:
        self.stored.update(positions)
        self.puts += 1

    def load(self) -> dict[str, Any]:
        return dict(self.stored)

    def get(self, stream: str) -> Any:
        return self.stored.get(stream)
