"""The console's way to the Kafka cluster and the schema registry: the stages table, a bounded
topic reader per request (sagesf.topic_scan: it joins no group, commits nothing), a decoder for
keys and values, the replay markers of dead letters, and the linker's store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from confluent_kafka.schema_registry import SchemaRegistryClient

from linking.config import LinkSettings
from linking.store import LinkStore
from sagesf.dead_letter_replay import ReplayMarkers
from sagesf.record_display import WireDecoder
from sagesf.stages import Stage, StageSettings, load_stages
from sagesf.topic_scan import TopicReader

__all__ = ["Cluster", "UnknownStage"]


class UnknownStage(LookupError):
    """A stage name that is not in the stages table (404)."""


class Cluster:
    def __init__(self, core: StageSettings, links: LinkSettings, markers_topic: str, timeout: float) -> None:
        self.core = core
        self.links = links
        self.markers_topic = markers_topic
        self.timeout = timeout

    @cached_property
    def stages(self) -> dict[str, Stage]:
        return load_stages(self.core)

    def stage(self, name: str) -> Stage:
        found = self.stages.get(name)
        if found is None:
            raise UnknownStage(f"no stage {name!r} (known: {', '.join(self.stages)})")
        return found

    @contextmanager
    def reader(self) -> Iterator[TopicReader]:
        with TopicReader(self.core.kafka, timeout=self.timeout) as reader:
            yield reader

    @cached_property
    def registry(self) -> SchemaRegistryClient:
        return SchemaRegistryClient(dict(self.core.registry.client_config()))

    def decoder(self) -> WireDecoder:
        """A decoder for one page (it stops asking a registry that is down, for that page only)."""
        return WireDecoder(self.registry)

    def markers(self) -> ReplayMarkers:
        return ReplayMarkers(self.core.kafka, self.markers_topic)

    def link_store(self) -> LinkStore:
        """The linker's Kafka side (linking.store), as `sagesf link` uses it."""
        return LinkStore(self.core, self.links, self.registry)
