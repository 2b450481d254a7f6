"""Tracing one Salesforce or Sage record through every topic (the work behind `sagesf trace`).

What it owns: finding the records that belong to one business record (an Opportunity ID, a Sage
SalesOrderNo, an ItemCode, a command or correlation ID) across the declared topics, and saying
for each where it is, when it was written, which stage wrote it and what came of it.

How it works, a full scan, not an index:
1. Every declared topic (topics.yaml, except positions.v1) is read from `since` to its current
   end with `sagesf.topic_scan` (assign(), no consumer group).
2. A record's raw key, value and header bytes are searched for the id first: Avro writes strings
   as plain UTF-8, so a record that does not contain the bytes cannot mention the id, and only the
   few that do are decoded (through the registry, sagesf.record_display).
3. A decoded record *is about* the id when its key equals it (or has it as a `/` part, as in
   `Product2/<ItemCode>`), or when one of its identity fields does: envelope.source_record_id,
   envelope.correlation_id, command_id, correlation_id, salesforce_opportunity_id,
   salesforce_order_id, salesforce_record_id, sales_order_no, record_id, external_id (at any depth,
   except inside customer, address and line sub-records, which name other entities). It only
   *mentions* the id when the id appears anywhere else (a dead letter's message, a field value).
4. Links: the identity values of the records about the id (the SalesOrderNo Sage assigned, the
   command and correlation IDs) are searched for in a second scan, and so on for `depth` scans;
   linked records must be about a link value, a mere mention does not count, so tracing an order
   does not pull in every other order of the same customer.
5. The records found are sorted by their Kafka timestamp. Dead letters (dlq.* topics) show the
   stage that dead-lettered them and why; results show their outcome (CREATED, REJECTED, ...).

Limits: cost grows with the data in the window: each link scan reads every declared topic from
`since` again (`depth` 0 reads once). Records older than `since` or removed by retention are not
found; compacted topics hold only the latest record per key. Topics not in topics.yaml (faust's
changelogs, other teams' topics) are not read. `limit` caps how many records are kept; past it the
result is cut and says so. An id that is a common substring (a short number) matches many records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sagesf.dead_letter_replay import REPLAYED_FROM_HEADER, DeadLetter
from sagesf.record_display import Decoded, WireDecoder, to_display_text
from sagesf.stages import Stage
from sagesf.topic_names import POSITIONS
from sagesf.topic_scan import PartitionRange, ScannedRecord, TopicMissing, TopicReader

__all__ = ["IDENTITY_FIELDS", "TraceHit", "TraceResult", "identity_values", "trace_record"]

IDENTITY_FIELDS = frozenset(
    {
        "source_record_id",
        "correlation_id",
        "command_id",
        "salesforce_opportunity_id",
        "salesforce_order_id",
        "salesforce_record_id",
        "sales_order_no",
        "record_id",
        "external_id",
    }
)
# sub-records that describe *other* entities: the order's customer, addresses, lines
_OTHER_ENTITIES = frozenset({"customer", "bill_to", "ship_to", "lines", "address", "addresses", "contacts"})
SKIPPED_TOPICS = frozenset({POSITIONS})  # source positions: JSON bookkeeping, no record IDs

Match = Literal["id", "link", "mention"]


def identity_values(value: Any) -> set[str]:
    """The identity field values of a decoded record (see the module docstring), non-empty only."""
    found: set[str] = set()

    def walk(node: Any, depth: int) -> None:
        if depth > 6:
            return
        if isinstance(node, Mapping):
            for name, item in node.items():
                if name in _OTHER_ENTITIES:
                    continue
                if name in IDENTITY_FIELDS and isinstance(item, str) and item:
                    found.add(item)
                elif isinstance(item, Mapping | list):
                    walk(item, depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)

    walk(value, 0)
    return found


def _key_text(key: Decoded) -> str | None:
    if key.kind in ("text", "avro") and isinstance(key.value, str):
        return key.value
    return None


def _key_names(key: str | None, wanted: str) -> bool:
    return key is not None and (key == wanted or wanted in key.split("/"))


@dataclass(frozen=True)
class TraceHit:
    """One record on the traced record's path."""

    record: ScannedRecord
    key: Decoded
    value: Decoded
    match: Match
    matched: str  # the id or link value that matched
    stage: str  # who wrote it (and who reads it), or the stage that dead-lettered it
    outcome: str

    @property
    def key_text(self) -> str:
        return _key_text(self.key) or self.key.text(indent=None)


@dataclass
class TraceResult:
    record_id: str
    hits: list[TraceHit] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)  # read
    missing_topics: list[str] = field(default_factory=list)  # declared but not on the cluster
    scanned: int = 0  # records read, all scans together
    scans: int = 0
    truncated: bool = False
    registry_error: str | None = None


def _outcome(rec: ScannedRecord, value: Decoded, dlq_stage: str | None) -> str:
    parts: list[str] = []
    if dlq_stage is not None:
        letter = DeadLetter(rec)
        parts.append(f"DEAD LETTER ({letter.step or '?'}): {letter.reason(160)}")
    elif isinstance(value.value, Mapping):
        record = value.value
        for name in ("outcome", "decision", "status"):
            if isinstance(record.get(name), str):
                parts.append(f"{name} {record[name]}")
                break
        if isinstance(record.get("sales_order_no"), str):
            parts.append(f"SalesOrderNo {record['sales_order_no']}")
        error = record.get("error")
        if isinstance(error, Mapping):
            reason = error.get("reason") or error.get("message")
            if reason:
                parts.append(f"error: {reason}")
        if not parts:
            parts.append("command" if "command_id" in record else "event")
    else:
        parts.append(value.kind)
    replayed = rec.header_text(REPLAYED_FROM_HEADER)
    if replayed:
        parts.append(f"replayed from {replayed}")
    return "; ".join(parts)


def _stage_label(topic: str, stages: Iterable[Stage]) -> tuple[str, str | None]:
    """(label, dlq stage name or None) for records of `topic`."""
    stages = list(stages)
    for stage in stages:
        if stage.dlq_topic == topic:
            return f"{stage.name} (dead letter)", stage.name
    writers = [s.name for s in stages if topic in s.output_topics]
    readers = [s.name for s in stages if topic in s.input_topics]
    if not writers and not readers:
        return "", None
    return f"{', '.join(writers) or '?'} -> {', '.join(readers) or '(other consumers)'}", None


def trace_record(
    reader: TopicReader,
    decoder: WireDecoder,
    stages: Sequence[Stage],
    topics: Sequence[str],
    record_id: str,
    *,
    since_ms: int,
    limit: int = 200,
    depth: int = 1,
    on_scan: Callable[[int, int], None] | None = None,
) -> TraceResult:
    """Find `record_id`'s records in `topics` written since `since_ms`, sorted by time.

    `depth` is how many link scans follow the first one (0: only records about or mentioning the
    id itself). `on_scan(scan_no, records_read)` reports progress.
    """
    result = TraceResult(record_id)
    ranges: list[PartitionRange] = []
    for topic in topics:
        if topic in SKIPPED_TOPICS:
            continue
        try:
            ranges += reader.ranges(topic, since_ms=since_ms)
        except TopicMissing:
            result.missing_topics.append(topic)
            continue
        result.topics.append(topic)
    labels = {topic: _stage_label(topic, stages) for topic in result.topics}

    hits: dict[str, TraceHit] = {}
    wanted = {record_id}
    searched: set[str] = set()
    for scan in range(depth + 1):
        links: set[str] = set()
        needles = [(w, w.encode()) for w in sorted(wanted)]
        result.scans += 1
        # the ranges were fixed before the first scan: every scan reads the same records
        records = reader.read(ranges)
        for rec in records:
            result.scanned += 1
            if on_scan is not None and result.scanned % 10_000 == 0:
                on_scan(scan + 1, result.scanned)
            if rec.position in hits:
                continue
            present = [w for w, raw in needles if _contains(rec, raw)]
            if not present:
                continue
            key = decoder.decode(rec.key)
            value = decoder.decode(rec.value)
            identity = identity_values(value.value)
            key_text = _key_text(key)
            about = [w for w in present if w in identity or _key_names(key_text, w)]
            match: Match | None = None
            if about:
                match = "id" if scan == 0 else "link"
                matched = about[0]
            elif scan == 0 and record_id in present:
                match, matched = "mention", record_id
            if match is None:
                continue
            if len(hits) >= limit:
                result.truncated = True
                break
            label, dlq_stage = labels.get(rec.topic, ("", None))
            hits[rec.position] = TraceHit(
                rec, key, value, match, matched, label, _outcome(rec, value, dlq_stage)
            )
            if match != "mention":
                links |= identity | ({key_text} if key_text else set())
        records.close()  # stops a scan cut short by the limit (unassigns the partitions)
        searched |= wanted
        wanted = links - searched
        if not wanted or result.truncated:
            break
    result.hits = sorted(
        hits.values(),
        key=lambda h: (h.record.timestamp_ms, h.record.topic, h.record.partition, h.record.offset),
    )
    result.registry_error = decoder.registry_error
    return result


def _contains(rec: ScannedRecord, needle: bytes) -> bool:
    if rec.key is not None and needle in rec.key:
        return True
    if rec.value is not None and needle in rec.value:
        return True
    return any(needle in value for _, value in rec.headers)


def hit_value_text(hit: TraceHit) -> str:
    """The decoded value on one line (for `--show-values`)."""
    if hit.value.kind == "avro":
        return to_display_text(hit.value.value, indent=None)
    return hit.value.text()
