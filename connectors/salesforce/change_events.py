"""Streaming messages as the CDC source sees them: change events, platform events, echoes, targets.

What it owns: turning one delivered CometD message into a `ChangeEvent` (CDC, `/data/...`) or a
`PlatformEvent` (`/event/...`), or refusing it with `MalformedEvent` (a `Permanent`: the source
dead-letters it with the reason); recognising our own writes (`is_echo`: the `changeOrigin` ends
in `;client=<our id>` AND the `commitUser` is the integration user; anyone can send the header,
so the client alone proves nothing); and `collapse()`, which turns a batch of change events
into one `Target` per record to read, so a record changed five times in a batch is read and
produced once.

How it works: a CDC message is `{"channel", "data": {"event": {"replayId"}, "payload":
{"ChangeEventHeader": {entityName, recordIds, changeType, changeOrigin, transactionKey,
sequenceNumber, commitTimestamp, changedFields, ...}, <fields>}}}` (Salesforce's Change Data
Capture guide). The source re-reads records instead of trusting the body (UPDATE bodies hold
only the changed fields), so the body serves one purpose: telling which event moved a record
into a produced state (its StageName became Closed Won), independent of when the record is read.
`collapse` keeps, per (object, record), the last change type (a DELETE after an UPDATE makes a
deleted record), the body values of the record's own events (later ones win), and whether a
gap event or catch-up read (no body) touched it.

Limits: body values are top-level fields only (compound fields such as BillingAddress stay
nested and are not looked into). A change that is undone before the read is seen as the
current state, which is what the compacted topics keep anyway. The changeOrigin client
test is exact: `client=sagesf` does not match `client=sagesf-2`; user IDs compare on their first
15 characters (18 = 15 + checksum).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sagesf.errors import Permanent

__all__ = [
    "CHANGE_TYPES",
    "GAP_TYPES",
    "ChangeEvent",
    "MalformedEvent",
    "PlatformEvent",
    "Target",
    "collapse",
    "event_uuid",
    "is_echo",
    "origin_client",
    "parse_message",
]

CHANGE_TYPES = frozenset({"CREATE", "UPDATE", "DELETE", "UNDELETE"})
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"})
DELETES = frozenset({"DELETE", "GAP_DELETE"})
_DERIVED = frozenset({"CHILD", "CATCHUP"})  # targets found through another record, not its own event
# namespace of the deterministic event IDs (a redelivered change gets the same envelope.event_id)
_EVENT_NS = uuid.UUID("6f1d8a52-5b0e-4c5e-9a57-1f3f0b8c2d41")


class MalformedEvent(Permanent):
    """A streaming message that is not a change or platform event this source understands."""


@dataclass(frozen=True)
class ChangeEvent:
    channel: str
    replay_id: int
    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    changed_fields: frozenset[str]
    change_origin: str
    commit_user: str  # the Id of the user whose transaction made the change
    transaction_key: str
    sequence_number: int
    commit_timestamp_ms: int
    fields: dict[str, Any] = field(repr=False, compare=False)  # the body: every field but the header
    raw: dict[str, Any] = field(repr=False, compare=False)

    def raw_bytes(self) -> bytes:
        return json.dumps(self.raw, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PlatformEvent:
    channel: str
    replay_id: int
    payload: dict[str, Any]
    created_ms: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    def raw_bytes(self) -> bytes:
        return json.dumps(self.raw, separators=(",", ":")).encode()


def parse_message(message: Any) -> ChangeEvent | PlatformEvent:
    """The event in one delivered message; raises MalformedEvent saying what is wrong."""
    if not isinstance(message, dict):
        raise MalformedEvent("a streaming message must be a JSON object")
    channel = message.get("channel")
    data = message.get("data")
    if not isinstance(channel, str) or not isinstance(data, dict):
        raise MalformedEvent("a streaming message needs `channel` and a `data` object", field="data")
    event = data.get("event")
    replay_id = event.get("replayId") if isinstance(event, dict) else None
    if not isinstance(replay_id, int) or isinstance(replay_id, bool):
        raise MalformedEvent("the message has no integer data.event.replayId", field="data.event.replayId")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise MalformedEvent("the message has no data.payload object", field="data.payload")
    if channel.startswith("/event/"):
        return PlatformEvent(channel, replay_id, payload, _created_ms(payload), message)
    header = payload.get("ChangeEventHeader")
    if not isinstance(header, dict):
        raise MalformedEvent("a change event needs data.payload.ChangeEventHeader", field="ChangeEventHeader")
    body = {name: value for name, value in payload.items() if name != "ChangeEventHeader"}
    return _change_event(channel, replay_id, header, body, message)


def _change_event(
    channel: str, replay_id: int, header: dict[str, Any], body: dict[str, Any], raw: dict[str, Any]
) -> ChangeEvent:
    entity = header.get("entityName")
    change_type = header.get("changeType")
    record_ids = header.get("recordIds")
    commit = header.get("commitTimestamp")
    if not isinstance(entity, str) or not entity:
        raise MalformedEvent("ChangeEventHeader.entityName is missing", field="entityName")
    if not isinstance(change_type, str) or (change_type not in CHANGE_TYPES and change_type not in GAP_TYPES):
        raise MalformedEvent(
            f"unknown ChangeEventHeader.changeType {change_type!r}", field="changeType", value=change_type
        )
    if not isinstance(record_ids, list) or not all(isinstance(r, str) and r for r in record_ids):
        raise MalformedEvent("ChangeEventHeader.recordIds must be a list of record IDs", field="recordIds")
    if not record_ids and change_type != "GAP_OVERFLOW":
        raise MalformedEvent(f"a {change_type} event without recordIds", field="recordIds")
    if not isinstance(commit, int) or isinstance(commit, bool):
        raise MalformedEvent(
            "ChangeEventHeader.commitTimestamp must be epoch milliseconds", field="commitTimestamp"
        )
    changed = header.get("changedFields") or []
    sequence = header.get("sequenceNumber")
    return ChangeEvent(
        channel=channel,
        replay_id=replay_id,
        entity=entity,
        change_type=str(change_type),
        record_ids=tuple(record_ids),
        changed_fields=frozenset(str(f) for f in changed) if isinstance(changed, list) else frozenset(),
        change_origin=str(header.get("changeOrigin") or ""),
        commit_user=str(header.get("commitUser") or ""),
        transaction_key=str(header.get("transactionKey") or ""),
        sequence_number=sequence if isinstance(sequence, int) else 0,
        commit_timestamp_ms=commit,
        fields=body,
        raw=raw,
    )


def _created_ms(payload: dict[str, Any]) -> int:
    created = payload.get("CreatedDate")
    if isinstance(created, str):
        try:
            return int(datetime.fromisoformat(created).timestamp() * 1000)
        except (ValueError, OverflowError, OSError):
            pass
    raise MalformedEvent("a platform event needs CreatedDate (ISO 8601)", field="CreatedDate", value=created)


def origin_client(change_origin: str) -> str | None:
    """The `client=` part of a changeOrigin (`com/salesforce/api/rest/62.0;client=sagesf`)."""
    for part in change_origin.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "client" and value.strip():
            return value.strip()
    return None


def is_echo(event: ChangeEvent, clients: frozenset[str], users: frozenset[str]) -> bool:
    """Whether our own write made `event`: its origin names one of our `clients` and the user who
    committed it is one of our `users` (15-character IDs)."""
    client = origin_client(event.change_origin)
    return client is not None and client in clients and event.commit_user[:15] in users


def event_uuid(*parts: object) -> str:
    """A deterministic event ID: the same change read again gets the same ID."""
    return str(uuid.uuid5(_EVENT_NS, "/".join(str(p) for p in parts)))


@dataclass
class Target:
    """One record to read and produce (or to produce as deleted), after collapsing a batch."""

    entity: str
    record_id: str
    deleted: bool
    reread: bool  # a gap event or a catch-up read: no body says what changed
    values: dict[str, Any]  # field values the record's own events carried (CREATE, UPDATE, UNDELETE)
    commit_timestamp_ms: int
    event_id: str
    source: ChangeEvent | None  # the last event behind it (None for catch-up reads)


def collapse(items: Iterable[tuple[str, str, ChangeEvent | None, str, int, str]]) -> list[Target]:
    """One Target per (entity, record) in order of last appearance.

    Items are (entity, record_id, event, change_type, commit_ms, event_id); change_type may also
    be "CHILD" (a child record changed) or "CATCHUP" (a catch-up read found it modified); those
    never turn a deleted target back into a live one (deleting an Account also deletes its
    Contacts, whose DELETE events may come after the Account's). `values` gathers the bodies of
    the record's own events, later ones winning, so the processor can tell which event moved the
    record into a state (StageName = Closed Won) whatever the state is by the time it is read.
    """
    merged: dict[tuple[str, str], Target] = {}
    for entity, record_id, event, change_type, commit_ms, event_id in items:
        key = (entity, record_id)
        target = merged.pop(key, None)
        deleted = change_type in DELETES
        reread = (change_type in GAP_TYPES and not deleted) or change_type == "CATCHUP"
        if target is None:
            target = Target(entity, record_id, deleted, False, {}, commit_ms, event_id, event)
        else:
            if change_type not in _DERIVED:  # a child's change never undoes the parent's deletion
                target.deleted = deleted
            target.commit_timestamp_ms = max(target.commit_timestamp_ms, commit_ms)
            target.event_id = event_id
            target.source = event or target.source
        target.reread = target.reread or reread
        if event is not None and change_type in CHANGE_TYPES:
            target.values.update(event.fields)
        merged[key] = target  # re-inserted: order of last appearance
    return list(merged.values())
