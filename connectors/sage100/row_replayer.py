"""Replaying the Sage source's dead letters: the row a dead letter names, read again and mapped.

Owns `SageRowReplayer.reread`, the `reread` of the sage-source's sagesf.source `Replayer`
(`sagesf dlq replay sage-source`, wired in sage100.components). A dead letter of the source
(sage100.streams `Stream.rejected`) names its table (its origin topic) and its key (in its JSON
value); the row is read by that key as it is now, after the fix, and mapped by the same stream
the poller uses, so the records are the ones the poll would publish for that row version (the
same event ID). Nothing here moves a watermark or the key sweep's knowledge.

Limits: a row whose key had a NULL column cannot be read by key: fix or delete it in Sage, and
the poll or the sweep publishes what becomes of it. A row deleted since is not replayed (the key
sweep reports deletions). A dead letter written before the JSON value named the key is keyed by
its first row's key columns.
"""

from __future__ import annotations

import json
from typing import Any

from connectors.sage100.config import POLLABLE_TABLES, Sage100Settings
from connectors.sage100.odbc import SageOdbc
from connectors.sage100.streams import MappingContext, Stream, build_streams
from sagesf.dead_letter_writer import FailedRecord
from sagesf.publisher import CanonicalRecord
from sagesf.source import NotReplayable

__all__ = ["SageRowReplayer"]


class SageRowReplayer:
    """Reads again the Sage rows the source dead-lettered (see the module doc)."""

    def __init__(self, settings: Sage100Settings, odbc: SageOdbc) -> None:
        self.odbc = odbc
        ctx = MappingContext(
            settings.zone,
            settings.salesforce_id_udf,
            settings.source.topics,
            integration_user=settings.integration_user_key,
        )
        self.streams: dict[str, Stream] = build_streams(settings.tables(), POLLABLE_TABLES, ctx)

    def reread(self, failed: FailedRecord) -> list[CanonicalRecord]:
        """The records of the row `failed` names, as it is now; NotReplayable when it cannot be
        read by key or no longer exists, BadRow (Permanent) when it still cannot be mapped."""
        stream = self.streams.get(failed.topic)
        if stream is None:
            raise NotReplayable(f"{failed.topic!r} is not a table the Sage source reads")
        key = _key(failed, stream)
        if any(part is None for part in key):
            raise NotReplayable(
                f"{failed.topic}: a key column is NULL, so the row cannot be read by key; fix or delete "
                "it in Sage"
            )
        group = stream.read_key(self.odbc, [str(part) for part in key])
        if group is None:
            shown = "-".join(str(part) for part in key)
            raise NotReplayable(f"{failed.topic} {shown} no longer exists (the key sweep reports deletions)")
        return list(stream.map(group, self.odbc))


def _key(failed: FailedRecord, stream: Stream) -> list[Any]:
    """The row key a dead letter names: its `key` map, else its first row's key columns."""
    try:
        body = json.loads(failed.value or b"")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise NotReplayable(f"{failed.topic}: the dead letter holds no JSON row to read a key from")
    named = body.get("key")
    if isinstance(named, dict):
        return [named.get(column) for column in stream.table.key]
    rows = body.get("rows") or [{}]
    return [rows[0].get(column) for column in stream.table.key]
