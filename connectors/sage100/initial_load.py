"""The Sage 100 initial load: customers with their contacts, items and stock, published as the
source publishes them, and the hand-over to the source (`sagesf load sage`).

What it owns: `SageInitialLoad`, a sagesf.source `Source` the core runs once (sagesf.load
`InitialLoad`). Each table is read in one scan ordered by its key, with the source's own streams
(connectors/sage100/streams.py): the same select list (customers joined with their contacts),
the same records, topics, keys and event IDs the source gives the same row versions. Every
`batch_rows` row versions (at most 1,000; `SAGESF_SAGE100__SOURCE__BATCH_ROWS`) are one
checkpoint, storing the last key read under `<component>-load/table/<table>` in positions.v1
once Kafka has the records; a resumed load scans from after that key (`WHERE key > :last`).
A finished load publishes nothing when run again (`--restart` starts over). A row that cannot be
mapped is dead-lettered as the source does (`sagesf dlq replay sage-source` reads it again).

The hand-over: W is the Sage server's local time (the source's clock rule: this host's clock in
the server's zone) when the load starts, stored with the run. Once every scan is done, each table
the source polls gets, unless the source already has a position for it, the position
`PollState(W, (), seen)` (connectors/sage100/polling.py): its first poll reads the rows stamped
from W minus the overlap window on, and `seen` holds the (hash, stamp) of every row version the
load published that is stamped in that window or later. Why this has neither a gap nor an
overlap: a row last changed before W minus the overlap was changed before the scans began (what
commits late or is stamped by a skewed workstation clock is what the overlap window is for, as
for every poll), so the scan read its final version; a row changed later is read by the poll,
which drops it when the load published that very version (in `seen`) and publishes it when it
changed after the scan read it. Contacts are published within their customers, so the contact
table is scanned first, for `seen` only: a contact version in `seen` was read before its
customer, whose published record therefore has it or a newer one. Tables the load does not
publish (SO_SalesOrderHeader: order history stays in Sage) start at W with nothing seen: changes
from the load's start on are the source's. Start the source after the load.

Limits: when more than the poller's `max_seen_stored` (10,000) rows change while the load runs,
their `seen` is not stored and the source publishes them once more (same event IDs). The key
order is the database's; a key column holding NULL (a broken import) is dead-lettered and not
resumed after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.sage100.config import Sage100Settings
from connectors.sage100.odbc import Row, SageOdbc
from connectors.sage100.polling import ChangePoller, PollState
from connectors.sage100.source import STAGE
from connectors.sage100.streams import Group, MappingContext, OutRecord, Stream, build_streams
from connectors.sage100.values import stamp_local
from sagesf.errors import Permanent
from sagesf.load import RUN_STREAM, LoadProgress
from sagesf.positions import PositionStore
from sagesf.source import Rejected, SourceBatch

log = logging.getLogger(__name__)

__all__ = ["LOADED", "SageInitialLoad"]

LOADED = ("AR_Customer", "CI_Item", "IM_ItemWarehouse")  # published by the load, in this order
SEEN_ONLY = ("AR_CustomerContact",)  # scanned first, for the hand-over's `seen` only
MAX_CHECKPOINT = 1000


@dataclass
class _Run:
    w: int  # the hand-over watermark: the server's change stamp when the load started
    finished: bool = False


@dataclass
class _Table:
    total: int | None = None
    published: int = 0
    dead_letters: int = 0
    done: bool = False
    after: list[Any] | None = None  # the key (as read) of the last row version of the last checkpoint
    seen: dict[str, Any] = field(default_factory=dict)  # PollState position: versions from W - overlap


class SageInitialLoad:
    """Scans and maps a Sage company's tables (see the module doc)."""

    name = STAGE

    def __init__(
        self,
        settings: Sage100Settings,
        odbc: SageOdbc,
        *,
        stored: Mapping[str, Any],
        live_positions: PositionStore,
        topics: Mapping[str, str] | None = None,
        progress: LoadProgress | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.odbc = odbc
        self.live_positions = live_positions
        self.progress = progress or LoadProgress()
        self.clock = clock
        source = settings.source
        ctx = MappingContext(
            settings.zone,
            settings.salesforce_id_udf,
            {**source.topics, **(topics or {})},
            integration_user=settings.integration_user_key,
        )
        self.streams = build_streams(settings.tables(), source.tables, ctx)
        self.pollers = {name: self._poller(stream) for name, stream in self.streams.items()}
        self.checkpoint_rows = min(source.batch_rows, MAX_CHECKPOINT)
        run = stored.get(RUN_STREAM)
        self.run: _Run | None = _Run(**run) if isinstance(run, dict) else None
        self.scanned = [t for t in (*SEEN_ONLY, *LOADED) if t in self.streams]
        self.tables = {
            name: _Table(**stored[f"table/{name}"])
            if isinstance(stored.get(f"table/{name}"), dict)
            else _Table()
            for name in self.scanned
        }
        for name in self.scanned:
            if name in LOADED:
                self._show(name, self.tables[name], resumed=True)

    def _poller(self, stream: Stream) -> ChangePoller:
        """The source's poller of the table, as sage100.source builds it: its window rules."""
        source = self.settings.source
        return ChangePoller(
            stream,
            self.odbc,
            integration_user=self.settings.integration_user_key,
            zone=self.settings.zone,
            overlap_seconds=source.overlap_seconds,
            batch_rows=source.batch_rows,
            time_pad=self.settings.time_pad,
            future_skew_seconds=source.future_skew_seconds,
            clock=self.clock,
        )

    # --- the source ----------------------------------------------------------------------------

    def read(self) -> Iterator[SourceBatch]:
        """W, every scan not done yet, the hand-over, then the load marked finished."""
        if self.run is not None and self.run.finished:
            self.progress.note(f"loaded before (W {_shown(self.run.w)}, server time): nothing to publish")
            return
        if self.run is None:
            any_poller = next(iter(self.pollers.values()))
            yield self._started(_Run(any_poller.local_stamp(self.clock())))
        assert self.run is not None
        for name in self.scanned:
            if not self.tables[name].done:
                yield from self._scan(name)
        self._hand_over(self.run.w)
        yield self._started(_Run(self.run.w, finished=True))

    def _started(self, run: _Run) -> SourceBatch:
        def committed() -> None:
            self.run = run

        return SourceBatch(positions={RUN_STREAM: asdict(run)}, committed=committed)

    # --- one table -------------------------------------------------------------------------------

    def _scan(self, name: str) -> Iterator[SourceBatch]:
        stream, state = self.streams[name], self.tables[name]
        if state.total is None and name in LOADED:
            counted = self.odbc.fetchone(f"SELECT COUNT(*) FROM {stream.table.name}")  # noqa: S608 - a layout name
            state = self.tables[name] = _Table(
                **{**asdict(state), "total": int(counted[0]) if counted else 0}
            )
            self._show(name, state)
        sql, params = self._query(stream, state.after)
        pending: list[Group] = []
        carry: list[Row] = []
        for chunk in self.odbc.rows(sql, params, batch=self.checkpoint_rows):
            groups = stream.groups(carry + chunk if carry else chunk)
            # a customer's contact rows may go on in the next chunk: keep its group back
            carry = list(groups.pop().rows) if groups and stream.multi_row else []
            pending.extend(groups)
            while len(pending) >= self.checkpoint_rows:
                yield self._checkpoint(name, pending[: self.checkpoint_rows])
                pending = pending[self.checkpoint_rows :]
        pending.extend(stream.groups(carry) if carry else [])
        yield self._checkpoint(name, pending, done=True)

    def _query(self, stream: Stream, after: Sequence[Any] | None) -> tuple[str, list[Any]]:
        """The scan: the stream's columns ordered by key (contacts after their customer), after
        the stored key when resuming."""
        order = [c for c in stream.order_by() if not c.endswith((".DateUpdated", ".TimeUpdated"))]
        sql = f"SELECT {stream.select_list()} FROM {stream.from_clause()}"  # noqa: S608 - layout names only
        params: list[Any] = []
        if after:
            keys = [stream.query.col(k) for k in stream.table.key]
            terms = []
            for i, key in enumerate(keys):
                equal = [f"{k} = ?" for k in keys[:i]]
                terms.append("(" + " AND ".join([*equal, f"{key} > ?"]) + ")")
                params.extend([*after[:i], after[i]])
            sql += f" WHERE {' OR '.join(terms)}"
        return f"{sql} ORDER BY {', '.join(order)}", params

    def _checkpoint(self, name: str, groups: list[Group], done: bool = False) -> SourceBatch:
        """The records of `groups`, and the table's state once Kafka has them."""
        stream, poller, before = self.streams[name], self.pollers[name], self.tables[name]
        assert self.run is not None
        records: list[OutRecord] = []
        rejected: list[Rejected] = []
        seen = PollState.from_position(before.seen or None).seen
        bound = poller.lower_bound(self.run.w, self.clock())
        for group in groups:
            if group.stamp >= bound:
                seen[group.ident] = (group.digest, group.stamp)
            if name not in LOADED:
                continue
            try:
                records.extend(stream.map(group, self.odbc))
            except Permanent as exc:
                rejected.append(stream.rejected(group, exc))
        keyed = [g for g in groups if g.identified]
        after = [*keyed[-1].rows[0][: stream.key_width]] if keyed else before.after
        state = _Table(
            total=before.total,
            published=before.published + len(records),
            dead_letters=before.dead_letters + len(rejected),
            done=done,
            after=after,
            seen=PollState(self.run.w, (), seen).to_position(poller.max_seen_stored),
        )

        def committed() -> None:
            stream.confirmed(records)
            self.tables[name] = state
            if name in LOADED:
                self._show(name, state)

        return SourceBatch(
            records=list(records),
            rejected=rejected,
            positions={f"table/{name}": asdict(state)},
            committed=committed,
        )

    def _show(self, name: str, state: _Table, resumed: bool = False) -> None:
        part = self.progress.part(name)
        part.total, part.published, part.dead_letters, part.done = (
            state.total,
            state.published,
            state.dead_letters,
            state.done,
        )
        if resumed:
            part.resumed_at = state.published + state.dead_letters
        self.progress.changed(part)

    # --- the hand-over ---------------------------------------------------------------------------

    def _hand_over(self, w: int) -> None:
        """Every table the source polls, without a position of its own, starts at W with the
        versions the load published since W minus the overlap in `seen` (see the module doc)."""
        now = self.clock()
        fresh: dict[str, Any] = {}
        for name, poller in self.pollers.items():
            if self.live_positions.get(name) is not None:
                continue
            scanned = self.tables.get(name)
            seen = PollState.from_position(scanned.seen).seen if scanned is not None and scanned.seen else {}
            _, position = poller.checkpoint(seen, (w, ()), now, force=True)
            assert position is not None  # forced
            fresh[name] = position
        if fresh:
            self.live_positions.put_many(fresh)
        kept = [name for name in self.pollers if name not in fresh]
        self.progress.note(
            f"hand-over: {self.live_positions.component} polls {', '.join(fresh) or 'no table'} from "
            f"{_shown(w)} (server time, W) minus its overlap window, skipping the row versions the load "
            "published" + (f"; {', '.join(kept)} keep the position the source stored" if kept else "")
        )


def _shown(stamp: int) -> str:
    return stamp_local(stamp).strftime("%Y-%m-%d %H:%M:%S")
