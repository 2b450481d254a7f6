"""Consumer lag of a consumer group that does not run through sagesf's own loops (faust's processors)."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from sagesf.config import KafkaSettings
from sagesf.metrics import CONSUMER_LAG, Health

__all__ = ["GroupLag"]


class GroupLag:
    """Consumer lag of a group that does not run through SinkLoop (faust's processors).

    Reads the group's committed offsets and the partitions' high watermarks with a consumer that
    never joins the group, sets `sagesf_consumer_lag` per partition, and tells `health` how much
    work is pending per stage (`Health.waiting`): a stage whose handler stops making progress
    with records waiting turns /healthz unhealthy after `stall_after`, so a liveness probe
    restarts a stalled worker. A partition without a committed offset counts from its low
    watermark. Cost: one metadata, one committed-offsets and one watermark request per partition
    per call; call it every few seconds, not per record.
    """

    def __init__(
        self, kafka: KafkaSettings, group_id: str, stages: dict[str, str], health: Health | None = None
    ) -> None:
        self.group_id = group_id
        self.stages = stages  # topic -> stage
        self.health = health
        self._consumer = Consumer(
            {**kafka.client_config(), "group.id": group_id, "enable.auto.commit": False}
        )

    def measure(self, timeout: float = 10.0) -> dict[str, int]:
        """Pending records per stage, now."""
        metadata = self._consumer.list_topics(timeout=timeout).topics
        partitions = [
            TopicPartition(topic, p)
            for topic in self.stages
            if topic in metadata and metadata[topic].error is None
            for p in metadata[topic].partitions
        ]
        pending: dict[str, int] = dict.fromkeys(self.stages.values(), 0)
        if not partitions:
            return pending
        for tp in self._consumer.committed(partitions, timeout=timeout):
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=timeout
            )
            position = tp.offset if tp.offset >= 0 else low
            lag = max(0, high - position)
            stage = self.stages[tp.topic]
            CONSUMER_LAG.labels(stage, self.group_id, tp.topic, str(tp.partition)).set(lag)
            pending[stage] += lag
        if self.health is not None:
            for stage, count in pending.items():
                self.health.waiting(stage, count)
        return pending

    def close(self) -> None:
        self._consumer.close()
