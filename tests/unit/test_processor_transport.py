"""Which partitions the processors' consumer seeks itself after aiokafka's seek_to_committed.

aiokafka 0.14 seeks only partitions committed above 0 (its `if offset and offset > 0`), so the
processors' consumer (processors/transport.py) must pick out the input partitions committed at 0
and those never committed, and leave changelogs and faust's internal topics alone. The whole
effect is shown end to end by the first test of tests/e2e/test_order_automation.py.
"""

from __future__ import annotations

from aiokafka.structs import TopicPartition

from processors.transport import unsought

INPUTS = {"sage.results.v1", "salesorder.v1"}


def test_input_partitions_at_zero_and_without_a_commit_are_picked_out() -> None:
    committed = {
        TopicPartition("sage.results.v1", 0): 0,
        TopicPartition("sage.results.v1", 1): 7,
        TopicPartition("sage.results.v1", 2): None,
        TopicPartition("salesorder.v1", 0): -1,
        TopicPartition("salesorder.v1", 1): 1,
        TopicPartition("sagesf-processors-order-state-changelog", 0): None,
        TopicPartition("sagesf-processors-__assignor-__leader", 0): 0,
    }
    at_zero, never = unsought(committed, INPUTS.__contains__)
    assert at_zero == [TopicPartition("sage.results.v1", 0)]
    assert never == [TopicPartition("sage.results.v1", 2), TopicPartition("salesorder.v1", 0)]


def test_nothing_to_do_when_every_input_is_committed_past_zero() -> None:
    committed = {TopicPartition("sage.results.v1", p): p + 1 for p in range(6)}
    assert unsought(committed, INPUTS.__contains__) == ([], [])
