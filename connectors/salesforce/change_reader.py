"""One batch of streaming events -> the canonical records they stand for, and the replay positions.

What it owns: `ChangeReader.read(messages)`, the synchronous heart of the CDC source (source.py
hands it the batches the streaming client delivered and gives what it returns, a sagesf.source
`SourceBatch`, to the core SourceLoop), `catch_up(channel, since)`, the read by modification time
that replaces events lost to retention, and `reject(message, error)` for a message that fails
unexpectedly.

How one batch goes, in this order:
1. parse every message (connectors/salesforce/change_events.py); a malformed one is a dead
   letter; every event moves its channel's position;
2. drop what is not ours to publish: events committed before a by-time stream's start, echoes
   of our own writes (changeOrigin client AND commitUser the integration user: another user's
   change carrying our client header is not an echo), objects without mapping (counted);
3. child changes (Contact, OpportunityLineItem, OrderItem) become changes of their parent
   (one `queryAll` for the parent IDs, deletions included); GAP_CREATE/UPDATE/UNDELETE count as
   full re-reads, GAP_DELETE as a deletion, GAP_OVERFLOW as a catch-up read of the whole object
   since its commit time minus `overflow_lookback`;
4. collapse to one target per record, read the live ones (and the deleted ones with queryAll)
   in batches of up to 200 IDs per query, with lines and account in the same query;
5. map each target the mapping produces, keyed by the canonical key. For objects with a
   `when` state (Opportunity Closed Won, Order Activated) that is when one of the record's own
   events set the state field (its body says StageName = Closed Won) and the record read is
   still in the state, or a gap/catch-up read finds it in it, or it was deleted while in it:
   lines changing, other fields edited, or the record read late after its lines' events, make
   no second order. A record that cannot be mapped is a dead letter (the original event's
   bytes, the reason in Connect-style headers);
6. credit requests whose requester may not read the Account they name lose the Account
   (connectors/salesforce/credit_visibility.py: one UserRecordAccess query per requester);
7. the batch goes back with the channels' new replay positions: the SourceLoop publishes it and
   stores the positions (connectors/salesforce/replay_storage.py reads them back) only once
   Kafka has the records. A crash anywhere before that replays the batch: at-least-once, with
   deterministic event IDs so consumers can tell a repeat.

Whatever mapping one record raises (a `Permanent`, or a bug it meets) dead-letters that record
alone, in event batches, GAP_OVERFLOW reads and catch-up reads alike: a catch-up read has no
event to split it by, and a failure there would otherwise stop the source at every restart.

Records read for a CREATE/UPDATE that are gone by the time of the read are asked for again with
queryAll: deleted since (IsDeleted) they are skipped, counted `deleted_since` (the DELETE event
that follows produces the deleted record); not found even so, the integration user cannot see
them (sharing) or they were hard-deleted, and they are logged and dead-lettered as `not_visible`
with the reason, as is a child record whose parent lookup finds nothing. A deleted record that
even queryAll no longer finds is a dead letter too: there is nothing to key it by. A read
Salesforce refuses for permission is no record's fault: it raises `ReadRefused` (a Retriable,
record_reader.py) and the whole batch waits.

Limits: the state produced is the state at read time, not at the event's commit (several
quick changes of one record may produce the latest state several times, never an older one
after a newer one within a batch). Gap events and catch-up reads carry no body, so they
produce a record in the `when` state again (consumers de-duplicate orders by their key).
Catch-up reads hold one object's modified records in pages of 200 at a time; a GAP_OVERFLOW
over a busy object is as large as its changes.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.salesforce.change_events import (
    GAP_TYPES,
    ChangeEvent,
    MalformedEvent,
    PlatformEvent,
    Target,
    collapse,
    event_uuid,
    is_echo,
    parse_message,
)
from connectors.salesforce.credit_visibility import withhold_unreadable_accounts
from connectors.salesforce.record_mapper import RecordMapper
from connectors.salesforce.record_reader import RecordReader, is_record_id
from connectors.salesforce.replay_storage import ChannelPosition, PositionReplayStorage
from connectors.salesforce.source_mapping import ObjectMapping, SourceMapping
from connectors.salesforce.source_metrics import (
    CATCHUP_READS,
    CATCHUP_RECORDS,
    ECHOES_DROPPED,
    EVENTS_RECEIVED,
    EVENTS_SKIPPED,
    GAP_EVENTS,
    SOURCE_RECORDS,
)
from sagesf.dead_letter_writer import FailedRecord
from sagesf.errors import Backpressure, Permanent, Retriable
from sagesf.publisher import CanonicalRecord
from sagesf.source import Rejected, SourceBatch

log = logging.getLogger(__name__)

__all__ = ["ChangeReader"]

WHERE = "connectors.salesforce.source"
ALL_CHANGE_EVENTS = "/data/ChangeEvents"
CATCHUP_PAGE = 200


@dataclass
class _Batch:
    positions: dict[str, ChannelPosition]
    failed: list[tuple[FailedRecord, BaseException]]
    records: list[CanonicalRecord]

    def done(self, checkpoint: bool = True) -> SourceBatch:
        """What the loop publishes; a checkpoint also stores the channels' positions."""
        return SourceBatch(
            records=self.records,
            rejected=[Rejected(failed, error, WHERE) for failed, error in self.failed],
            positions={channel: p.to_json() for channel, p in self.positions.items()} if checkpoint else None,
        )


class ChangeReader:
    """Reads what change events point at and maps it (see the module doc)."""

    def __init__(
        self,
        *,
        mapping: SourceMapping,
        reader: RecordReader,
        mapper: RecordMapper,
        storage: PositionReplayStorage,
        echo_clients: Iterable[str],
        echo_users: Iterable[str] = (),
        overflow_lookback_ms: int = 300_000,
    ) -> None:
        self.mapping = mapping
        self.reader = reader
        self.mapper = mapper
        self.storage = storage
        self.echo_clients = frozenset(echo_clients)
        self.echo_users = frozenset(user[:15] for user in echo_users if user)
        self.overflow_lookback_ms = overflow_lookback_ms

    def use(self, mapping: SourceMapping) -> None:
        """Read and map with `mapping` from the next batch on (an edited mapping file reloaded)."""
        self.mapping = self.reader.mapping = self.mapper.mapping = mapping

    def entities(self, channel: str) -> list[str]:
        """The mapped objects a CDC channel carries (all of them for /data/ChangeEvents)."""
        if channel == ALL_CHANGE_EVENTS:
            return list(self.mapping.objects)
        name = channel.removeprefix("/data/").removesuffix("ChangeEvent")
        entity = name + "c" if name.endswith("__") else name
        return [entity] if entity in self.mapping.objects else []

    # --- one batch ---------------------------------------------------------------------------

    def read(self, messages: Sequence[Any]) -> Iterator[SourceBatch]:
        """The records a batch of delivered messages stands for (see the module doc for the order);
        the last batch is the checkpoint. A GAP_OVERFLOW's catch-up read comes page by page."""
        batch = _Batch({}, [], [])
        changes: list[ChangeEvent] = []
        platform: list[PlatformEvent] = []
        for message in messages:
            event = self._parse(message, batch)
            if isinstance(event, PlatformEvent):
                platform.append(event)
            elif event is not None and self._wanted(event, batch):
                changes.append(event)
        overflows = [e for e in changes if e.change_type == "GAP_OVERFLOW"]
        targets = collapse(self._items([e for e in changes if e.change_type != "GAP_OVERFLOW"], batch))
        self._produce_targets(targets, batch)
        first_event = len(batch.records)
        for event in platform:
            self._produce_platform_event(event, batch)
        withhold_unreadable_accounts(batch.records[first_event:], self.reader)
        if overflows:  # send what was read first: a later read of the same record must come later
            yield SourceBatch(records=batch.records)
            batch.records = []
        for event in overflows:
            CATCHUP_READS.labels(event.channel, "gap_overflow").inc()
            log.warning(
                "GAP_OVERFLOW on %s: re-reading %s modified since the overflow", event.channel, event.entity
            )
            for page in self._catch_up_entity(
                event.entity, event.commit_timestamp_ms - self.overflow_lookback_ms
            ):
                yield page.done(checkpoint=False)
        yield batch.done()

    def reject(self, message: Any, error: BaseException) -> SourceBatch:
        """Dead-letter one message the reader failed on unexpectedly, and move past it."""
        batch = _Batch({}, [], [])
        channel = str(message.get("channel", "?")) if isinstance(message, dict) else "?"
        replay_id = _replay_id(message)
        batch.failed.append((_failed(channel, replay_id, None, message), error))
        position = self.storage.position(channel)
        if replay_id is not None:
            checkpoint = position.checkpoint_ms if position is not None else 0
            start = position.start if position is not None else None
            batch.positions[channel] = ChannelPosition(replay_id, checkpoint, start)
        return batch.done()

    def _parse(self, message: Any, batch: _Batch) -> ChangeEvent | PlatformEvent | None:
        channel = str(message.get("channel", "?")) if isinstance(message, dict) else "?"
        try:
            event = parse_message(message)
        except MalformedEvent as exc:
            EVENTS_RECEIVED.labels(channel, "MALFORMED").inc()
            batch.failed.append((_failed(channel, _replay_id(message), None, message), exc))
            return None
        commit = event.created_ms if isinstance(event, PlatformEvent) else event.commit_timestamp_ms
        current = batch.positions.get(event.channel) or self.storage.position(event.channel)
        if current is None or current.replay_id is None or event.replay_id > current.replay_id:
            # the checkpoint time never goes back: an old event skipped at a by-time start must
            # not move a later catch-up read to before the start
            floor = current.checkpoint_ms if current is not None else 0
            start = current.start if current is not None else None
            batch.positions[event.channel] = ChannelPosition(event.replay_id, max(commit, floor), start)
        kind = "EVENT" if isinstance(event, PlatformEvent) else event.change_type
        EVENTS_RECEIVED.labels(event.channel, kind).inc()
        if self.storage.skips(event.channel, commit):
            EVENTS_SKIPPED.labels(event.channel, "before_start").inc()
            return None
        return event

    def _wanted(self, event: ChangeEvent, batch: _Batch) -> bool:
        if is_echo(event, self.echo_clients, self.echo_users):
            ECHOES_DROPPED.labels(event.channel).inc()
            return False
        if event.entity not in self.mapping.objects:
            EVENTS_SKIPPED.labels(event.channel, "unmapped").inc()
            return False
        bad = [r for r in event.record_ids if not is_record_id(r)]
        if bad:
            error = MalformedEvent(f"recordIds {bad[:5]} are not Salesforce record IDs", field="recordIds")
            batch.failed.append((_failed(event.channel, event.replay_id, None, event.raw), error))
            return False
        if event.change_type in GAP_TYPES:
            GAP_EVENTS.labels(event.entity, event.change_type).inc()
        return True

    def _items(
        self, changes: list[ChangeEvent], batch: _Batch
    ) -> list[tuple[str, str, ChangeEvent | None, str, int, str]]:
        """(entity, record id, event, change type, commit ms, event id) per record, children as
        parents; a child the parent lookup does not find is a dead letter (`not_visible`)."""
        parents = self._parents(changes)
        items: list[tuple[str, str, ChangeEvent | None, str, int, str]] = []
        for event in changes:
            obj = self.mapping.objects[event.entity]
            for record_id in event.record_ids:
                event_id = event_uuid(event.transaction_key, event.sequence_number, event.entity, record_id)
                if obj.parent is None:
                    items.append(
                        (
                            event.entity,
                            record_id,
                            event,
                            event.change_type,
                            event.commit_timestamp_ms,
                            event_id,
                        )
                    )
                    continue
                if (event.entity, record_id) not in parents:
                    target = Target(event.entity, record_id, False, False, {}, 0, event_id, event)
                    self._not_visible(target, batch)
                    continue
                parent_id = parents[(event.entity, record_id)]
                if parent_id is not None:
                    items.append(
                        (obj.parent.object, parent_id, event, "CHILD", event.commit_timestamp_ms, event_id)
                    )
        return items

    def _parents(self, changes: list[ChangeEvent]) -> dict[tuple[str, str], str | None]:
        """(child entity, child id) -> its parent's ID, None when it has none; absent: not found."""
        wanted: dict[str, list[str]] = defaultdict(list)
        for event in changes:
            if self.mapping.objects[event.entity].parent is not None:
                wanted[event.entity].extend(event.record_ids)
        found: dict[tuple[str, str], str | None] = {}
        for entity, ids in wanted.items():
            parent = self.mapping.objects[entity].parent
            assert parent is not None
            for child_id, parent_id in self.reader.parents(entity, parent.field, ids).items():
                found[(entity, child_id)] = parent_id or None
        return found

    # --- reading and producing ----------------------------------------------------------------

    def _produce_targets(self, targets: list[Target], batch: _Batch) -> None:
        live: dict[str, list[str]] = defaultdict(list)
        gone: dict[str, list[str]] = defaultdict(list)
        for target in targets:
            (gone if target.deleted else live)[target.entity].append(target.record_id)
        records: dict[tuple[str, bool], dict[str, dict[str, Any]]] = {}
        for entity, ids in live.items():
            records[(entity, False)] = self.reader.read(entity, ids)
            missing = [i for i in ids if i not in records[(entity, False)]]
            if missing:  # deleted since the event, or not visible: queryAll tells which
                records[(entity, False)].update(self.reader.read(entity, missing, include_deleted=True))
        for entity, ids in gone.items():
            records[(entity, True)] = self.reader.read(entity, ids, include_deleted=True)
        for target in targets:
            record = records[(target.entity, target.deleted)].get(target.record_id)
            if record is None:
                self._not_visible(target, batch)
            elif record.get("IsDeleted") and not target.deleted:
                SOURCE_RECORDS.labels(target.entity, "deleted_since").inc()
            else:
                self._produce_one(target, record, batch)

    def _not_visible(self, target: Target, batch: _Batch) -> None:
        """An event names a record that neither query nor queryAll returns: dead-letter it, saying so."""
        what = "deleted record" if target.deleted else "record"
        error = Permanent(
            f"{target.entity} {target.record_id}: the event names it but Salesforce does not return the "
            f"{what} to the integration user: it cannot see it (sharing, record access) or it was "
            "hard-deleted. Give the integration user access, then replay this dead letter",
            field="recordIds",
            value=target.record_id,
        )
        log.warning(
            "%s %s is not visible to the integration user: dead-lettered", target.entity, target.record_id
        )
        batch.failed.append((_failed_target(target, None), error))
        SOURCE_RECORDS.labels(target.entity, "not_visible").inc()

    def _produce_one(self, target: Target, record: dict[str, Any], batch: _Batch) -> None:
        obj = self.mapping.producing(target.entity)
        assert obj is not None
        if not self._in_scope(obj, target, record):
            SOURCE_RECORDS.labels(target.entity, "not_in_state").inc()
            return
        try:
            mapped = self.mapper.object_record(
                target.entity,
                record,
                event_id=target.event_id,
                event_time_ms=target.commit_timestamp_ms,
                deleted=target.deleted,
            )
        except (Retriable, Backpressure):
            raise
        except Exception as exc:  # Permanent, or a bug: this record alone, not the stream
            if not isinstance(exc, Permanent):
                log.exception("dead-lettering %s %s: mapping it failed", target.entity, target.record_id)
            batch.failed.append((_failed_target(target, record), exc))
            SOURCE_RECORDS.labels(target.entity, "dead_letter").inc()
            return
        batch.records.append(mapped)
        SOURCE_RECORDS.labels(target.entity, "produced").inc()

    def _in_scope(self, obj: ObjectMapping, target: Target, record: Mapping[str, Any]) -> bool:
        """Whether to produce: objects with `when` only when one of their own events moved the
        record into the state (its body sets the field to one of the values) and it is still in
        it, or a gap/catch-up read finds it in it; a deleted record that was in the state."""
        if obj.when is None:
            return True
        if not self.mapper.in_state(target.entity, record):
            return False
        if target.deleted or target.reread:
            return True
        return self.mapper.enters_state(target.entity, target.values)

    def _produce_platform_event(self, event: PlatformEvent, batch: _Batch) -> None:
        try:
            mapped = self.mapper.platform_event_record(
                event.channel,
                event.payload,
                event_id=event_uuid(event.channel, event.replay_id, event.payload.get("EventUuid", "")),
                created_ms=event.created_ms,
            )
        except Permanent as exc:
            batch.failed.append((_failed(event.channel, event.replay_id, None, event.raw), exc))
            return
        batch.records.append(mapped)

    # --- catch-up reads -----------------------------------------------------------------------

    def catch_up(self, channel: str, since_ms: int, reason: str) -> Iterator[SourceBatch]:
        """Every record of the channel's objects modified since `since_ms`, page by page; the last
        batch moves the channel to a by-time position at its old checkpoint (the stream then
        continues with -2, skipping retained events older than it)."""
        CATCHUP_READS.labels(channel, reason).inc()
        for entity in self.entities(channel):
            for page in self._catch_up_entity(entity, since_ms):
                yield page.done(checkpoint=False)
        current = self.storage.position(channel)
        checkpoint = current.checkpoint_ms if current is not None else int(time.time() * 1000)
        yield SourceBatch(positions={channel: ChannelPosition(None, checkpoint).to_json()})

    def _catch_up_entity(self, entity: str, since_ms: int) -> Iterator[_Batch]:
        """Pages of at most CATCHUP_PAGE records modified since `since_ms` (a page has no positions)."""
        obj = self.mapping.objects[entity]
        page: list[tuple[str, str, ChangeEvent | None, str, int, str]] = []
        batch = _Batch({}, [], [])
        count = 0
        for record in self.reader.modified_since(entity, since_ms):
            count += 1
            stamp = str(record.get("SystemModstamp") or "")
            stamp_ms = _epoch_ms(stamp) or since_ms
            record_id = str(record["Id"])
            event_id = event_uuid("catchup", entity, record_id, stamp)
            if obj.parent is None:
                deleted = bool(record.get("IsDeleted"))
                target = Target(entity, record_id, deleted, True, {}, stamp_ms, event_id, None)
                self._produce_one(target, record, batch)
            else:
                parent_id = record.get(obj.parent.field)
                if parent_id:
                    page.append((obj.parent.object, str(parent_id), None, "CATCHUP", stamp_ms, event_id))
                if len(page) >= CATCHUP_PAGE:
                    self._produce_targets(collapse(page), batch)
                    page = []
            if len(batch.records) + len(batch.failed) >= CATCHUP_PAGE:
                yield batch
                batch = _Batch({}, [], [])
        if page:
            self._produce_targets(collapse(page), batch)
        if batch.records or batch.failed:
            yield batch
        CATCHUP_RECORDS.labels(entity).inc(count)
        log.info("catch-up read of %s since %d ms found %d records", entity, since_ms, count)


def _replay_id(message: Any) -> int | None:
    try:
        value = message["data"]["event"]["replayId"]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _failed(channel: str, replay_id: int | None, record_id: str | None, raw: Any) -> FailedRecord:
    try:
        value = json.dumps(raw, separators=(",", ":"), default=str).encode()
    except (TypeError, ValueError):
        value = repr(raw).encode()
    return FailedRecord(
        topic=channel,
        partition=0,
        offset=replay_id if replay_id is not None else -1,
        key=record_id.encode() if record_id else None,
        value=value,
        headers=[("salesforce.channel", channel.encode())],
    )


def _failed_target(target: Target, record: Mapping[str, Any] | None) -> FailedRecord:
    source = target.source
    if source is not None:
        failed = _failed(source.channel, source.replay_id, target.record_id, source.raw)
    else:  # a catch-up read: the record itself is what we have
        failed = _failed(f"catchup:{target.entity}", None, target.record_id, record)
    headers = [*(failed.headers or []), ("salesforce.entity", target.entity.encode())]
    return FailedRecord(failed.topic, failed.partition, failed.offset, failed.key, failed.value, headers)


def _epoch_ms(stamp: str) -> int | None:
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return None
