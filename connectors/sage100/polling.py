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
   UserUpdatedKey is the integration user (an echo of our own write; customers publish it marked,
   sage100.streams `Stream.publishes_echoes`). Otherwise map and publish.
   A version that cannot be read (a NULL key, a TimeUpdated of "25.0000" or "abc": its group has
   a `problem`) or mapped (text where a number belongs) is dead-lettered once (sage100.streams
   `BadRow`): it joins `seen` like any other, under its version when it has no usable key or
   stamp, and never moves the watermark.
4. Records go to the publisher as each fetch of rows is mapped, so Kafka sends while the next
   rows are read. Every `batch_rows` rows, and at the end, the poller waits for Kafka's
   acknowledgement of everything sent; then the batch's (hash, stamp) entries join `seen`, the
   watermark moves to the last row's (stamp, key) (the key is the tie-break: rows come in that
   order, so a checkpoint inside a burst of equal stamps is exact), `seen` is pruned to the
   rows at or after the new lower bound (the only ones a later poll can re-read), and the
   position is stored. A restarted process resumes from that position with no gap (the bound
   re-reads the window) and no duplicate (`seen` travels in the position).
5. The watermark never goes past the server's local time now plus `future_skew_seconds`: a row
   stamped later (a wrong workstation clock, DateUpdated 9999-12-31) is published, counted
   (`PollStats.future`) and warned about, but the watermark stops at now + skew, and the lower
   bound never passes now minus the overlap, so the changes stamped after it are still read;
   the row stays in `seen` and is not published twice. A stored watermark beyond that (from
   before this rule) is brought back at start. "Now" is the source host's clock, so it must
   keep within the skew of the Sage server's (NTP).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from sagesf.source import Rejected, SourceBatch

log = logging.getLogger(__name__)

__all__ = ["ChangePoller", "PollState", "PollStats"]

POSITION_VERSION = 1
FETCH_ROWS = 5000  # rows per ODBC fetch; acknowledgements and checkpoints come every batch_rows
_SEP = "\x1f"
_TEN_HOURS = 10 * 1_000_000


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


class SweepNotes(Protocol):
    """Who else learns of every row version the poller handled: the key sweep (sage100.sweep)."""

    def noting(self, groups: Sequence[Group]) -> tuple[dict[str, Any], Callable[[], None]]:
        """What to store with the checkpoint that confirms `groups`, and what to do once it is."""
        ...


@dataclass
class PollStats:
    rows: int = 0  # row versions read (inside the bound)
    emitted: int = 0  # published as records
    duplicates: int = 0  # already published (overlap window)
    echoes: int = 0  # written by the integration user
    dead_letters: int = 0
    future: int = 0  # new versions stamped later than now + the skew (published; the watermark stops)
    outside: int = 0  # admitted by the text comparison but below the bound
    records: int = 0
    batches: int = 0
    max_delay: float = 0.0  # longest detection delay of a published record (s)


class ChangePoller:
    """Reads one table's changes as `SourceBatch`es for sagesf.source.SourceLoop (see the module doc)."""

    def __init__(
        self,
        stream: Stream,
        odbc: SageOdbc,
        *,
        integration_user: str,
        zone: ZoneInfo,
        overlap_seconds: float = 10.0,
        batch_rows: int = 20_000,
        time_pad: str = "0",
        state: PollState | None = None,
        notes: SweepNotes | None = None,
        observe_delay: Callable[[float], None] | None = None,
        on_checkpoint: Callable[[PollState], None] | None = None,
        max_seen_stored: int = 10_000,
        future_skew_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.stream = stream
        self.odbc = odbc
        self.integration_user = integration_user
        self.zone = zone
        self.overlap = round(overlap_seconds * 1_000_000 / 3600)  # in 1e-6 hours
        self.batch_rows = batch_rows
        self.time_pad = time_pad
        self.ordered = time_pad == "0"
        self.state = state or PollState()
        self.notes = notes
        self.observe_delay = observe_delay
        self.on_checkpoint = on_checkpoint
        self.max_seen_stored = max_seen_stored
        self.skew = timedelta(seconds=future_skew_seconds)
        self.clock = clock
        self.stats = PollStats()  # of the last poll
        self._stored = self.state.to_position(max_seen_stored)
        latest = self.latest(clock())
        if self.state.stamp > latest:
            log.warning(
                "%s: the stored watermark %s (server time) is later than now + %.0f s: reading from %s",
                stream.name,
                stamp_local(self.state.stamp),
                future_skew_seconds,
                stamp_local(latest),
            )
            self.state = PollState(latest, (), self.state.seen)

    # --- the window ----------------------------------------------------------------------------

    def local_stamp(self, moment: datetime) -> int:
        """The change stamp of an aware moment on the Sage server's wall clock."""
        return stamp_of(moment.astimezone(self.zone).replace(tzinfo=None))

    def latest(self, now: datetime) -> int:
        """The highest watermark at `now`: the server's local time plus the future skew."""
        return self.local_stamp(now + self.skew)

    def lower_bound(self, stamp: int, now: datetime | None = None) -> int:
        """The oldest change stamp the next poll must read, for a watermark `stamp`."""
        if stamp <= 0:
            return 0
        now = now or self.clock()
        # a watermark ahead of the clock (a row stamped in the future, within the skew) must not
        # skip the rows stamped meanwhile: read from now at the latest
        stamp = min(stamp, self.local_stamp(now))
        bound = stamp - self.overlap
        start = clock_set_back_start(stamp_local(stamp), now, self.zone)
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

    def read(self) -> Iterator[SourceBatch]:
        """One poll: every change since the watermark, as batches to publish; checkpoints every
        `batch_rows` rows and at the end. A Sage failure first yields what was read, then raises."""
        run = _Poll(self)
        self.stats = run.stats
        try:
            for chunk in self.odbc.rows(*run.sql, batch=min(self.batch_rows, FETCH_ROWS)):
                yield from run.take(chunk)
            yield from run.finish()
        except SageUnavailable:
            yield run.flush(final=False)  # keep what was read before Sage went away
            raise

    def checkpoint(
        self,
        pending: dict[tuple[str, ...], tuple[str, int]],
        watermark: tuple[int, tuple[str, ...]],
        now: datetime,
        force: bool,
    ) -> tuple[PollState, dict[str, Any] | None]:
        """The state once Kafka has what was read, and its position (None: unchanged, nothing to store)."""
        seen = {**self.state.seen, **pending}
        state = PollState(watermark[0], watermark[1], seen)
        bound = self.lower_bound(state.stamp, now)
        for key in [k for k, (_, s) in seen.items() if s < bound]:
            del seen[key]
        position = state.to_position(self.max_seen_stored)
        if not force and position == self._stored:
            return state, None
        if "seen_dropped" in position:
            log.warning(
                "%s: %d rows in the overlap window are too many to store with the position; "
                "after a restart they are published once more",
                self.stream.name,
                position["seen_dropped"],
            )
        return state, position

    def advance(self, state: PollState, position: dict[str, Any] | None) -> None:
        """Kafka has everything up to `state`, and its position is stored: read from it now."""
        self.state = state
        if position is not None:
            self._stored = position
        if self.on_checkpoint is not None:
            self.on_checkpoint(state)


class _Poll:
    """The working state of one poll (see ChangePoller.read)."""

    def __init__(self, poller: ChangePoller) -> None:
        self.poller = poller
        self.now = poller.clock()
        self.start = (poller.state.stamp, poller.state.key)
        self.bound = poller.lower_bound(poller.state.stamp, self.now)
        self.latest = poller.latest(self.now)
        self.future_top = 0  # the latest stamp of a new version beyond `latest` not yet warned about
        self.sql = poller.query(self.bound)
        self.stats = PollStats()
        self.carry: list[Row] = []
        self.outgoing: list[OutRecord] = []  # mapped, not yet handed to the loop
        self.unconfirmed: list[OutRecord] = []  # handed to the loop, not yet in a checkpoint
        self.dead: list[Rejected] = []
        self.pending: dict[tuple[str, ...], tuple[str, int]] = {}
        self.groups: list[Group] = []
        self.last: tuple[int, tuple[str, ...]] = (0, ())
        self.top: tuple[int, tuple[str, ...]] = self.start
        self.checkpointed = False
        self.rewound = False  # order broke after a checkpoint: the stored watermark must go back
        self.ordered = poller.ordered

    def take(self, chunk: list[Row]) -> Iterator[SourceBatch]:
        stream = self.poller.stream
        rows = self.carry + chunk if self.carry else chunk
        groups = stream.groups(rows)
        # a multi-row group (customer + contacts) may continue in the next chunk: keep it back
        self.carry = list(groups.pop().rows) if groups and stream.multi_row else []
        for group in groups:
            self.consider(group)
            if self.rewound:  # the stored watermark is past rows still to come: put it back first
                yield self.flush(final=False)
        if self.outgoing:
            yield self.send()
        if len(self.groups) >= self.poller.batch_rows:
            yield self.flush(final=False)

    def send(self) -> SourceBatch:
        """Hand the mapped records over now: Kafka works on them while the poll reads on."""
        records, self.outgoing = self.outgoing, []
        self.unconfirmed.extend(records)
        return SourceBatch(records=list(records))

    def consider(self, group: Group) -> None:
        poller, stats = self.poller, self.stats
        if group.stamp < self.bound:
            stats.outside += 1
            return
        stats.rows += 1
        if group.problem is not None:
            self.unreadable(group)
            return
        here = (group.stamp, group.key)
        if self.ordered and here < self.last:
            self.disorder(group)
        self.last = here
        if here > self.top:
            self.top = here
        entry = (group.digest, group.stamp)
        previous = poller.state.seen.get(group.key)
        self.pending[group.key] = entry
        self.groups.append(group)
        if previous is not None and previous[0] == group.digest:
            stats.duplicates += 1
            return
        if group.stamp > self.latest:
            stats.future += 1
            self.future_top = max(self.future_top, group.stamp)
        if group.user == poller.integration_user:
            stats.echoes += 1
            if not poller.stream.publishes_echoes:
                return
        try:
            records = poller.stream.map(group, poller.odbc)
        except Permanent as exc:
            self.dead.append(poller.stream.rejected(group, exc))
            return
        if records:
            stats.emitted += 1
            self.outgoing.extend(records)

    def unreadable(self, group: Group) -> None:
        """A row version without a usable key or change stamp: dead-lettered once (it is re-read
        until the watermark passes its day, and `seen` knows it by its version meanwhile)."""
        assert group.problem is not None
        self.pending[group.ident] = (group.digest, group.stamp)
        self.groups.append(group)
        if group.ident in self.poller.state.seen:
            self.stats.duplicates += 1
            return
        self.dead.append(self.poller.stream.rejected(group, group.problem))

    def disorder(self, group: Group) -> None:
        poller = self.poller
        log.warning(
            "%s: rows do not come back in (DateUpdated, TimeUpdated) order (TimeUpdated %r after a later "
            "one): checkpointing only after complete polls from now on; check SAGESF_SAGE100__TIME_PAD",
            poller.stream.name,
            group.rows[0][poller.stream.i_time],
        )
        self.ordered = poller.ordered = False
        if self.checkpointed:
            # a checkpoint of this poll moved the watermark past rows still to come: put it back
            # at once, so that a poll after a failed checkpoint reads them, and store it (`take`)
            poller.state = PollState(self.start[0], self.start[1], poller.state.seen)
            self.rewound = True

    def flush(self, final: bool) -> SourceBatch:
        """A checkpoint: once Kafka has every record handed over, remember them and store the position.

        In order the watermark moves to the last row read; out of order it stays where the poll
        started until the poll is complete (what is in `seen` is published, so storing it keeps
        a restart from publishing it again)."""
        poller = self.poller
        records = self.outgoing
        self.unconfirmed.extend(records)
        confirmed, dead, groups = self.unconfirmed, self.dead, self.groups
        watermark = self.top if (self.ordered or final) else self.start
        if watermark[0] > self.latest:
            watermark = (self.latest, ())
            self.warn_future()
        state, position = poller.checkpoint(self.pending, watermark, self.now, force=self.rewound)
        positions = {} if position is None else {poller.stream.name: position}
        noted = None
        if poller.notes is not None:
            notes, noted = poller.notes.noting(groups)
            positions.update(notes)
        self.outgoing, self.unconfirmed, self.dead, self.pending, self.groups = [], [], [], {}, []
        self.rewound = False
        self.stats.dead_letters += len(dead)

        def committed() -> None:
            poller.advance(state, position)
            if noted is not None:
                noted()
            self.record(confirmed)
            self.checkpointed = True

        return SourceBatch(records=list(records), rejected=dead, positions=positions, committed=committed)

    def warn_future(self) -> None:
        if not self.future_top:
            return
        log.warning(
            "%s: rows stamped as late as %s (server time), later than now + %.0f s: the watermark "
            "stops at %s; check the clock of the workstation or the import that wrote them",
            self.poller.stream.name,
            stamp_local(self.future_top),
            self.poller.skew.total_seconds(),
            stamp_local(self.latest),
        )
        self.future_top = 0

    def record(self, confirmed: list[OutRecord]) -> None:
        """What Kafka now has: the streams' memory, delays and counts."""
        poller, stats = self.poller, self.stats
        if confirmed:
            poller.stream.confirmed(confirmed)
            stats.records += len(confirmed)
            now = datetime.now(UTC)
            observe = poller.observe_delay
            for rec in confirmed:
                if rec.event_time is not None:
                    delay = (now - rec.event_time).total_seconds()
                    stats.max_delay = max(stats.max_delay, delay)
                    if observe is not None:
                        observe(delay)
        stats.batches += 1

    def finish(self) -> Iterator[SourceBatch]:
        if self.carry:
            for group in self.poller.stream.groups(self.carry):
                self.consider(group)
            self.carry = []
        yield self.flush(final=True)
