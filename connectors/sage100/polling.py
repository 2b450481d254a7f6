"""Change detection for one Sage 100 table: watermark, overlap window, de-duplication, checkpoints.

Owns `ChangePoller`, which reads the rows of one table changed since its watermark, drops the
versions it already published and the integration's own writes, hands the rest to the stream's
mapping, publishes them, and only after Kafka acknowledged them moves its watermark and stores
its position (`PollState`).

How it works, per poll:
1. Lower bound = watermark - overlap window (`overlap_seconds`; Sage stamps are coarse, about a
   third of a second, Standard/Advanced workstations stamp with their own clocks, and a row may
   be committed a little after it was stamped). When daylight saving time ended at or after the
   watermark, the bound goes back to where the repeated local hour starts
   (sage100.values.clock_set_back_start), so the second pass through 01:00-02:00 is read too.
2. The query (sage100.streams, sage100.odbc `Q.changed_since`):
   `(DateUpdated > :d) OR (DateUpdated = :d AND TimeUpdated >= :t)` ordered by
   (DateUpdated, TimeUpdated, key), fetched `FETCH_ROWS` rows at a time.
3. Per row version: skip it if its exact change stamp is below the bound (the text comparison
   of TimeUpdated may admit a few), record its (hash, stamp) under its key, and drop it if the
   same key already had this hash (re-read in the overlap window: a duplicate) or
   UserUpdatedKey is the integration user (an echo of our own write). Otherwise map and publish.
4. Records go to the publisher as each fetch of rows is mapped, so Kafka sends while the next
   rows are read. Every `batch_rows` rows, and at the end, the poller waits for Kafka's
   acknowledgement of everything sent; then the batch's (hash, stamp) entries join `seen`, the
   watermark moves to the last row's (stamp, key) (the key is the tie-break: rows come in that
   order, so a checkpoint inside a burst of equal stamps is exact), `seen` is pruned to the
   rows at or after the new lower bound (the only ones a later poll can re-read), and the
   position is stored. A restarted process resumes from that position with no gap (the bound
   re-reads the window) and no duplicate (`seen` travels in the position).

Ordering is only as good as the text order of TimeUpdated, which is the time order when hours
are zero-padded (`time_pad` "0", the sandbox). With another `time_pad`, or when rows are found
out of order, the poller moves its watermark only at the end of a complete poll (checkpoints
inside the poll store the new `seen` entries with the old watermark); if it had moved the
watermark earlier in that poll, it first puts it back where the poll started, so a crash
re-reads rather than skips.

Failures: a Sage error (Retriable) in the middle of a poll first publishes and checkpoints what
was read, then propagates; a Kafka error (`ProduceFailed`) propagates with the batch not merged,
so the next poll reads those rows again (they may then be published twice: same event IDs).

Limits: rows without a DateUpdated are never read by the poll, and a row deleted and re-created
with identical values and stamp is taken for one already published. The overlap window must exceed
the worst clock skew between Sage workstations and the longest stamp-to-commit delay; a row stamped
earlier than that behind the watermark is missed until the key sweep (which only reports deletions
and status changes) or a reset of the position. `seen` is stored in the position only up to
`max_seen_stored` entries (a burst of more rows within one overlap window is re-published once
after a restart, never lost); in memory it holds the rows of one overlap window, or, without
reliable ordering, of one poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from connectors.sage100.odbc import Row, SageOdbc, SageUnavailable
from connectors.sage100.streams import Group, OutRecord, Stream
from connectors.sage100.values import (
    clock_set_back_start,
    format_hours,
    stamp_local,
    stamp_of,
    stamp_parts,
)
from sagesf.errors import Permanent

log = logging.getLogger(__name__)

__all__ = ["ChangePoller", "PollState", "PollStats", "Publisher"]

POSITION_VERSION = 1
FETCH_ROWS = 5000  # rows per ODBC fetch; acknowledgements and checkpoints come every batch_rows
_SEP = "\x1f"
_TEN_HOURS = 10 * 1_000_000


class Publisher(Protocol):
    """Where the source's records go.

    `publish` hands records over (Kafka may not have them yet); `confirm` returns once Kafka
    acknowledged everything handed over so far, or raises Retriable (`ProduceFailed`);
    `dead_letter` returns once Kafka has the dead letters.
    """

    def publish(self, records: Sequence[OutRecord]) -> None: ...

    def confirm(self) -> None: ...

    def dead_letter(self, items: Sequence[tuple[Stream, Group, Permanent]]) -> None: ...


@dataclass
class PollState:
    """What a stream remembers between polls (and stores in positions.v1)."""

    stamp: int = 0  # watermark: change stamp of the last row published (or passed over)
    key: tuple[str, ...] = ()  # and its key: the tie-break among equal stamps
    seen: dict[tuple[str, ...], tuple[str, int]] = field(default_factory=dict)  # key -> (hash, stamp)

    def to_position(self, max_seen: int) -> dict[str, Any]:
        position: dict[str, Any] = {
            "v": POSITION_VERSION,
            "stamp": self.stamp,
            "local": stamp_local(self.stamp).isoformat() if self.stamp else None,  # for people
            "key": list(self.key),
        }
        if len(self.seen) <= max_seen:
            position["seen"] = {_SEP.join(k): f"{h}:{s}" for k, (h, s) in self.seen.items()}
        else:
            position["seen"] = {}
            position["seen_dropped"] = len(self.seen)
        return position

    @classmethod
    def from_position(cls, position: Any) -> PollState:
        if not isinstance(position, dict) or position.get("v") != POSITION_VERSION:
            if position is not None:
                log.warning("ignoring a stored Sage position in an unknown format: %r", position)
            return cls()
        seen: dict[tuple[str, ...], tuple[str, int]] = {}
        for key, value in (position.get("seen") or {}).items():
            digest, _, stamp = str(value).partition(":")
            seen[tuple(key.split(_SEP))] = (digest, int(stamp))
        return cls(int(position["stamp"]), tuple(position.get("key") or ()), seen)


@dataclass
class PollStats:
    rows: int = 0  # row versions read (inside the bound)
    emitted: int = 0  # published as records
    duplicates: int = 0  # already published (overlap window)
    echoes: int = 0  # written by the integration user
    dead_letters: int = 0
    outside: int = 0  # admitted by the text comparison but below the bound
    records: int = 0
    batches: int = 0
    max_delay: float = 0.0  # longest detection delay of a published record (s)


class ChangePoller:
    def __init__(
        self,
        stream: Stream,
        odbc: SageOdbc,
        publisher: Publisher,
        *,
        integration_user: str,
        zone: ZoneInfo,
        overlap_seconds: float = 10.0,
        batch_rows: int = 20_000,
        time_pad: str = "0",
        state: PollState | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
        on_group: Callable[[Group], None] | None = None,
        observe_delay: Callable[[float], None] | None = None,
        max_seen_stored: int = 10_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.stream = stream
        self.odbc = odbc
        self.publisher = publisher
        self.integration_user = integration_user
        self.zone = zone
        self.overlap = round(overlap_seconds * 1_000_000 / 3600)  # in 1e-6 hours
        self.batch_rows = batch_rows
        self.time_pad = time_pad
        self.ordered = time_pad == "0"
        self.state = state or PollState()
        self.checkpoint = checkpoint
        self.on_group = on_group
        self.observe_delay = observe_delay
        self.max_seen_stored = max_seen_stored
        self.clock = clock
        self._stored = self.state.to_position(max_seen_stored)

    # --- the window ----------------------------------------------------------------------------

    def lower_bound(self, stamp: int, now: datetime | None = None) -> int:
        """The oldest change stamp the next poll must read, for a watermark `stamp`."""
        if stamp <= 0:
            return 0
        bound = stamp - self.overlap
        start = clock_set_back_start(stamp_local(stamp), now or self.clock(), self.zone)
        if start is not None:
            bound = min(bound, stamp_of(start) - self.overlap)
        return max(bound, 0)

    def query(self, bound: int) -> tuple[str, list[Any]]:
        day, micro = stamp_parts(bound)
        morning = micro < _TEN_HOURS
        # truncated to Sage's 4 decimals: never above the bound, so nothing at the bound is missed
        text = format_hours(Decimal(micro) / 1_000_000, pad=self.time_pad)
        params: list[Any] = [day, day, day, text]
        if morning:
            params += ["10", "24"]
        return self.stream.changes_sql(morning), params

    # --- one poll ------------------------------------------------------------------------------

    def poll(self) -> PollStats:
        """Read, publish and checkpoint every change since the watermark; see the module doc."""
        run = _Poll(self)
        try:
            for chunk in self.odbc.rows(*run.sql, batch=min(self.batch_rows, FETCH_ROWS)):
                run.take(chunk)
            run.finish()
        except SageUnavailable:
            try:
                run.flush()  # keep what was read before Sage went away
            except Exception:  # Sage's error is the one to report
                log.warning("could not publish the rows read before Sage became unavailable", exc_info=True)
            raise
        return run.stats

    def store(self, force: bool = False) -> None:
        """Store the position if it changed since it was last stored."""
        position = self.state.to_position(self.max_seen_stored)
        if self.checkpoint is not None and (force or position != self._stored):
            if "seen_dropped" in position:
                log.warning(
                    "%s: %d rows in the overlap window are too many to store with the position; "
                    "after a restart they are published once more",
                    self.stream.name,
                    position["seen_dropped"],
                )
            self.checkpoint(position)
            self._stored = position

    def prune(self, now: datetime) -> None:
        bound = self.lower_bound(self.state.stamp, now)
        seen = self.state.seen
        stale = [k for k, (_, s) in seen.items() if s < bound]
        for k in stale:
            del seen[k]


class _Poll:
    """The working state of one poll (see ChangePoller.poll)."""

    def __init__(self, poller: ChangePoller) -> None:
        self.p = poller
        self.now = poller.clock()
        self.start = (poller.state.stamp, poller.state.key)
        self.bound = poller.lower_bound(poller.state.stamp, self.now)
        self.sql = poller.query(self.bound)
        self.stats = PollStats()
        self.carry: list[Row] = []
        self.outgoing: list[OutRecord] = []  # mapped, not yet handed to the publisher
        self.records: list[OutRecord] = []  # handed to the publisher, not yet acknowledged
        self.dead: list[tuple[Stream, Group, Permanent]] = []
        self.pending: dict[tuple[str, ...], tuple[str, int]] = {}
        self.groups: list[Group] = []
        self.last: tuple[int, tuple[str, ...]] = (0, ())
        self.top: tuple[int, tuple[str, ...]] = self.start
        self.checkpointed = False
        self.ordered = poller.ordered

    def take(self, chunk: list[Row]) -> None:
        rows = self.carry + chunk if self.carry else chunk
        groups = self.p.stream.groups(rows)
        # a multi-row group (customer + contacts) may continue in the next chunk: keep it back
        self.carry = list(groups.pop().rows) if groups and self.p.stream.multi_row else []
        for group in groups:
            self.consider(group)
        self.send()
        if len(self.groups) >= self.p.batch_rows:
            self.flush()

    def send(self) -> None:
        """Hand the mapped records to the publisher; Kafka works on them while we read on."""
        if self.outgoing:
            self.p.publisher.publish(self.outgoing)
            self.records.extend(self.outgoing)
            self.outgoing = []

    def consider(self, group: Group) -> None:
        p, stats = self.p, self.stats
        if group.stamp < self.bound:
            stats.outside += 1
            return
        stats.rows += 1
        here = (group.stamp, group.key)
        if self.ordered and here < self.last:
            self.disorder(group)
        self.last = here
        if here > self.top:
            self.top = here
        entry = (group.digest, group.stamp)
        previous = p.state.seen.get(group.key)
        self.pending[group.key] = entry
        self.groups.append(group)
        if previous is not None and previous[0] == group.digest:
            stats.duplicates += 1
            return
        if group.user == p.integration_user:
            stats.echoes += 1
            return
        try:
            records = p.stream.records(group, p.odbc)
        except Permanent as exc:
            self.dead.append((p.stream, group, exc))
            return
        if records:
            stats.emitted += 1
            self.outgoing.extend(records)

    def disorder(self, group: Group) -> None:
        p = self.p
        log.warning(
            "%s: rows do not come back in (DateUpdated, TimeUpdated) order (TimeUpdated %r after a later "
            "one): checkpointing only after complete polls from now on; check SAGESF_SAGE100__TIME_PAD",
            p.stream.name,
            group.rows[0][p.stream.i_time],
        )
        self.ordered = p.ordered = False
        p.state.stamp, p.state.key = self.start
        if self.checkpointed:
            p.store(force=True)  # the stored watermark may be past rows still to come: put it back

    def flush(self) -> None:
        """Wait for Kafka's acknowledgement of everything sent, then remember it and checkpoint."""
        p, stats = self.p, self.stats
        self.send()
        if self.dead:
            p.publisher.dead_letter(self.dead)
            stats.dead_letters += len(self.dead)
        if self.records:
            p.publisher.confirm()
            now = datetime.now(UTC)
            if self.records:
                p.stream.confirmed(self.records)
                stats.records += len(self.records)
                observe = p.observe_delay
                for r in self.records:
                    if r.event_time is not None:
                        delay = (now - r.event_time).total_seconds()
                        if delay > stats.max_delay:
                            stats.max_delay = delay
                        if observe is not None:
                            observe(delay)
        # Kafka has everything up to here: remember it
        p.state.seen.update(self.pending)
        if p.on_group is not None:
            for group in self.groups:
                p.on_group(group)
        stats.batches += 1
        self.records, self.dead, self.pending, self.groups = [], [], {}, []
        if self.ordered:
            p.state.stamp, p.state.key = max((p.state.stamp, p.state.key), self.top)
        # out of order, the watermark stays where the poll started, but what is in `seen` is
        # published: storing it keeps a restart from publishing it again
        p.prune(self.now)
        p.store()
        self.checkpointed = True

    def finish(self) -> None:
        if self.carry:
            for group in self.p.stream.groups(self.carry):
                self.consider(group)
            self.carry = []
        self.flush()
        p = self.p
        if not self.ordered:
            p.state.stamp, p.state.key = max((p.state.stamp, p.state.key), self.top)
            p.prune(self.now)
            p.store()
