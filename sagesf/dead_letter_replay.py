"""Reading, summarising and replaying dead letters (the work behind `sagesf dlq`).

What it owns: the operator's side of the dead-letter topics that `sagesf.dead_letter_writer.DeadLetterWriter`
fills. A dead letter is the failed record's original key, value and headers plus Kafka Connect's
`__connect.errors.*` headers and sagesf's `__sagesf.errors.field/.value`; `DeadLetter` reads
those back. `summarise()` counts a DLQ topic and its reasons, `replay_plan()` decides what a
replay would send where, `replay()` sends it.

How replay works:
- The record goes back to its original topic (`__connect.errors.topic`) and partition
  (`__connect.errors.partition`, when the topic still has it; else the producer's partitioner
  picks one), with the original key and value bytes unchanged and the original headers, minus the
  error headers, plus `__sagesf.replayed.from: <dlq topic>/<partition>/<offset>`, so the stage
  and `sagesf trace` can tell a replayed record from a first delivery. The original partition is
  kept on purpose: "the key's partition" is whatever partition the original writer chose, and a
  producer outside sagesf may hash keys differently.
- The produce is confirmed (acks=all, idempotent producer, flush, every delivery checked) before
  anything is recorded as replayed.
- Then one marker per dead letter goes to a compacted topic (positions.v1 by default), keyed
  `dlq-replay/<dlq topic>/<partition>/<offset>` in sagesf.positions' format. A later replay skips
  dead letters that have a marker unless asked `again`. Markers of dead letters that retention has
  removed from the DLQ are deleted (tombstoned) by the next replay of that DLQ.
- Replaying is safe even when a marker is lost (a crash between the produce and the marker, or an
  `again`): every sink writes with an idempotency key, so a record delivered twice has one effect.
- A source's dead letters have no Kafka topic to go back to (their origin is a Sage table or a
  Salesforce channel). When the source's component has a replay hook (sagesf.runner
  `Component.replay`, a sagesf.source `Replayer`), each is re-read from the source instead (the
  Sage row by table and key, the Salesforce event through the change reader), mapped as the
  source maps it now, and the records published through the source's CanonicalPublisher with the
  same replay header; the first record's position is the marker's `to`. One that still fails,
  or names something gone, is reported and not marked. No source position moves.

Limits: a source without a replay hook, and a record a source mapped but that did not fit its
schema (origin `unpublished:<topic>`), are skipped: re-read them from the source after the fix.
A replayed record reaches every consumer group of its origin topic, not only the stage that
failed (other teams' consumers of salesorder.v1 see it again, marked by the replay header).
Markers are per dead letter, so a DLQ holding millions of replayed records makes the marker
topic large until retention removes the dead letters. Two operators replaying the same dead
letter at the same time may both send it (harmless, see above).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException

from sagesf.config import KafkaSettings
from sagesf.dead_letter_writer import HEADER_PREFIX, FailedRecord
from sagesf.errors import Permanent
from sagesf.positions import PositionStore
from sagesf.producer import ConfirmedProducer, Delivered
from sagesf.runner import Component, assembled, component
from sagesf.source import NotReplayable, Replayer
from sagesf.stages import Stage, StageKind
from sagesf.topic_scan import PartitionRange, ScannedRecord, TopicMissing, TopicReader

__all__ = [
    "MARKER_COMPONENT",
    "REPLAYED_FROM_HEADER",
    "DeadLetter",
    "DlqSummary",
    "MarkersUnreadable",
    "ReplayItem",
    "ReplayMarkers",
    "ReplayReport",
    "StageReplay",
    "missing_offsets",
    "read_dead_letters",
    "replay",
    "replay_dead_letters",
    "replay_hook",
    "replay_plan",
    "source_replayer",
    "summarise",
]

SAGESF_ERROR_PREFIX = "__sagesf.errors."
REPLAYED_FROM_HEADER = "__sagesf.replayed.from"
MARKER_COMPONENT = "dlq-replay"
_NOT_REPLAYED = (HEADER_PREFIX, SAGESF_ERROR_PREFIX, REPLAYED_FROM_HEADER)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, its error headers read."""

    record: ScannedRecord

    def _error(self, name: str) -> str | None:
        return self.record.header_text(HEADER_PREFIX + name)

    @property
    def ref(self) -> str:
        """`<dlq topic>/<partition>/<offset>`: names this dead letter (markers, replay header)."""
        return self.record.position

    @property
    def origin_topic(self) -> str | None:
        return self._error("topic")

    @property
    def origin_partition(self) -> int | None:
        return _int(self._error("partition"))

    @property
    def origin_offset(self) -> int | None:
        return _int(self._error("offset"))

    @property
    def origin(self) -> str:
        return f"{self.origin_topic or '?'}/{self.origin_partition}/{self.origin_offset}"

    @property
    def stage(self) -> str | None:
        """The pipeline stage that dead-lettered it (`__connect.errors.connector.name`)."""
        return self._error("connector.name")

    @property
    def step(self) -> str | None:
        """Where in the stage: VALUE_CONVERTER, TASK_PUT, TASK_POLL (Connect's stage names)."""
        return self._error("stage")

    @property
    def where(self) -> str | None:
        return self._error("class.name")

    @property
    def error_class(self) -> str:
        return self._error("exception.class.name") or "?"

    @property
    def error_message(self) -> str:
        return self._error("exception.message") or ""

    @property
    def stacktrace(self) -> str | None:
        return self._error("exception.stacktrace")

    @property
    def field(self) -> str | None:
        return self.record.header_text(SAGESF_ERROR_PREFIX + "field")

    @property
    def field_value(self) -> str | None:
        return self.record.header_text(SAGESF_ERROR_PREFIX + "value")

    @property
    def replayed_from(self) -> str | None:
        """Set when the failed record was itself a replay of an earlier dead letter."""
        return self.record.header_text(REPLAYED_FROM_HEADER)

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The failed record's own headers: everything but error and replay headers."""
        return [(k, v) for k, v in self.record.headers if not k.startswith(_NOT_REPLAYED)]

    def failed(self) -> FailedRecord:
        """The failed record as its stage wrote it (what a source's `Replayer` re-reads)."""
        rec = self.record
        partition, offset = self.origin_partition, self.origin_offset
        return FailedRecord(
            self.origin_topic or "",
            -1 if partition is None else partition,
            -1 if offset is None else offset,
            rec.key,
            rec.value,
            list(self.original_headers),
        )

    def reason(self, width: int = 100) -> str:
        """`ShortErrorClass: first line of the message`, cut to `width` characters."""
        short = self.error_class.rsplit(".", 1)[-1]
        first = (self.error_message.strip().splitlines() or [""])[0]
        text = f"{short}: {first}" if first else short
        return text if len(text) <= width else text[: width - 1] + "…"


# --- reading -------------------------------------------------------------------------------------


def read_dead_letters(
    reader: TopicReader,
    topic: str,
    *,
    offsets: Sequence[tuple[int, int]] | None = None,
    last: int | None = None,
) -> list[DeadLetter]:
    """Dead letters of `topic`: at the given (partition, offset)s, else the `last` N per partition
    (None: all), in (partition, offset) order. Offsets not (or no longer) in the topic are absent.
    """
    if offsets is not None:
        ranges = [PartitionRange(topic, p, o, o + 1) for p, o in sorted(set(offsets))]
        known = set(reader.partitions(topic))
        ranges = [r for r in ranges if r.partition in known]
        for i, rng in enumerate(ranges):
            low, high = reader.watermarks(topic, rng.partition)
            if not low <= rng.start < high:
                ranges[i] = PartitionRange(topic, rng.partition, rng.start, rng.start)  # empty
    else:
        ranges = reader.ranges(topic, last=last)
    wanted = {(r.partition, r.start) for r in ranges} if offsets is not None else None
    letters = [
        DeadLetter(rec)
        for rec in reader.read(ranges)
        if wanted is None or (rec.partition, rec.offset) in wanted
    ]
    return sorted(letters, key=lambda d: (d.record.partition, d.record.offset))


@dataclass
class DlqSummary:
    """What `sagesf dlq list` shows for one stage."""

    stage: str
    topic: str
    exists: bool = True
    count: int = 0  # records the topic holds now (high - low watermark per partition)
    scanned: int = 0  # how many of them were read for the reasons
    oldest_ms: int | None = None
    newest_ms: int | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    replayed: int = 0  # of the scanned, how many carry a replay marker

    @property
    def partial(self) -> bool:
        return self.scanned < self.count


def summarise(
    reader: TopicReader, stage: Stage, *, max_scan: int, replayed: set[str] | None = None
) -> DlqSummary:
    """Count the stage's dead letters; reasons and replay marks from the newest `max_scan` per partition.

    The oldest time comes from the first record kept in each partition, read separately, so it
    is right even when the scan is cut.
    """
    summary = DlqSummary(stage.name, stage.dlq_topic)
    try:
        ranges = reader.ranges(stage.dlq_topic, last=max_scan)
    except TopicMissing:
        summary.exists = False
        return summary
    starts = {}
    firsts = []
    for rng in ranges:
        low, high = reader.watermarks(rng.topic, rng.partition)
        summary.count += high - low
        starts[rng.partition] = rng.start
        if rng.start > low:
            firsts.append(PartitionRange(rng.topic, rng.partition, low, low + 1))
    times = [rec.timestamp_ms for rec in reader.read(firsts)]
    for rec in reader.read(ranges):
        times.append(rec.timestamp_ms)
        letter = DeadLetter(rec)
        summary.scanned += 1
        summary.reasons[letter.reason()] += 1
        if replayed is not None and letter.ref in replayed:
            summary.replayed += 1
    if times:
        summary.oldest_ms, summary.newest_ms = min(times), max(times)
    return summary


# --- replay markers ------------------------------------------------------------------------------


class ReplayMarkers:
    """Which dead letters were replayed, kept in a compacted topic (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._store = PositionStore(kafka, MARKER_COMPONENT, topic=topic)
        self._markers: dict[str, Any] | None = None

    def load(self, timeout: float = 30.0) -> dict[str, Any]:
        """dead letter ref -> marker ({"to": origin position, "at": epoch ms, "dlq_ts": its time}).

        Reads the marker topic to its end once; KafkaException when the topic does not exist.
        """
        if self._markers is None:
            self._markers = self._store.load(timeout)
        return self._markers

    def get(self, letter: DeadLetter) -> Any:
        """The marker of this dead letter, or None.

        A marker names the dead letter's timestamp too, so after a DLQ topic is deleted and
        created again, a new dead letter at an old offset is not taken for a replayed one.
        """
        marker = self.load().get(letter.ref)
        if isinstance(marker, dict) and marker.get("dlq_ts") not in (None, letter.record.timestamp_ms):
            return None
        return marker

    def record(self, sent: Iterable[tuple[DeadLetter, Delivered]]) -> None:
        """Mark dead letters replayed; returns after Kafka acknowledged the markers."""
        now = int(time.time() * 1000)
        markers = {
            letter.ref: {
                "to": f"{d.topic}/{d.partition}/{d.offset}",
                "at": now,
                "dlq_ts": letter.record.timestamp_ms,
            }
            for letter, d in sent
        }
        if markers:
            self._store.put_many(markers)
            self.load().update(markers)

    def prune(self, reader: TopicReader, dlq_topic: str) -> int:
        """Delete markers of dead letters `dlq_topic` no longer holds; returns how many."""
        lows: dict[int, int] = {}
        stale = []
        for ref in list(self.load()):
            topic, _, where = ref.partition("/")
            partition_text, _, offset_text = where.partition("/")
            partition, offset = _int(partition_text), _int(offset_text)
            if topic != dlq_topic or partition is None or offset is None:
                continue
            if partition not in lows:
                try:
                    lows[partition] = reader.watermarks(dlq_topic, partition)[0]
                except KafkaException:  # a partition that cannot be asked keeps its markers
                    lows[partition] = -1
            if offset < lows[partition]:
                stale.append(ref)
        for ref in stale:
            self._store.reset(ref)
            self.load().pop(ref, None)
        return len(stale)


# --- replay --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayItem:
    """One dead letter and what a replay does with it: send it (to `partition`), or skip it (`skip`)."""

    letter: DeadLetter
    partition: int | None = None  # None: the partitioner chooses (origin partition gone)
    skip: str | None = None  # why it is not sent
    previous: Any = None  # its replay marker, when it was replayed before
    reread: bool = False  # a source's: re-read from the source, not sent to a topic

    @property
    def send(self) -> bool:
        return self.skip is None


def replay_plan(
    letters: Sequence[DeadLetter],
    markers: ReplayMarkers,
    reader: TopicReader,
    *,
    again: bool = False,
    rereadable: bool = False,
) -> list[ReplayItem]:
    """What replaying `letters` would do, one ReplayItem each, nothing sent. `rereadable`: the
    stage is a source with a replay hook, so a dead letter with no origin topic is re-read."""
    existing = reader.existing_topics()
    partitions: dict[str, int] = {}
    items = []
    for letter in letters:
        previous = markers.get(letter)
        origin = letter.origin_topic
        if previous is not None and not again:
            to = previous.get("to", "?") if isinstance(previous, dict) else previous
            items.append(
                ReplayItem(letter, skip=f"already replayed to {to} (use --again)", previous=previous)
            )
            continue
        if not origin:
            items.append(ReplayItem(letter, skip="no __connect.errors.topic header", previous=previous))
            continue
        if origin not in existing and rereadable and not origin.startswith("unpublished:"):
            items.append(ReplayItem(letter, previous=previous, reread=True))
            continue
        if origin not in existing:
            items.append(
                ReplayItem(
                    letter,
                    skip=f"origin {origin!r} is not a Kafka topic here: re-read it from the source "
                    "after the fix",
                    previous=previous,
                )
            )
            continue
        if origin == letter.record.topic:
            items.append(ReplayItem(letter, skip="origin is the dead-letter topic itself", previous=previous))
            continue
        if origin not in partitions:
            partitions[origin] = len(reader.partitions(origin))
        wanted = letter.origin_partition
        partition = wanted if wanted is not None and 0 <= wanted < partitions[origin] else None
        items.append(ReplayItem(letter, partition=partition, previous=previous))
    return items


def replay_hook(stage: Stage) -> Component | None:
    """The installed component of a source stage, when it re-reads its dead letters (a `replay`)."""
    if stage.kind is not StageKind.SOURCE:
        return None
    try:
        found = component(stage.name)
    except KeyError:
        return None
    return found if found.replay is not None else None


@contextmanager
def source_replayer(hook: Component | None, items: Sequence[ReplayItem]) -> Iterator[Replayer | None]:
    """The source's Replayer while the block runs, built only when `items` re-read anything (it
    logs in to the source system); its parts are closed at the end."""
    if hook is None or hook.replay is None or not any(item.send and item.reread for item in items):
        yield None
        return
    with assembled(hook) as process:
        yield hook.replay(process)


@dataclass
class ReplayReport:
    """What a replay did: the dead letters sent (where to, acknowledged and marked), and those a
    source could not publish again (ref -> why)."""

    sent: list[tuple[DeadLetter, Delivered]] = field(default_factory=list)
    not_sent: dict[str, str] = field(default_factory=dict)


def replay(
    kafka: KafkaSettings,
    items: Sequence[ReplayItem],
    markers: ReplayMarkers,
    *,
    timeout: float = 60.0,
    replayer: Replayer | None = None,
) -> ReplayReport:
    """Send the items to be sent (re-read through `replayer` for a source's), wait for Kafka's
    acks, then record the markers."""
    report = ReplayReport()
    to_send = [item for item in items if item.send and not item.reread]
    if to_send:
        report.sent += _produce_confirmed(kafka, to_send, timeout)
    rereads = [item for item in items if item.send and item.reread]
    if rereads and replayer is not None:
        report.sent += _reread(rereads, replayer, report.not_sent)
    markers.record(report.sent)
    return report


def _reread(
    items: Sequence[ReplayItem], replayer: Replayer, not_sent: dict[str, str]
) -> list[tuple[DeadLetter, Delivered]]:
    """Re-read each source dead letter, publish its records, wait for the acks: (letter, where its
    first record went), in order; what could not be published goes to `not_sent`."""
    sends: list[DeadLetter | None] = []  # per record sent: its letter, None after the first
    for item in items:
        letter = item.letter
        first = len(sends)
        try:
            records = replayer.reread(letter.failed())
            if not records:
                raise NotReplayable("re-read, it maps to no record now")
            for record in records:
                record.headers = (*record.headers, (REPLAYED_FROM_HEADER, letter.ref.encode()))
                replayer.publisher.send(record)
                sends.append(None if len(sends) > first else letter)
        except (NotReplayable, Permanent) as exc:
            reason = str(exc) if isinstance(exc, NotReplayable) else f"still failing: {exc}"
            not_sent[letter.ref] = reason if len(sends) == first else f"partly published, {reason}"
            sends[first:] = [None] * (len(sends) - first)
    delivered: list[Delivered] = list(replayer.publisher.confirm()) if sends else []  # in send order
    return [(letter, where) for letter, where in zip(sends, delivered, strict=True) if letter is not None]


def _produce_confirmed(
    kafka: KafkaSettings, items: Sequence[ReplayItem], timeout: float
) -> list[tuple[DeadLetter, Delivered]]:
    producer = ConfirmedProducer(kafka, extra={"message.timeout.ms": int(timeout * 1000)})
    for item in items:
        letter = item.letter
        headers: list[tuple[str, bytes | str]] = [
            *letter.original_headers,
            (REPLAYED_FROM_HEADER, letter.ref.encode()),
        ]
        producer.send(
            letter.origin_topic or "",
            letter.record.value,
            letter.record.key,
            headers,
            partition=item.partition,
        )
    delivered = producer.confirm(timeout)  # in send order
    return [(item.letter, where) for item, where in zip(items, delivered, strict=True)]


# --- the whole replay of a stage's dead letters ---------------------------------------------------


class MarkersUnreadable(Exception):
    """The replay-marker topic cannot be read: nothing was sent."""


@dataclass
class StageReplay:
    """What `replay_dead_letters` found and did."""

    letters: list[DeadLetter]  # the dead letters found at the offsets asked for
    items: list[ReplayItem]  # what was (or, on a dry run, would be) done with each
    report: ReplayReport

    def missing(self, offsets: Sequence[tuple[int, int]] | None) -> list[str]:
        return missing_offsets(offsets, self.letters)


def missing_offsets(offsets: Sequence[tuple[int, int]] | None, letters: Sequence[DeadLetter]) -> list[str]:
    """`partition:offset` of the `offsets` asked for that no letter of `letters` is at."""
    found = {(d.record.partition, d.record.offset) for d in letters}
    return [f"{p}:{o}" for p, o in offsets or () if (p, o) not in found]


def replay_dead_letters(
    reader: TopicReader,
    kafka: KafkaSettings,
    stage: Stage,
    markers: ReplayMarkers,
    *,
    offsets: Sequence[tuple[int, int]] | None = None,
    again: bool = False,
    dry_run: bool = False,
    timeout: float = 30.0,
) -> StageReplay:
    """Replay `stage`'s dead letters at `offsets` (None: all): what `sagesf dlq replay` and the web
    console's Replay button both do.

    1. read the dead letters and the replay markers (MarkersUnreadable when they cannot be read);
    2. plan each one (`replay_plan`): sent, re-read from its source, or skipped and why;
    3. unless `dry_run`, send them (`replay`, through the source's Replayer when re-read), acked
       before they are marked; then prune the markers of dead letters retention removed.
    Raises what `replay` raises (ProduceFailed, a source's Retriable or StartupError) with
    nothing marked replayed.
    """
    # 1.
    letters = read_dead_letters(reader, stage.dlq_topic, offsets=offsets)
    try:
        markers.load(timeout)
    except KafkaException as exc:
        raise MarkersUnreadable(
            f"cannot read the replay markers in {markers.topic} ({exc}); create it with `sagesf topics apply`"
        ) from None
    # 2.
    hook = replay_hook(stage)
    items = replay_plan(letters, markers, reader, again=again, rereadable=hook is not None)
    # 3.
    report = ReplayReport()
    if dry_run:
        return StageReplay(letters, items, report)
    if any(item.send for item in items):
        with source_replayer(hook, items) as replayer:
            report = replay(kafka, items, markers, timeout=timeout, replayer=replayer)
    markers.prune(reader, stage.dlq_topic)
    return StageReplay(letters, items, report)
