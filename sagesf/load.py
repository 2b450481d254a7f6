"""The initial load's contract: what a source's `load` hook returns, and how the core runs it.

A load (`sagesf load salesforce|sage`, sagesf/cli/load.py) publishes what a system already holds,
as its live source would publish it, and then hands over to that source. The connector owns what
is read and where the hand-over starts (sagesf.runner `Component.load` builds an `InitialLoad`);
the core owns running it: the same `SourceLoop` as a live source (publish, confirm, store the
position, in that order), retried through outages, its progress shown as it goes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sagesf.config import ConfigError
from sagesf.errors import Backpressure, Retriable
from sagesf.positions import PositionStore
from sagesf.retry import RetriesExhausted, RetryPolicy
from sagesf.source import PositionWriter, Publisher, Source, SourceLoop

__all__ = [
    "HISTORY_BEFORE_GO_LIVE",
    "HISTORY_HEADER",
    "RUN_STREAM",
    "InitialLoad",
    "LoadPart",
    "LoadProgress",
    "LoadRequest",
    "stored_progress",
]

log = logging.getLogger(__name__)

# An order a load publishes that was won (or activated) before the go-live: Sage has it already,
# entered by hand. The processors keep it as history and never order it (processors/orders.py).
HISTORY_HEADER = "sagesf.history"
HISTORY_BEFORE_GO_LIVE = b"before-go-live"
# the stream of a load's own positions that holds the run as a whole: its options, `finished`
RUN_STREAM = "run"


@dataclass(frozen=True)
class LoadRequest:
    """What the user asked of a load (the command's options)."""

    since: date | None = None  # orders dated on or after this day; None: all of them
    go_live: date | None = None  # orders dated on or after it are new orders; None: all are history
    restart: bool = False  # forget a finished or interrupted load and load everything again

    def options(self) -> dict[str, str | None]:
        """What a load of orders keeps with its run and must be the same when it resumes, as text."""
        return {
            name: day.isoformat() if day else None
            for name, day in (("since", self.since), ("go_live", self.go_live))
        }


@dataclass
class LoadPart:
    """One thing a load reads (an object, a table): how far it got, counted in records."""

    name: str
    total: int | None = None  # what the system said it holds, when it said
    published: int = 0  # records published so far, earlier runs included
    resumed_at: int = 0  # published by earlier runs when this one started
    dead_letters: int = 0
    done: bool = False


class LoadProgress:
    """The parts of a load and the notes for its user; `watch` is called on every change."""

    def __init__(self) -> None:
        self.parts: dict[str, LoadPart] = {}
        self.notes: list[str] = []
        self._watchers: list[Callable[[LoadPart], None]] = []

    def part(self, name: str) -> LoadPart:
        found = self.parts.get(name)
        if found is None:
            found = self.parts[name] = LoadPart(name)
        return found

    def changed(self, part: LoadPart) -> None:
        for watcher in self._watchers:
            watcher(part)

    def published(self) -> int:
        return sum(part.published for part in self.parts.values())

    def note(self, text: str) -> None:
        """Something the user must know once the load ends (the hand-over, a part skipped)."""
        log.info("%s", text)
        self.notes.append(text)

    def watch(self, watcher: Callable[[LoadPart], None]) -> None:
        self._watchers.append(watcher)


@dataclass
class InitialLoad:
    """A load ready to run, as a source component's `load` hook builds it.

    `source` yields `SourceBatch`es until everything is published; the positions of its
    checkpoints are where an interrupted load resumes (they go to `positions`, and a rerun built
    from them skips what is stored). It records the hand-over to the live source itself, and
    reports through `progress`. Its `name` is the live source's stage, so its dead letters go
    to the live source's dead-letter topic and `sagesf dlq replay` re-reads them.
    """

    source: Source
    publisher: Publisher
    positions: PositionWriter
    progress: LoadProgress = field(default_factory=LoadProgress)
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(initial=1.0, maximum=60.0, max_retry_seconds=600.0)
    )

    def run(self, stop: threading.Event) -> bool:
        """Publish everything; True once done, False when `stop` was set first.

        A `Retriable` failure (the system or Kafka away) is waited out with backoff and the load
        goes on from its last checkpoint, a `Backpressure` for its `retry_after`; after
        `retry.max_retry_seconds` of failures in a row `RetriesExhausted` is raised (run the
        command again later: it resumes). Anything else is raised at once.
        """
        loop = SourceLoop(self.source, self.publisher, self.positions)
        failures, failing_since, published = 0, 0.0, self.progress.published()
        while not stop.is_set():
            error: Exception
            try:
                loop.run_once(stop)
                return not stop.is_set()
            except Backpressure as exc:
                wait, error = exc.retry_after, exc
            except Retriable as exc:
                wait, error = exc.retry_after or self.retry.delay(failures), exc
            if self.progress.published() > published:  # it got further: a new failure, not the same one
                failures, failing_since, published = 0, 0.0, self.progress.published()
            failures += 1
            failing_since = failing_since or time.monotonic()
            limit = self.retry.max_retry_seconds
            if limit is not None and time.monotonic() - failing_since > limit:
                raise RetriesExhausted(f"still failing after {limit:.0f} s: {error}") from error
            log.warning("%s: %s; going on from the last checkpoint in %.1f s", self.source.name, error, wait)
            stop.wait(wait)
        return False


def stored_progress(store: PositionStore, request: LoadRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """Where a load resumes: its stored positions by stream, as the request allows.

    `--restart` forgets them (tombstones in positions.v1) and the load starts over. An unfinished
    load asked again with other `options` than it started with (`since`, `go_live`) is a
    `ConfigError`: finishing it with other options would mix two loads. A finished load is
    returned as it is: it publishes nothing again.
    """
    stored = store.load()
    if request.restart:
        for stream in stored:
            store.reset(stream)
        return {}
    run = stored.get(RUN_STREAM)
    if isinstance(run, dict) and not run.get("finished"):
        differs = [
            f"{name} {run.get(name) or 'none'}" for name, value in options.items() if run.get(name) != value
        ]
        if differs:
            raise ConfigError(
                f"an unfinished load of {store.component} started with {', '.join(differs)}: "
                "run it again with those options to finish it, or with --restart to start over"
            )
    return stored
