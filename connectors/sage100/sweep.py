"""The key sweep: finds Sage 100 rows that vanished or changed without a new DateUpdated.

Owns `KeySweeper`. Over ODBC a deleted row is simply gone, and some Sage processes (Visual
Integrator imports, batch updates) change rows without touching DateUpdated/TimeUpdated, so the
change poll cannot see either. Every `sweep_interval` the sweeper reads every key of its table
with the stream's status columns (CustomerStatus; InactiveItem and ItemType; OrderStatus) and
compares them with what it knows:
- a key it knew that is no longer there -> the stream's "vanished" records (a Customer or Item
  with deleted=true, an inventory tombstone, an OrderStatusChange CLOSED/DELETED read from
  SO_SalesOrderHistoryHeader, a contact's customer republished);
- a key whose status columns differ from the last version the poller saw -> the row is read
  again and published as it is now (a deactivation nobody stamped).
What it knows is the previous sweep plus every row version the poller handled since (including
the integration user's echoes, so the sweep never republishes our own writes), so a row created
and deleted between two sweeps is still reported deleted. A changed row that cannot be mapped
(an ItemType of 9 written by an import) is a dead letter in `SweepResult.rejected`, and the sweep
goes on; a row with a NULL key column has no identity to compare and is left to the poll, which
dead-letters it.

The caller publishes the records and calls `commit()` only after Kafka acknowledged them; a
failure leaves the sweeper's knowledge as it was and the next sweep finds the same differences.

Limits: what the sweeper knows lives in memory (about 100 bytes per row; a million-row table is
about 100 MB), so the first sweep after a start is a baseline that reports nothing: a row
deleted while the source was stopped is not reported. A sweep reads the whole key set (one full
scan of the table through ODBC); keep `sweep_interval` in minutes to hours, not seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from connectors.sage100.odbc import Q, SageOdbc
from connectors.sage100.streams import Group, OutRecord, Stream
from sagesf.errors import Permanent
from sagesf.source import Rejected

log = logging.getLogger(__name__)

__all__ = ["KeySweeper", "SweepResult"]

_SEP = "\x1f"


@dataclass
class SweepResult:
    records: list[OutRecord]
    vanished: int
    changed: int
    keys: int
    baseline: bool
    _current: dict[str, str]
    rejected: list[Rejected] = field(default_factory=list)


class KeySweeper:
    def __init__(self, stream: Stream, odbc: SageOdbc, batch: int = 20_000) -> None:
        self.stream = stream
        self.odbc = odbc
        self.batch = batch
        q = Q(stream.table)
        self.columns = [*stream.table.key, *stream.sweep_columns]
        self.sql = q.select(self.columns)
        # status columns' positions in the poller's rows, to learn from what the poller saw
        self._status_ix = [stream.column_index[c] for c in stream.sweep_columns if c in stream.column_index]
        self.known: dict[str, str] | None = None
        self._seen_since: dict[str, str] = {}

    def note(self, group: Group) -> None:
        """The poller handled this row version (published, duplicate or echo)."""
        if not group.rows or not group.identified:
            return
        row = group.rows[0]
        status = _SEP.join(str(row[i]).rstrip() if row[i] is not None else "" for i in self._status_ix)
        self._seen_since[_SEP.join(group.key)] = status

    def sweep(self) -> SweepResult:
        """Read every key and status; the records to publish for what vanished or changed."""
        width = len(self.stream.table.key)
        current: dict[str, str] = {}
        for chunk in self.odbc.rows(self.sql, batch=self.batch):
            for row in chunk:
                if None in row[:width]:
                    continue  # no identity to compare: the poll dead-letters it
                key = _SEP.join(str(v).rstrip() for v in row[:width])
                current[key] = _SEP.join(str(v).rstrip() if v is not None else "" for v in row[width:])
        if self.known is None:
            return SweepResult([], 0, 0, len(current), True, current)
        known = {**self.known, **self._seen_since}
        result = SweepResult([], 0, 0, len(current), False, current)
        for key, status in known.items():
            now = current.get(key)
            if now is None:
                result.vanished += 1
                parts = tuple(status.split(_SEP)) if status else ()
                gone = tuple(key.split(_SEP))
                try:
                    result.records.extend(self.stream.vanished(gone, parts, self.odbc))
                except Permanent as exc:
                    result.rejected.append(self.stream.rejected(self.stream.gone(gone, "vanished"), exc))
            elif now != status and self._status_ix:
                group = self.stream.read_key(self.odbc, key.split(_SEP))
                if group is not None:
                    result.changed += 1
                    try:
                        result.records.extend(self.stream.map(group, self.odbc))
                    except Permanent as exc:
                        result.rejected.append(self.stream.rejected(group, exc))
        return result

    def commit(self, result: SweepResult) -> None:
        """Kafka acknowledged `result.records`: the current keys are now what we know."""
        self.known = result._current
        self._seen_since = {}
