"""What the Sage 100 source tests share beyond tests/kit: a settable clock, one table's poller as a
source, and making polls and sweeps due without waiting for their intervals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sage100.polling import ChangePoller
from connectors.sage100.source import STAGE, SageSource
from sagesf.publisher import CanonicalRecord
from sagesf.source import SourceBatch


def key(record: CanonicalRecord) -> str:
    """The key of a record (every Sage record has one)."""
    assert record.key is not None
    return record.key


def value(record: CanonicalRecord) -> dict[str, Any]:
    """The value of a record that is not a tombstone."""
    assert record.value is not None
    return record.value


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


class PollerSource:
    """One table's `ChangePoller` as a sagesf `Source`: every `read()` is one poll (what
    `SageSource` does for each due table, without its schedule, breaker and metrics)."""

    name = STAGE

    def __init__(self, poller: ChangePoller) -> None:
        self.poller = poller

    def read(self) -> Iterator[SourceBatch]:
        return self.poller.read()


def make_due(source: SageSource, *, sweep: bool = False) -> None:
    """Make every table's poll (and, with `sweep`, its key sweep) due now, as if its interval had
    passed: the next `read()` then polls (and sweeps) every table."""
    for entry in source.tables.values():
        entry.next_poll = 0.0
        if sweep:
            entry.next_sweep = 0.0
