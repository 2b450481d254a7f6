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

What it knows is also stored in positions.v1, so the first sweep after a start compares with
what the last one knew and a row deleted while the source was stopped is reported. It is stored
under `<component>/<table>/keys/<i>`, the keys split into buckets by a CRC-32 of the key
(`BUCKET_BYTES` of JSON each before zlib, so one record stays far below Kafka's 1 MB message
limit), and only the buckets a sweep changed are written again; the poller's notes since the
last sweep go with its checkpoints as `<table>/keys/since`, folded into the buckets when they
pass `SINCE_MAX`. Why the sweep's own knowledge and not the canonical compacted topics: it is
exact for every table (orderstatus.v1 is not compacted, customer.v1 also holds Salesforce
records keyed by Account ID), it needs no schema registry to read, and it is what the sweep
compares with anyway.

The caller publishes the records and stores `SweepResult.positions`, and calls `commit()` only
after Kafka acknowledged both; a failure leaves the sweeper's knowledge as it was and the next
sweep finds the same differences.

Limits: what the sweeper knows also lives in memory (about 100 bytes per row; a million-row table
is about 100 MB); on first start, with nothing stored, the first sweep is a baseline that
reports nothing. A sweep reads the whole key set (one full scan of the table through ODBC); keep
`sweep_interval` in minutes to hours, not seconds.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.sage100.odbc import Q, SageOdbc
from connectors.sage100.streams import Group, OutRecord, Stream
from sagesf.errors import Permanent
from sagesf.source import Rejected

log = logging.getLogger(__name__)

__all__ = ["BUCKET_BYTES", "SINCE_MAX", "KeySweeper", "SweepResult"]

_SEP = "\x1f"
KNOWLEDGE_VERSION = 1
BUCKET_BYTES = 600_000  # JSON per stored bucket, before zlib
SINCE_MAX = 5_000  # notes stored apart before they are folded into the buckets
Buckets = list[dict[str, str]]  # key -> status, split by `_bucket`


def _bucket(key: str, count: int) -> int:
    return zlib.crc32(key.encode()) % count


def _pack(entries: Mapping[str, str]) -> str:
    text = json.dumps(entries, separators=(",", ":"), sort_keys=True)
    return base64.b64encode(zlib.compress(text.encode(), 6)).decode("ascii")


def _unpack(data: Any) -> dict[str, str]:
    entries = json.loads(zlib.decompress(base64.b64decode(str(data))))
    if not isinstance(entries, dict):
        raise ValueError("not a map of keys")
    return {str(k): str(v) for k, v in entries.items()}


def _bucket_count(entries: Mapping[str, str], at_least: int, bucket_bytes: int) -> int:
    size = sum(len(k) + len(v) + 6 for k, v in entries.items())
    count = max(at_least, 1)
    while count * bucket_bytes < size:
        count *= 2
    return count


@dataclass
class SweepResult:
    records: list[OutRecord]
    vanished: int
    changed: int
    keys: int
    baseline: bool
    _buckets: Buckets
    rejected: list[Rejected] = field(default_factory=list)
    positions: dict[str, Any] = field(default_factory=dict)  # the knowledge to store with the records


class KeySweeper:
    def __init__(
        self,
        stream: Stream,
        odbc: SageOdbc,
        batch: int = 20_000,
        stored: Mapping[str, Any] | None = None,
        *,
        bucket_bytes: int = BUCKET_BYTES,
        since_max: int = SINCE_MAX,
    ) -> None:
        """`stored`: this table's knowledge as positions.v1 holds it (`<i>` and `since` -> value)."""
        self.stream = stream
        self.odbc = odbc
        self.batch = batch
        self.bucket_bytes = bucket_bytes
        self.since_max = since_max
        q = Q(stream.table)
        self.columns = [*stream.table.key, *stream.sweep_columns]
        self.sql = q.select(self.columns)
        self.prefix = f"{stream.name}/keys/"
        # status columns' positions in the poller's rows, to learn from what the poller saw
        self._status_ix = [stream.column_index[c] for c in stream.sweep_columns if c in stream.column_index]
        self.known: Buckets | None = None
        self._since: dict[str, str] = {}
        self._since_stored = False
        if stored:
            self._restore(stored)

    # --- what the poller saw ---------------------------------------------------------------------

    def noting(self, groups: Sequence[Group]) -> tuple[dict[str, Any], Callable[[], None]]:
        """The poller handled these row versions (published, duplicate, echo or dead-lettered): what
        to store with the checkpoint that confirms them, and what to do once it is stored."""
        notes = {}
        for group in groups:
            if group.rows and group.identified:
                row = group.rows[0]
                parts = (str(row[i]).rstrip() if row[i] is not None else "" for i in self._status_ix)
                notes[_SEP.join(group.key)] = _SEP.join(parts)
        if not notes:
            return {}, _nothing
        if self.known is None:  # no baseline yet: the first sweep takes one, nothing to compare
            return {}, lambda: self._since.update(notes)
        since = {**self._since, **notes}
        if len(since) <= self.since_max:

            def remember() -> None:
                self._since.update(notes)
                self._since_stored = True

            return {self.prefix + "since": self._since_position(since)}, remember
        known, count = self.known, len(self.known)
        folded: dict[int, dict[str, str]] = {}
        for key, status in since.items():
            i = _bucket(key, count)
            folded.setdefault(i, dict(known[i]))[key] = status
        positions = {self.prefix + str(i): self._bucket_position(b, count) for i, b in folded.items()}
        positions[self.prefix + "since"] = self._since_position({})

        def fold() -> None:
            for i, bucket in folded.items():
                known[i] = bucket
            self._since, self._since_stored = {}, False

        return positions, fold

    # --- the sweep -------------------------------------------------------------------------------

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
        buckets, positions = self._store(current)
        if self.known is None:
            return SweepResult([], 0, 0, len(current), True, buckets, positions=positions)
        known: dict[str, str] = {}
        for bucket in self.known:
            known.update(bucket)
        known.update(self._since)
        result = SweepResult([], 0, 0, len(current), False, buckets, positions=positions)
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
        """Kafka acknowledged `result.records` and `result.positions`: the current keys are now
        what we know."""
        self.known = result._buckets
        self._since, self._since_stored = {}, False

    # --- stored knowledge ------------------------------------------------------------------------

    def _store(self, current: dict[str, str]) -> tuple[Buckets, dict[str, Any]]:
        """`current` in buckets, and the positions of the buckets that differ from what is stored."""
        before = self.known or []
        count = _bucket_count(current, len(before), self.bucket_bytes)
        buckets: Buckets = [{} for _ in range(count)]
        for key, status in current.items():
            buckets[_bucket(key, count)][key] = status
        positions = {
            self.prefix + str(i): self._bucket_position(bucket, count)
            for i, bucket in enumerate(buckets)
            if count != len(before) or bucket != before[i]
        }
        if self._since_stored:
            positions[self.prefix + "since"] = self._since_position({})
        return buckets, positions

    @staticmethod
    def _bucket_position(bucket: Mapping[str, str], count: int) -> dict[str, Any]:
        return {"v": KNOWLEDGE_VERSION, "n": count, "rows": _pack(bucket)}

    @staticmethod
    def _since_position(since: Mapping[str, str]) -> dict[str, Any]:
        return {"v": KNOWLEDGE_VERSION, "rows": _pack(since)}

    def _restore(self, stored: Mapping[str, Any]) -> None:
        """The knowledge stored by the last run; unreadable or incomplete: none (a baseline)."""
        try:
            buckets = {int(k): v for k, v in stored.items() if k.isdigit()}
            count = int(buckets[0]["n"]) if buckets else 0
            if not count or any(
                not isinstance(buckets.get(i), dict)
                or buckets[i].get("n") != count
                or buckets[i].get("v") != 1
                for i in range(count)
            ):
                if buckets:
                    log.warning(
                        "%s: the stored key sweep knowledge is incomplete: taking a baseline", self.prefix
                    )
                return
            known = [_unpack(buckets[i]["rows"]) for i in range(count)]
            since = stored.get("since")
            self._since = _unpack(since["rows"]) if isinstance(since, dict) and since.get("rows") else {}
        except (KeyError, TypeError, ValueError, zlib.error, binascii.Error) as exc:
            log.warning(
                "%s: the stored key sweep knowledge cannot be read (%s): taking a baseline", self.prefix, exc
            )
            self._since = {}
            return
        self.known = known
        self._since_stored = bool(self._since)


def _nothing() -> None:
    """Nothing to remember."""
