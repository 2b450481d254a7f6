"""Re-running a stage from a point in its input: resetting its consumer-group offsets.

What it owns: the work behind `sagesf replay <stage> --from <time|offset>`. A stage that reads
Kafka (sagesf.stages: processors and connectors) commits its position per input partition in
its consumer group; moving those committed offsets back makes the stage, once started again,
re-process every record from that point. That is safe because every effect downstream is
idempotent (sinks write with idempotency keys, processors emit commands the sinks de-duplicate).

How it works:
- `plan_reset` reads, per input partition of the stage (or of the one `--topic`), the group's
  committed offset (AdminClient.list_consumer_group_offsets), the partition's watermarks, and the
  target: the first offset at or after the time (offsets_for_times; the end of the partition when
  nothing is that recent), or the given offset clamped to what the partition still holds.
- A partition is moved only backwards. A target after the committed offset would skip records
  the stage has not processed yet, and a partition without a committed offset is read from its
  oldest record anyway (the stages use auto.offset.reset=earliest), so those are left alone with
  a note; the plan says so per partition. The dry run is this plan, printed.
- `apply_reset` first asks the broker for the group's members (describe_consumer_groups) and
  refuses with `GroupActive` while there are any: offsets of a running group cannot be reset (the
  members would overwrite them with their next commit, and Kafka refuses the change anyway; that
  refusal is turned into the same error). Then alter_consumer_group_offsets, and a read-back.

Limits: the four processor stages share the faust app's group, so the whole processors app must be
stopped to replay any of them, and a topic two agents read is replayed for both (see
sagesf.stages). Sources have no consumer group (`NotReplayable`). Records already removed by
retention cannot be re-processed: the target is clamped to the oldest record kept. Time is the
records' Kafka timestamp (CreateTime unless the topic says LogAppendTime), not the envelope's
event_time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from sagesf.stages import Stage, StageKind
from sagesf.topic_scan import TopicReader

__all__ = [
    "GroupActive",
    "NotReplayable",
    "PartitionReset",
    "ResetPlan",
    "apply_reset",
    "group_members",
    "plan_reset",
]

_NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group committed nothing for the partition


class NotReplayable(ValueError):
    """The stage has no consumer group or no input topics (a source)."""


class GroupActive(RuntimeError):
    """The stage's consumer group has members: the stage is running."""

    def __init__(self, group: str, members: Sequence[str]) -> None:
        self.group = group
        self.members = list(members)
        shown = ", ".join(self.members[:5]) + (" ..." if len(self.members) > 5 else "")
        super().__init__(
            f"consumer group {group!r} has {len(self.members)} active member(s) ({shown}); "
            "stop the stage first (all of its processes), then run the replay again"
        )


@dataclass(frozen=True)
class PartitionReset:
    """One input partition: where the group is, where it would go, and how much that re-runs."""

    topic: str
    partition: int
    committed: int | None  # None: the group has no offset for it
    target: int
    low: int
    high: int
    note: str | None = None  # why it is not moved

    @property
    def moves(self) -> bool:
        return self.note is None and self.committed != self.target

    @property
    def reprocessed(self) -> int:
        """Records the stage already handled that it will handle again after the reset."""
        if not self.moves or self.committed is None:
            return 0
        return max(0, min(self.committed, self.high) - self.target)

    @property
    def to_process(self) -> int:
        """Records the stage will read after the reset, up to today's end of the partition."""
        start = self.target if self.moves else (self.committed if self.committed is not None else self.low)
        return max(0, self.high - max(start, self.low))


@dataclass(frozen=True)
class ResetPlan:
    stage: Stage
    group: str
    origin: str  # what the operator asked for, for the report
    partitions: tuple[PartitionReset, ...]

    @property
    def moving(self) -> list[PartitionReset]:
        return [p for p in self.partitions if p.moves]

    @property
    def reprocessed(self) -> int:
        return sum(p.reprocessed for p in self.partitions)


def _group_of(stage: Stage) -> str:
    if stage.kind is StageKind.SOURCE:
        raise NotReplayable(
            f"stage {stage.name!r} is a source: it reads its source system, not Kafka, so it has no "
            "consumer offsets to reset; a source is re-read by resetting its position in positions.v1"
        )
    if stage.group_id is None or not stage.input_topics:
        raise NotReplayable(
            f"stage {stage.name!r} has no consumer group or no input topics configured "
            f"(SAGESF_STAGES__{stage.name.upper().replace('-', '_')}__GROUP_ID / __INPUT_TOPICS)"
        )
    return stage.group_id


def committed_offsets(
    admin: AdminClient, group: str, partitions: Iterable[tuple[str, int]], timeout: float
) -> dict[tuple[str, int], int | None]:
    """The group's committed offset per (topic, partition); None where it has none."""
    asked = [TopicPartition(t, p) for t, p in partitions]
    if not asked:
        return {}
    futures = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, asked)], request_timeout=timeout
    )
    result = futures[group].result(timeout=timeout)
    out: dict[tuple[str, int], int | None] = {}
    for tp in result.topic_partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[(tp.topic, tp.partition)] = None if tp.offset < 0 else int(tp.offset)
    return out


def plan_reset(
    admin: AdminClient,
    reader: TopicReader,
    stage: Stage,
    *,
    from_time_ms: int | None = None,
    from_offset: int | None = None,
    topics: Sequence[str] | None = None,
    partitions: Sequence[int] | None = None,
    origin: str = "",
    timeout: float = 30.0,
) -> ResetPlan:
    """Where each input partition of `stage` would be moved; changes nothing."""
    if (from_time_ms is None) == (from_offset is None):
        raise ValueError("give exactly one of from_time_ms and from_offset")
    group = _group_of(stage)
    chosen = list(topics) if topics else list(stage.input_topics)
    unknown = [t for t in chosen if t not in stage.input_topics]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} is not an input of stage {stage.name!r} "
            f"(its inputs: {', '.join(stage.input_topics)})"
        )
    wanted: list[tuple[str, int]] = []
    for topic in chosen:
        ids = reader.partitions(topic)
        wanted += [(topic, p) for p in ids if partitions is None or p in partitions]
    committed = committed_offsets(admin, group, wanted, timeout)
    by_time: dict[tuple[str, int], int] = {}
    if from_time_ms is not None:
        for topic in chosen:
            found = reader.offsets_for_time(topic, [p for t, p in wanted if t == topic], from_time_ms)
            by_time.update({(topic, p): o for p, o in found.items()})
    out = []
    for topic, p in wanted:
        low, high = reader.watermarks(topic, p)
        if from_offset is not None:
            target = from_offset
        else:
            found_at = by_time.get((topic, p), -1)
            target = high if found_at < 0 else found_at
        target = min(max(target, low), high)
        current = committed.get((topic, p))
        note = None
        if current is None:
            # the stage starts at the oldest record (auto.offset.reset=earliest): setting an offset
            # could only skip records
            note = "not moved: no committed offset; the stage starts from the oldest record anyway"
        elif target > current:
            note = (
                f"not moved: the group is at {current}, before the target; moving it would skip "
                f"{target - current} records not processed yet"
            )
        out.append(PartitionReset(topic, p, current, target, low, high, note))
    return ResetPlan(stage, group, origin, tuple(out))


def group_members(admin: AdminClient, group: str, timeout: float = 30.0) -> list[str]:
    """The group's active members as `client_id@host`, empty when none (or no such group)."""
    future = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    try:
        description = future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args and getattr(exc.args[0], "code", lambda: None)() == KafkaError.GROUP_ID_NOT_FOUND:
            return []
        raise
    return [f"{m.client_id}@{m.host.lstrip('/')}" for m in description.members or []]


def apply_reset(admin: AdminClient, plan: ResetPlan, *, timeout: float = 30.0) -> list[PartitionReset]:
    """Move the group's offsets as planned; GroupActive while the group has members.

    Returns the partitions moved. Reads the offsets back and raises RuntimeError if the broker
    holds other values than those just set.
    """
    moving = plan.moving
    if not moving:
        return []
    members = group_members(admin, plan.group, timeout)
    if members:
        raise GroupActive(plan.group, members)
    request = ConsumerGroupTopicPartitions(
        plan.group, [TopicPartition(p.topic, p.partition, p.target) for p in moving]
    )
    future = admin.alter_consumer_group_offsets([request], request_timeout=timeout)[plan.group]
    try:
        result = future.result(timeout=timeout)
    except KafkaException as exc:
        raise _refusal(admin, plan.group, exc, timeout) from exc
    failed = [tp for tp in result.topic_partitions if tp.error is not None]
    if failed:
        raise _refusal(admin, plan.group, KafkaException(failed[0].error), timeout)
    now = committed_offsets(admin, plan.group, [(p.topic, p.partition) for p in moving], timeout)
    wrong = [p for p in moving if now.get((p.topic, p.partition)) != p.target]
    if wrong:
        shown = ", ".join(f"{p.topic}/{p.partition}: {now.get((p.topic, p.partition))}" for p in wrong)
        raise RuntimeError(f"the broker holds other offsets than those set: {shown}")
    return moving


def _refusal(admin: AdminClient, group: str, exc: KafkaException, timeout: float) -> Exception:
    """Kafka's refusal as GroupActive when a member joined meanwhile, else the error itself."""
    code = getattr(exc.args[0], "code", lambda: None)() if exc.args else None
    if code in (
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
    ):
        return GroupActive(group, group_members(admin, group, timeout) or ["(joining)"])
    members = group_members(admin, group, timeout)
    return GroupActive(group, members) if members else exc
