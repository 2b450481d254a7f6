"""Helpers for the Sage 100 source tests: a capturing publisher, a settable clock, positions in memory."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastavro import schemaless_writer

from connectors.sage100.streams import Group, OutRecord, Stream
from sagesf.errors import Permanent
from sagesf.schemas import load_schema


def value(record: OutRecord) -> dict[str, Any]:
    """The value of a record that is not a tombstone."""
    assert record.value is not None
    return record.value


class CapturingPublisher:
    """Records what the source would produce; every value must serialise with its Avro schema."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []  # acknowledged
        self.sent: list[OutRecord] = []  # handed over, not yet acknowledged
        self.dead: list[tuple[Stream, Group, Permanent]] = []
        self.fail_next = 0

    def publish(self, records: Sequence[OutRecord]) -> None:
        for rec in records:
            if rec.value is not None:
                schemaless_writer(io.BytesIO(), load_schema(rec.schema), rec.value)
        self.sent.extend(records)

    def confirm(self) -> None:
        sent, self.sent = self.sent, []
        if self.fail_next:
            from sagesf.producer import ProduceFailed

            self.fail_next -= 1
            raise ProduceFailed("simulated: Kafka did not acknowledge")  # lost on the way
        self.records.extend(sent)

    def dead_letter(self, items: Sequence[tuple[Stream, Group, Permanent]]) -> None:
        self.dead.extend(items)

    def take(self) -> list[OutRecord]:
        out, self.records = self.records, []
        return out


@dataclass
class MemoryPositions:
    stored: dict[str, Any] = field(default_factory=dict)
    puts: int = 0

    def get(self, stream: str) -> Any:
        return self.stored.get(stream)

    def put(self, stream: str, position: Any) -> None:
        self.stored[stream] = position
        self.puts += 1


class Clock:
    """A UTC clock tests move by hand; `local()` is the Sage server's wall clock in `zone`."""

    def __init__(self, start: datetime, zone: ZoneInfo) -> None:
        self.now = start.astimezone(UTC)
        self.zone = zone

    def utc(self) -> datetime:
        return self.now

    def local(self) -> datetime:
        return self.now.astimezone(self.zone).replace(tzinfo=None)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
