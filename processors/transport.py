"""The processors' Kafka transport: faust's aiokafka driver, with a seek that always seeks.

Why it exists: after a rebalance (a worker started, killed or restarted) faust rebuilds its tables
and then puts every input partition back at its committed offset (`Consumer.perform_seek`, which
calls aiokafka's `seek_to_committed`). aiokafka 0.14 only seeks when the committed offset is
above 0; a partition committed at 0, or never committed, keeps whatever position the fetcher
reached while faust was recovering. faust fetches input records during recovery and drops them
(the partitions are being paused), so such a partition silently resumes AFTER them: the records
are never processed. Seen as: kill -9 of the processors on a fresh sandbox while the Sage sink
writes a backlog -> the orders exist in Sage, their results sit in sage.results.v1 and no order
number ever reaches Salesforce (tests/e2e/test_order_automation.py).

What it does: after faust's seek, every input partition (a topic whose offsets faust commits,
i.e. one an agent reads) whose committed offset is 0 is sought to 0, and one with no committed
offset to where the group's reset policy says (`earliest`: its first offset; `latest`: left at
the fetcher's position, which is what `latest` means). Changelog partitions and faust's own
topics are left alone: faust reads them from the offsets it tracks itself.

How it is installed: `SeekingApp` is the faust App class of the processors; it builds its
consumer transport from `Transport` below instead of faust's URL lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

__all__ = ["SeekingApp", "SeekingConsumer", "Transport", "unsought"]


def unsought(
    committed: Mapping[Any, int | None], is_input: Callable[[str], bool]
) -> tuple[list[Any], list[Any]]:
    """The input partitions aiokafka's seek_to_committed did not move: (committed at 0, never committed)."""
    inputs = {tp: offset for tp, offset in committed.items() if is_input(tp.topic)}
    at_zero = sorted((tp for tp, offset in inputs.items() if offset == 0), key=str)
    never = sorted((tp for tp, offset in inputs.items() if offset is None or offset < 0), key=str)
    return at_zero, never


class SeekingConsumer(faust_aiokafka.Consumer):  # faust is untyped: Any
    """faust's aiokafka consumer whose seek_to_committed also seeks offset 0 and uncommitted partitions."""

    async def seek_to_committed(self) -> Mapping[Any, int]:
        committed: Mapping[Any, int] = await super().seek_to_committed()
        at_zero, never = unsought(committed, self.app.topics.acks_enabled_for)
        if at_zero:
            await self._thread.seek_wait({tp: 0 for tp in at_zero})
        if never and self.app.conf.consumer_auto_offset_reset == "earliest":
            await self._thread.seek_to_beginning(*never)
        if at_zero or never:
            log.info(
                "input partitions sought to 0: %d; without a committed offset: %d", len(at_zero), len(never)
            )
        return committed


class Transport(faust_aiokafka.Transport):
    Consumer = SeekingConsumer


class SeekingApp(faust.App):
    """A faust App whose consumer is `SeekingConsumer` (see the module doc)."""

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)
