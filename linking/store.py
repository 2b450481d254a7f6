"""The linker's Kafka side: the candidates and the link state read from their topics, decisions
written to them.

What it owns: `LinkStore`: `records()` reads customer.v1 and item.v1 to their ends (the latest
record per key, a tombstone removing its key, as compaction keeps them) into Parties and
Articles; `book()` reads link.state.v1 into a LinkBook; `write(decision)` produces a decision's
records (commands and tombstones first, then the states) and returns once Kafka acknowledged all.

Limits: customer.v1 keys an Account whose ExternalID__c names a Sage customer by that customer's
key, so once Kafka compacted the topic only the later of the two records is left: such a pair is
seen from one side, and when that side is Sage's (no UDF yet), the customer counts as unlinked.
The Sage sink and the processors refuse a link contradicting the Account's (DUPLICATE_VALUE on
ExternalID__c; processors/customer_links.py), but Sage's UDF would take the new one: run the
linker on the load's records before the topic is compacted (the default leaves a day).

Reads show a progress bar (records, rate, remaining) when given one; they go through the core's
bounded reader (sagesf.topic_scan), which joins no consumer group and commits nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from linking.config import LinkSettings
from linking.decisions import Decision
from linking.records import SAGE, SALESFORCE, Article, Party, article, party
from sagesf import topic_names
from sagesf.config import Settings
from sagesf.link_state import LinkBook
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroSerde
from sagesf.topic_scan import TopicMissing, TopicReader

__all__ = ["LinkStore", "Progress"]

SYSTEMS = (SALESFORCE, SAGE)

Progress = Callable[[str, int], Callable[[int], None]]  # (what, total) -> advance(n)


def _silent(what: str, total: int) -> Callable[[int], None]:
    return lambda n: None


class LinkStore:
    def __init__(
        self, core: Settings, settings: LinkSettings, registry: SchemaRegistryClient | None = None
    ) -> None:
        self.core = core
        self.settings = settings
        self.registry = registry or SchemaRegistryClient(dict(core.registry.client_config()))
        self._serdes: dict[tuple[str, str], AvroSerde] = {}

    def _serde(self, topic: str, schema: str) -> AvroSerde:
        found = self._serdes.get((topic, schema))
        if found is None:
            auto = self.core.registry.auto_register
            if schema == "key":
                found = AvroSerde.string_key(self.registry, topic, auto_register=auto)
            else:
                found = AvroSerde.canonical(self.registry, schema, topic, auto_register=auto)
            self._serdes[(topic, schema)] = found
        return found

    @contextmanager
    def _reader(self) -> Iterator[TopicReader]:
        with TopicReader(self.core.kafka, timeout=self.settings.read_timeout) as reader:
            yield reader

    def _latest(self, name: str, schema: str, progress: Progress) -> dict[Any, Any]:
        """Key -> latest value of topic `name` (JSON when `schema` is json); tombstones remove.
        Canonical records are kept per key and source system (`(key, system)`): an Account whose
        ExternalID__c names a Sage customer shares that customer's key."""
        topic = self.settings.topic(name)
        latest: dict[Any, Any] = {}
        with self._reader() as reader:
            try:
                ranges = reader.ranges(topic)
            except TopicMissing:
                return latest
            advance = progress(topic, sum(r.size for r in ranges))
            for record in reader.read(ranges):
                advance(1)
                if record.key is None:
                    continue
                if schema == "json":
                    key = record.key.decode()
                else:
                    key = str(self._serde(topic, "key").decode(record.key))
                if schema == "json":
                    if record.value is not None:
                        latest[key] = json.loads(record.value)
                    continue
                if record.value is None:
                    for system in SYSTEMS:
                        latest.pop((key, system), None)
                    continue
                value = self._serde(topic, schema).decode(record.value)
                latest[(key, (value.get("envelope") or {}).get("source_system"))] = value
        return latest

    def records(self, progress: Progress = _silent) -> tuple[list[Party], list[Article]]:
        """Both sides' customers and items as the topics hold them now."""
        customers = self._latest(topic_names.CUSTOMERS, "Customer", progress)
        items = self._latest(topic_names.ITEMS, "Item", progress)
        parties = [p for (key, _), value in customers.items() if (p := party(value, key)) is not None]
        articles = [a for (key, _), value in items.items() if (a := article(value, key)) is not None]
        return parties, articles

    def book(self, progress: Progress = _silent) -> LinkBook:
        return LinkBook(self._latest(topic_names.LINK_STATE, "json", progress))

    def write(self, decision: Decision) -> int:
        """Produce the decision's records in order, acknowledged; returns how many."""
        if not decision.outbound:
            return 0
        producer = ConfirmedProducer(self.core.kafka)
        try:
            for out in decision.outbound:
                topic = self.settings.topic(out.topic)
                if out.topic == topic_names.LINK_STATE:
                    producer.send(topic, out.value.to_json(), out.key.encode())
                    continue
                key = self._serde(topic, "key").encode(out.key)
                value = None if out.value is None else self._serde(topic, str(out.schema)).encode(out.value)
                producer.send(topic, value, key)
            producer.confirm()
        finally:
            producer.close()
        return len(decision.outbound)
