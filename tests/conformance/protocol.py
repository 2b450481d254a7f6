"""What the conformance suite needs to know about a connector: the adapter protocols.

A connector joins the suite by writing one adapter (a `SinkAdapter` or a `SourceAdapter`) and one
line in test_conformance.py. The adapter speaks for its target system (how to make a command or
a change, how to count what it did, how to make the system refuse) and says how its component is
started (`component`, `env()`); the suite does the Kafka side, starts the real process and
decides what passes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

__all__ = [
    "DATA",
    "FAST_CONSUMER_GROUP",
    "Change",
    "Command",
    "Refused",
    "SinkAdapter",
    "SinkTopics",
    "SourceAdapter",
    "SourceTopics",
    "Stack",
    "Unmappable",
    "load_data",
]

DATA = Path(__file__).parent / "data"
# a sink's consumer group notices a killed member within seconds (sagesf's defaults are production's)
FAST_CONSUMER_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def load_data(name: str) -> dict[str, Any]:
    """The small data file `data/<name>.yaml` of a case or an adapter."""
    loaded = yaml.safe_load((DATA / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"data/{name}.yaml must hold a mapping"
    return loaded


@dataclass(frozen=True)
class Stack:
    """What the suite gives an adapter: the real broker and registry, a maker of per-test topics
    (`new_topic(prefix, partitions=1, config=None)`), a scratch directory, and `fixture(name)` for
    the adapter's own pytest fixtures (`sage_db`, `salesforce_emulator`, ...)."""

    bootstrap: str
    registry_url: str
    new_topic: Callable[..., str]
    tmp_path: Path
    fixture: Callable[[str], Any]


@dataclass(frozen=True)
class Command:
    """One command for a sink: its Kafka key and its value (a dict of the adapter's command schema)."""

    key: str
    value: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    """A command the target refuses for good, and words its dead letter's exception message holds."""

    command: Command
    reason: tuple[str, ...]


@dataclass(frozen=True)
class SinkTopics:
    """A sink's per-test topics and consumer group."""

    commands: str
    results: str
    dead_letters: str
    group: str


class SinkAdapter(Protocol):
    """One sink connector as the conformance suite drives it.

    `component` is what `sagesf run` starts, `stage` the name its dead letters and health carry,
    `env()` every `SAGESF_*` variable the component needs beyond Kafka, registry and metrics
    (`topics` named in it; short batch windows and pauses, a fast-failing consumer group).
    `command(i)` is command number i: different i, different targets; the same i twice, the same
    command (so it can be sent again). `effects(i)` counts what command i made in the target
    system (an order, a record): 0 before it is written, 1 after, and 1 however often it is
    redelivered. `refused(i)` is a command the target turns down for good. `refusing()` makes the
    target refuse every write for as long as the block lasts (rate limit, lock), so that a sink
    must wait; it must not refuse `effects`, which the suite calls only outside the block.
    """

    component: str
    stage: str
    command_schema: str
    result_schema: str
    topics: SinkTopics

    def env(self) -> dict[str, str]: ...

    def command(self, i: int) -> Command: ...

    def effects(self, i: int) -> int: ...

    def refused(self, i: int) -> Refused: ...

    def refusing(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Change:
    """A change made in a source system and where its canonical record shows up: `topic` (this
    test's topic), `schema` (the canonical schema) and the record's `key`."""

    topic: str
    schema: str
    key: str


@dataclass(frozen=True)
class Unmappable:
    """A change the source cannot map: its dead letter's Kafka key, the words its exception
    message holds, and the canonical record that must not appear."""

    change: Change
    dead_letter_key: bytes
    reason: tuple[str, ...]


@dataclass(frozen=True)
class SourceTopics:
    """A source's per-test dead-letter and positions topics (its canonical topics are the
    adapter's, named in its `Change`s)."""

    dead_letters: str
    positions: str


class SourceAdapter(Protocol):
    """One source connector as the conformance suite drives it.

    `component` is what `sagesf run` starts, `stage` the name its dead letters carry, `env()`
    every `SAGESF_*` variable it needs beyond Kafka, registry and metrics (its own topics,
    positions component and short poll intervals).
    `ready(health)` says from the /healthz document that it reads its system. `change(i)` makes
    user change number i in the system (a new entity each time, so its key is new) and says
    where its record will be; `own_change(i)` makes one as the integration itself (an echo);
    `unmappable(i)` one the source cannot map. The suite may call `change` from another thread.
    """

    component: str
    stage: str
    topics: SourceTopics

    def env(self) -> dict[str, str]: ...

    def ready(self, health: dict[str, Any]) -> bool: ...

    def change(self, i: int) -> Change: ...

    def own_change(self, i: int) -> Change: ...

    def unmappable(self, i: int) -> Unmappable: ...

    def close(self) -> None: ...
