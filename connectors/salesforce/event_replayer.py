"""Replaying the Salesforce source's dead letters: the event a dead letter keeps, processed again.

Owns `SalesforceEventReplayer.reread`, the `reread` of the salesforce-source's sagesf.source
`Replayer` (`sagesf dlq replay salesforce-source`, wired in connectors/salesforce/components.py).
A dead letter of the CDC source keeps the streaming message it failed on as JSON, its channel as
origin and the record ID as key (change_reader `_failed`); after the fix (a value map completed,
the record corrected) the message goes through a `ChangeReader` again, as the stream would hand
it over: the record is read as it is now and mapped with the mapping in use, so a record keeps
its event ID. A change event naming several records is narrowed to the dead-lettered one. A
record dead-lettered by a catch-up read (origin `catchup:<Object>`, the record itself as value)
is read again through a GAP_UPDATE event for it (a re-read by definition).

The change reader here has no positions: it skips no event as older than a stream's start, and
nothing it reads moves a replay ID (the running source stores those).

Limits: the record is produced as it is at replay time, not as it was when the event came. A
catch-up re-read gets a new event ID (the original's commit stamp is not in the dead letter).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable
from typing import Any

from aiosfstream_ng.replay import ReplayMarkerStorage

from connectors.salesforce.change_reader import ChangeReader
from connectors.salesforce.record_mapper import RecordMapper
from connectors.salesforce.record_reader import RecordReader
from connectors.salesforce.replay_storage import ChannelPosition, PositionReplayStorage
from connectors.salesforce.source_mapping import SourceMapping
from sagesf.dead_letter_writer import FailedRecord
from sagesf.errors import Permanent
from sagesf.publisher import CanonicalRecord
from sagesf.source import NotReplayable

__all__ = ["SalesforceEventReplayer"]

CATCHUP = "catchup:"


class _NoPositions(PositionReplayStorage):
    """Replay storage that knows no channel: nothing is skipped by time, nothing stored."""

    def __init__(self) -> None:
        ReplayMarkerStorage.__init__(self)
        self.channels = []

    def position(self, channel: str) -> ChannelPosition | None:
        return None

    def skips(self, channel: str, commit_ms: int) -> bool:
        return False


class SalesforceEventReplayer:
    """Processes the Salesforce source's dead-lettered events again (see the module doc)."""

    def __init__(
        self,
        mapping: SourceMapping,
        reader: RecordReader,
        mapper: RecordMapper,
        *,
        echo_clients: Iterable[str],
        echo_users: Iterable[str],
    ) -> None:
        self.changes = ChangeReader(
            mapping=mapping,
            reader=reader,
            mapper=mapper,
            storage=_NoPositions(),
            echo_clients=echo_clients,
            echo_users=echo_users,
        )

    def reread(self, failed: FailedRecord) -> list[CanonicalRecord]:
        """The records the dead-lettered event stands for now; the Permanent it still fails with."""
        try:
            kept = json.loads(failed.value or b"")
        except ValueError:
            raise NotReplayable(f"{failed.topic}: the dead letter holds no JSON event") from None
        record_id = failed.key.decode() if failed.key else None
        if failed.topic.startswith(CATCHUP):
            message = _gap_update(failed.topic.removeprefix(CATCHUP), kept)
        elif failed.topic.startswith("/"):
            message = _narrowed(kept, record_id)
        else:
            raise NotReplayable(f"{failed.topic!r} is not a Salesforce channel")
        records: list[CanonicalRecord] = []
        for batch in self.changes.read([message]):
            for rejected in batch.rejected:
                error = rejected.error
                raise error if isinstance(error, Permanent) else Permanent(str(error))
            records.extend(batch.records)
        return records


def _narrowed(message: Any, record_id: str | None) -> Any:
    """The change event limited to `record_id` when it names several records (the others were
    published already); other messages as they are."""
    try:
        header = message["data"]["payload"]["ChangeEventHeader"]
        ids = header["recordIds"]
    except (KeyError, TypeError):
        return message
    if record_id is None or not isinstance(ids, list) or record_id not in ids or len(ids) == 1:
        return message
    narrowed = copy.deepcopy(message)
    narrowed["data"]["payload"]["ChangeEventHeader"]["recordIds"] = [record_id]
    return narrowed


def _gap_update(entity: str, record: Any) -> dict[str, Any]:
    """A GAP_UPDATE change event for the record a catch-up read dead-lettered."""
    if not isinstance(record, dict) or not record.get("Id"):
        raise NotReplayable(f"{CATCHUP}{entity}: the dead letter holds no record with an Id")
    name = entity.removesuffix("__c") + "__" if entity.endswith("__c") else entity
    record_id = str(record["Id"])
    header = {
        "entityName": entity,
        "recordIds": [record_id],
        "changeType": "GAP_DELETE" if record.get("IsDeleted") else "GAP_UPDATE",
        "changeOrigin": "",
        "transactionKey": f"replay-{record_id}",
        "sequenceNumber": 0,
        "commitTimestamp": int(time.time() * 1000),
    }
    return {
        "channel": f"/data/{name}ChangeEvent",
        "data": {"event": {"replayId": 0}, "payload": {"ChangeEventHeader": header}},
    }
