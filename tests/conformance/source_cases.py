"""The behaviours every source has, one small class each; `SOURCE_CASES` is the suite.

Each case runs the real component (`sagesf run <component>`) against the real broker and the
real source system, through the connector's `SourceAdapter`, with the numbers of its data file
`data/<name>.yaml`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar

from tests.conformance.harness import SourceUnderTest
from tests.conformance.processes import wait_until
from tests.conformance.protocol import Change, load_data

__all__ = [
    "SOURCE_CASES",
    "KillNineLosesNoChange",
    "OwnWritesDoNotComeBack",
    "RestartResumesFromItsCheckpoint",
    "SourceCase",
    "UnmappableChangeIsDeadLetteredAndTheNextPublished",
]


class SourceCase:
    """One behaviour every source has; `name` names its test and its data file."""

    name: ClassVar[str]

    @cached_property
    def data(self) -> dict[str, Any]:
        return load_data(self.name)

    def test(self, source: SourceUnderTest) -> None:
        raise NotImplementedError


class KillNineLosesNoChange(SourceCase):
    """Changes made before a kill -9 of the source, while it dies, while it is down and after its
    restart all reach the canonical topic (some perhaps twice, none lost)."""

    name = "kill_nine_loses_no_change"

    def test(self, source: SourceUnderTest) -> None:
        plan, numbers = self.data, itertools.count()

        def changes(count: int) -> list[Change]:
            return [source.adapter.change(next(numbers)) for _ in range(count)]

        source.start()
        before = changes(plan["before"])
        source.wait_published(before)
        around = self.killed_while_changing(source, lambda: changes(1)[0])
        down = changes(plan["while_down"])
        source.start()
        after = changes(plan["after"])

        source.wait_published([*before, *around, *down, *after])

    def killed_while_changing(self, source: SourceUnderTest, change: Callable[[], Change]) -> list[Change]:
        """Changes made on another thread, `pause_seconds` apart; kill -9 after `kill_after` of them."""
        made: list[Change] = []
        kill_now = threading.Event()
        failures: list[BaseException] = []

        def keep_changing() -> None:
            try:
                for n in range(1, self.data["around"] + 1):
                    made.append(change())
                    if n == self.data["kill_after"]:
                        kill_now.set()
                    time.sleep(self.data["pause_seconds"])
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                kill_now.set()

        writer = threading.Thread(target=keep_changing)
        writer.start()
        kill_now.wait(30)
        source.process.kill()
        writer.join(60)
        assert not failures, failures
        return made


class RestartResumesFromItsCheckpoint(SourceCase):
    """A source killed -9 after its changes were published and checkpointed resumes from the
    checkpoint: it publishes none of them again, and the change after the restart once."""

    name = "restart_resumes_from_its_checkpoint"

    def test(self, source: SourceUnderTest) -> None:
        source.start()
        before = [source.adapter.change(i) for i in range(self.data["before"])]
        source.wait_published(before)
        time.sleep(self.data["settle_seconds"])  # the position follows the acknowledgement
        source.process.kill()
        source.start()
        after = source.adapter.change(self.data["before"])
        source.wait_published([after])
        time.sleep(self.data["settle_seconds"])  # a replay from an older position would show by now

        assert source.times_published([*before, after]) == {c.key: 1 for c in [*before, after]}


class OwnWritesDoNotComeBack(SourceCase):
    """Changes the integration itself made produce no record; a user's change made after them
    does (so the source did read past them)."""

    name = "own_writes_do_not_come_back"

    def test(self, source: SourceUnderTest) -> None:
        source.start()
        own = [source.adapter.own_change(i) for i in range(self.data["own"])]
        user = source.adapter.change(self.data["own"])

        source.wait_published([user])
        time.sleep(self.data["settle_seconds"])  # anything the own changes caused has arrived by now

        assert source.published(own) == set()


class UnmappableChangeIsDeadLetteredAndTheNextPublished(SourceCase):
    """A change the source cannot map goes to its dead-letter topic with the reason, and is not
    published; the change after it is."""

    name = "unmappable_change_is_dead_lettered_and_the_next_published"

    def test(self, source: SourceUnderTest) -> None:
        source.start()
        bad = source.adapter.unmappable(0)
        good = source.adapter.change(1)

        source.wait_published([good])
        wait_until(lambda: len(source.dead_letters()) >= 1, 30, "the dead letter")

        [letter] = [d for d in source.dead_letters() if d.key == bad.dead_letter_key]
        assert letter.header_text("__connect.errors.stage") == self.data["stage"]
        assert letter.header_text("__connect.errors.connector.name") == source.adapter.stage
        message = letter.header_text("__connect.errors.exception.message") or ""
        assert all(word in message for word in bad.reason), message
        assert letter.value, "the dead letter carries the original"
        assert source.published([bad.change]) == set()


SOURCE_CASES: tuple[type[SourceCase], ...] = (
    KillNineLosesNoChange,
    RestartResumesFromItsCheckpoint,
    OwnWritesDoNotComeBack,
    UnmappableChangeIsDeadLetteredAndTheNextPublished,
)
