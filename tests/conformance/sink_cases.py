"""The behaviours every sink has, one small class each; `SINK_CASES` is the suite.

Each case runs the real component (`sagesf run <component>`) against the real broker and the
real target, through the connector's `SinkAdapter`, with the numbers of its data file
`data/<name>.yaml`.
"""

from __future__ import annotations

import signal
import time
from functools import cached_property
from typing import Any, ClassVar

from tests.conformance.harness import SinkUnderTest
from tests.conformance.processes import CRASH_AFTER_THE_WRITE, CRASHED_AFTER_THE_WRITE, wait_until
from tests.conformance.protocol import load_data

__all__ = [
    "SINK_CASES",
    "BackpressurePausesAndLosesNothing",
    "CrashBetweenWriteAndCommitMakesNoDuplicate",
    "IdenticalCommandsMakeOneEffect",
    "PermanentFailureIsDeadLetteredAndTheNextIsWritten",
    "SinkCase",
]


class SinkCase:
    """One behaviour every sink has; `name` names its test and its data file."""

    name: ClassVar[str]

    @cached_property
    def data(self) -> dict[str, Any]:
        return load_data(self.name)

    def test(self, sink: SinkUnderTest) -> None:
        raise NotImplementedError


def committed_all(sink: SinkUnderTest, offset: int) -> None:
    wait_until(lambda: sink.committed() >= offset, 30, f"{sink.topics.group} committed up to {offset}")


class IdenticalCommandsMakeOneEffect(SinkCase):
    """The same command five times makes one effect in the target, five answers and no dead letter."""

    name = "identical_commands_make_one_effect"

    def test(self, sink: SinkUnderTest) -> None:
        copies, command = self.data["copies"], sink.adapter.command(0)
        sink.send([command] * copies)

        sink.process.start()
        sink.wait_for_answers(copies)
        committed_all(sink, copies)
        sink.process.stop()

        assert sink.adapter.effects(0) == 1
        assert sink.answers() == [command.key] * copies
        assert sink.dead_letters() == []


class PermanentFailureIsDeadLetteredAndTheNextIsWritten(SinkCase):
    """A command the target refuses for good goes to the dead-letter topic, unchanged, with Kafka
    Connect's error headers saying where it came from and why; the command after it is written."""

    name = "permanent_failure_is_dead_lettered_and_the_next_is_written"

    def test(self, sink: SinkUnderTest) -> None:
        refused, good = sink.adapter.refused(0), sink.adapter.command(1)
        at, _ = sink.send([refused.command, good])

        sink.process.start()
        wait_until(lambda: sink.adapter.effects(1) == 1, 60, "the command after the refused one written")
        committed_all(sink, at.offset + 2)
        sink.process.stop()

        [letter] = sink.dead_letters(expected=1)
        expected = {
            "__connect.errors.topic": sink.topics.commands,
            "__connect.errors.partition": str(at.partition),
            "__connect.errors.offset": str(at.offset),
            "__connect.errors.connector.name": sink.adapter.stage,
            "__connect.errors.stage": self.data["stage"],
        }
        assert {name: letter.header_text(name) for name in expected} == expected
        message = letter.header_text("__connect.errors.exception.message") or ""
        assert all(word in message for word in refused.reason), message
        assert (letter.key, letter.value) == sink.encoded(refused.command)  # the original bytes
        assert sink.adapter.effects(0) == 0


class CrashBetweenWriteAndCommitMakesNoDuplicate(SinkCase):
    """A sink killed (SIGKILL) after its write and before its answer and offset commit writes
    nothing twice: the command comes back to a fresh process of the same group, which finds it
    done, answers it and commits."""

    name = "crash_between_write_and_commit_makes_no_duplicate"

    def test(self, sink: SinkUnderTest) -> None:
        command = sink.adapter.command(0)
        sink.send([command])

        sink.process.start(script=CRASH_AFTER_THE_WRITE)
        returncode = sink.process.wait_exit(self.data["crash_within_seconds"])

        assert returncode == -signal.SIGKILL, sink.process.log_tail()
        assert CRASHED_AFTER_THE_WRITE in sink.process.log_text()  # killed there, not elsewhere
        assert sink.adapter.effects(0) == 1  # the write happened before the kill
        assert sink.answers() == []
        assert sink.committed() < 1

        sink.process.start()
        sink.wait_for_answers(1)
        committed_all(sink, 1)
        sink.process.stop()

        assert sink.adapter.effects(0) == 1
        assert sink.answers() == [command.key]
        assert sink.dead_letters() == []


class BackpressurePausesAndLosesNothing(SinkCase):
    """While the target refuses (rate limit, lock) the sink reports its stage degraded, answers
    nothing and dead-letters nothing; afterwards every command sent meanwhile is written once."""

    name = "backpressure_pauses_and_loses_nothing"

    def test(self, sink: SinkUnderTest) -> None:
        stage = sink.adapter.stage
        commands = [sink.adapter.command(i) for i in range(self.data["commands"])]
        sink.process.start()
        wait_until(lambda: sink.process.stage_status(stage) == "ok", 45, f"{stage} running")

        with sink.adapter.refusing():
            sink.send(commands)
            wait_until(
                lambda: sink.process.stage_status(stage) == "degraded", 30, f"{stage} degraded", every=0.05
            )
            time.sleep(self.data["refuse_seconds"])  # refused a while longer: the sink keeps waiting
            assert sink.process.running(), sink.process.log_tail()
            assert sink.answers() == []

        sink.wait_for_answers(len(commands))
        committed_all(sink, len(commands))
        wait_until(lambda: sink.process.stage_status(stage) == "ok", 30, f"{stage} healthy again")
        sink.process.stop()

        assert [sink.adapter.effects(i) for i in range(len(commands))] == [1] * len(commands)
        assert sorted(sink.answers()) == sorted(c.key for c in commands)
        assert sink.dead_letters() == []


SINK_CASES: tuple[type[SinkCase], ...] = (
    IdenticalCommandsMakeOneEffect,
    PermanentFailureIsDeadLetteredAndTheNextIsWritten,
    CrashBetweenWriteAndCommitMakesNoDuplicate,
    BackpressurePausesAndLosesNothing,
)
