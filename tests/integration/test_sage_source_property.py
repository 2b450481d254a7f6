"""Property: whatever the interleaving of Sage writes and polls, the source publishes every change.

Hypothesis generates sequences of inserts and updates of a few AR_Customer rows (many within the
same TimeUpdated value, some by the integration user, the clock sometimes crossing the end of
daylight saving time so local times repeat), polls, restarts from the stored position, polls
during which Sage goes away part-way and polls whose records Kafka does not acknowledge, against
a real sandbox database over unixODBC, for customers (a join with their contacts, and a second, in-
memory guard) and stock
levels (the poller's de-duplication alone), with TimeUpdated hours zero-padded or not (then the
SQL order is not the time order and the poller must notice). Every write leaves a unique marker
(TelephoneNo, QuantityOnHand), so each published record names the exact row version it came from.
After the last write and a final poll:
- every row whose last write was by someone else than the integration user was published in its
  final state at least once;
- no version written by the integration user was published unmarked (stock levels drop them;
  customers publish them with the `sagesf.written-by: integration` header, for the processors
  to compare), and no other version was marked;
- no version was published twice (steady state: the overlap window re-reads, `seen` drops);
- one more poll publishes nothing. The poller runs under the core's `SourceLoop` (publish ->
  confirm -> store the position -> commit), with Kafka replaced by tests/kit's capturing
  publisher (each value is serialised with its Avro schema; a confirm can be made to fail) and
  positions kept in memory; tests/integration/test_sage_source_kafka.py runs the same source on
  the broker.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sage100.odbc import SageOdbc, SageUnavailable
from connectors.sage100.polling import ChangePoller, PollState
from connectors.sage100.streams import MappingContext, build_streams
from sagesf.producer import ProduceFailed
from sagesf.publisher import CanonicalRecord
from sagesf.source import SourceLoop
from sandbox.sage100.database import create_database
from sandbox.sage100.simulator import SageSimulator
from tests.integration.sage_source_support import Clock, PollerSource
from tests.kit.stages import CapturingPublisher, MemoryPositions

NY = ZoneInfo("America/New_York")
SGSF = "SGSF"
USERS = ("0000000002", "0000000003", SGSF)
KEYS = [("01", f"CUST{i:03d}") for i in range(5)]  # customers; stock levels use the number
STARTS = [
    datetime(2024, 6, 3, 14, 0, 0, tzinfo=UTC),  # an ordinary afternoon
    datetime(2024, 11, 3, 5, 59, 40, tzinfo=UTC),  # 01:59:40 EDT: the clock goes back to 01:00 soon
    datetime(2024, 6, 3, 3, 59, 50, tzinfo=UTC),  # 23:59:50 local: the date changes
    datetime(2024, 6, 3, 13, 59, 45, tzinfo=UTC),  # 09:59:45 local: "9.9999" < "10.0000"?
]

write = st.tuples(
    st.just("write"),
    st.integers(0, len(KEYS) - 1),
    st.sampled_from(USERS),
    # mostly no time passes (same TimeUpdated), sometimes a little, rarely a lot
    st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.5, 1.0, 3.0, 30.0]),
)
poll = st.tuples(st.just("poll"), st.just(0), st.just(""), st.sampled_from([0.0, 0.2, 2.0]))
restart = st.tuples(st.just("restart"), st.just(0), st.just(""), st.just(0.0))
# a poll during which Sage goes away after `n` fetches, or Kafka does not acknowledge
sage_fails = st.tuples(st.just("sage fails"), st.integers(0, 3), st.just(""), st.just(0.0))
kafka_fails = st.tuples(st.just("kafka fails"), st.just(0), st.just(""), st.just(0.0))
operations = st.lists(
    st.one_of(write, write, write, poll, restart, sage_fails, kafka_fails), min_size=1, max_size=40
)


class FlakyOdbc:
    """The real connection, except that a poll can be made to lose Sage after `n` fetches."""

    def __init__(self, odbc: SageOdbc) -> None:
        self.odbc = odbc
        self.fail_after: int | None = None

    def rows(self, sql: str, params: Sequence[Any] = (), batch: int = 5000) -> Iterator[list[Any]]:
        for fetched, chunk in enumerate(self.odbc.rows(sql, params, batch)):
            if self.fail_after is not None and fetched >= self.fail_after:
                self.fail_after = None
                raise SageUnavailable("simulated: Sage went away")
            yield chunk
        if self.fail_after is not None:
            self.fail_after = None
            raise SageUnavailable("simulated: Sage went away")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.odbc, name)


class Harness:
    """One sandbox database, a simulated Sage user and a poller of `table` run by a `SourceLoop`.

    Every write leaves a unique marker: TelephoneNo of a customer, QuantityOnHand of a stock
    level; `marker(record)` reads it back from a published record.
    """

    def __init__(
        self,
        directory: Path,
        start: datetime,
        overlap: float,
        table: str = "AR_Customer",
        pad: str = "0",
        batch_rows: int = 3,
    ) -> None:
        self.batch_rows = batch_rows
        self.db = create_database(directory / "sage.db", replace=True)
        self.table = table
        self.pad = pad
        self.clock = Clock(start, NY)
        self.sim = SageSimulator(self.db, zone=NY, clock=self.clock.local, time_pad=pad)
        self.odbc = FlakyOdbc(self.db.odbc())
        self.publisher = CapturingPublisher()
        self.positions = MemoryPositions()
        self.overlap = overlap
        self.poller, self.loop = self.start()
        self.versions: dict[str, tuple[tuple[str, str], str]] = {}  # marker -> (key, user)
        self.last: dict[tuple[str, str], str] = {}  # key -> marker of its final version
        self.written = 0

    def start(self) -> tuple[ChangePoller, SourceLoop]:
        """A new process: streams, poller and loop, resuming from the stored position."""
        ctx = MappingContext(NY, "UDF_SALESFORCE_ID", {}, integration_user=SGSF)
        stream = build_streams(self.db.tables, [self.table], ctx)[self.table]
        poller = ChangePoller(
            stream,
            self.odbc,  # type: ignore[arg-type]
            integration_user=SGSF,
            zone=NY,
            overlap_seconds=self.overlap,
            batch_rows=self.batch_rows,  # small: checkpoints inside bursts of equal stamps
            time_pad=self.pad,
            state=PollState.from_position(self.positions.get(self.table)),
            clock=self.clock.utc,
        )
        return poller, SourceLoop(PollerSource(poller), self.publisher, self.positions)

    def restart(self) -> None:
        self.poller, self.loop = self.start()

    def poll(self) -> int:
        """One poll, every checkpoint of it committed; how many records it sent."""
        return self.loop.run_once()

    def write(self, key: tuple[str, str], user: str) -> None:
        self.written += 1
        marker = f"{self.written}"
        if self.table == "AR_Customer":
            row = {"ARDivisionNo": key[0], "CustomerNo": key[1], "CustomerName": f"Customer {key[1]}",
                   "TelephoneNo": marker, "CreditLimit": f"{self.written}.50"}  # fmt: skip
        else:
            row = {"ItemCode": key[1], "WarehouseCode": "000", "QuantityOnHand": f"{marker}.000000"}
        self.sim.write_row(self.table, row, user=user)
        self.versions[marker] = (key, user)
        self.last[key] = marker

    def marker(self, record: CanonicalRecord) -> str:
        assert record.value is not None
        if self.table == "AR_Customer":
            return str(record.value["telephone_no"])
        return str(int(record.value["quantity_on_hand"]))

    def close(self) -> None:
        self.sim.close()
        self.odbc.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=operations,
    start=st.sampled_from(STARTS),
    overlap=st.sampled_from([0.0, 1.0, 5.0]),
    table=st.sampled_from(["AR_Customer", "IM_ItemWarehouse"]),
    pad=st.sampled_from(["0", ""]),  # "": hours before 10:00 unpadded, so text order is not time order
    batch_rows=st.sampled_from([1, 3]),
)
def test_every_change_published_once_and_no_echo(ops, start, overlap, table, pad, batch_rows):
    with tempfile.TemporaryDirectory() as directory:
        h = Harness(Path(directory), start, overlap, table, pad, batch_rows)
        try:
            for kind, index, user, seconds in ops:
                if kind == "write":
                    h.write(KEYS[index], user)
                elif kind == "poll":
                    h.poll()
                elif kind == "sage fails":
                    h.odbc.fail_after = index
                    with contextlib.suppress(SageUnavailable):
                        h.poll()
                elif kind == "kafka fails":
                    h.publisher.fail_next = 1
                    with contextlib.suppress(ProduceFailed):
                        h.poll()
                    h.publisher.fail_next = 0
                else:  # a new process resumes from the stored position
                    h.restart()
                h.clock.advance(seconds)
            h.poll()
            taken = h.publisher.take()
            published = [h.marker(r) for r in taken]
            marked = {h.marker(r) for r in taken if r.headers}
            # steady state: nothing more to publish
            assert h.poll() == 0
            assert h.poller.stats.emitted == 0
            assert h.publisher.take() == []
            assert h.publisher.sent == []  # nothing handed over and left unconfirmed either
        finally:
            h.close()

    counts = Counter(published)
    duplicates = {m: n for m, n in counts.items() if n > 1}
    assert not duplicates, f"versions published more than once: {duplicates}"
    echoes = [m for m in counts if (h.versions[m][1] == SGSF) != (m in marked)]
    assert not echoes, f"the integration user's own writes published unmarked (or others marked): {echoes}"
    if table != "AR_Customer":
        assert not marked, f"only customers publish the integration user's writes: {marked}"
    for key, marker in h.last.items():
        if h.versions[marker][1] != SGSF:
            assert marker in counts, f"{key}: final version {marker} never published"


def test_the_repeated_hour_when_daylight_saving_ends_is_read_twice(tmp_path):
    """Rows written in the second 01:00-02:00 carry smaller times than the watermark: still read."""
    h = Harness(tmp_path, datetime(2024, 11, 3, 5, 20, tzinfo=UTC), overlap=2.0)  # 01:20 EDT
    try:
        h.write(KEYS[0], USERS[0])
        h.clock.advance(1800)  # 01:50 EDT
        h.write(KEYS[1], USERS[0])
        h.poll()
        first = [h.marker(r) for r in h.publisher.take()]
        h.clock.advance(1200)  # 02:10 EDT is 01:10 EST: the wall clock went back
        assert h.clock.local().hour == 1
        h.write(KEYS[2], USERS[1])
        h.clock.advance(60)
        h.poll()
        second = [h.marker(r) for r in h.publisher.take()]
        h.restart()  # a restart in the repeated hour re-reads it from the position
        h.clock.advance(3600)  # 02:11 EST
        h.poll()
        third = [h.marker(r) for r in h.publisher.take()]
    finally:
        h.close()
    assert first == ["1", "2"]
    assert second == ["3"]  # 01:10 EST, below the 01:50 EDT watermark
    assert third == []


def test_unpadded_hours_and_sage_lost_in_the_middle_of_a_poll(tmp_path):
    """'10.0027' sorts before '9.9972' as text: a watermark moved inside the poll would skip 09:59."""
    h = Harness(tmp_path, datetime(2024, 6, 3, 13, 59, 50, tzinfo=UTC), 1.0, "IM_ItemWarehouse", "", 1)
    try:
        h.write(KEYS[0], USERS[0])  # 09:59:50 -> "9.9972"
        h.clock.advance(20)
        h.write(KEYS[1], USERS[0])  # 10:00:10 -> "10.0027"
        h.write(KEYS[2], USERS[0])
        h.odbc.fail_after = 1  # Sage goes away after the first row
        with contextlib.suppress(SageUnavailable):
            h.poll()
        h.restart()  # and the process restarts
        h.poll()
        published = [h.marker(r) for r in h.publisher.take()]
    finally:
        h.close()
    assert sorted(published) == ["1", "2", "3"]


def test_rows_out_of_text_order_are_noticed_when_the_pad_setting_is_wrong(tmp_path, caplog):
    """time_pad says "0" but Sage writes "9.9972": the poller sees the disorder and stops trusting it."""
    h = Harness(tmp_path, datetime(2024, 6, 3, 13, 59, 40, tzinfo=UTC), 1.0, "IM_ItemWarehouse", "", 1)
    h.poller.time_pad, h.poller.ordered = "0", True  # the setting that does not match the data
    try:
        h.write(KEYS[0], USERS[0])  # 09:59:40 -> "9.9944"
        h.clock.advance(5)
        h.write(KEYS[1], USERS[0])  # 09:59:45 -> "9.9958"
        h.clock.advance(30)
        h.write(KEYS[2], USERS[0])  # 10:00:15 -> "10.0041", first in text order
        h.write(KEYS[3], USERS[0])
        h.odbc.fail_after = 3  # Sage goes away after "10.0041", "10.0041", "9.9944"
        with contextlib.suppress(SageUnavailable):
            h.poll()
        assert not h.poller.ordered
        assert "do not come back in (DateUpdated, TimeUpdated) order" in caplog.text
        h.restart()  # the process restarts from the stored position
        h.poller.time_pad = "0"
        h.poll()
        published = [h.marker(r) for r in h.publisher.take()]
    finally:
        h.close()
    assert sorted(published) == ["1", "2", "3", "4"]  # "9.9958" was not skipped


class FailsOnConfirm(CapturingPublisher):
    """Kafka does not acknowledge the `n`th confirm (counted from creation)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.confirms, self.n = 0, n

    def confirm(self) -> None:
        self.confirms += 1
        if self.confirms == self.n:
            self.fail_next = 1
        super().confirm()


def test_kafka_failing_right_after_the_disorder_is_noticed_loses_nothing(tmp_path):
    """The watermark a checkpoint of this poll moved past "9.9944" goes back even when Kafka fails
    the next checkpoint: the poll that follows, in the same process or after a restart, reads it."""
    h = Harness(tmp_path, datetime(2024, 6, 3, 13, 59, 40, tzinfo=UTC), 1.0, "IM_ItemWarehouse", "", 1)
    h.publisher = FailsOnConfirm(3)  # checkpoints: "10.0041", "10.0041", then "9.9944": that one fails
    h.restart()
    h.poller.time_pad, h.poller.ordered = "0", True  # the setting that does not match the data
    try:
        h.write(KEYS[0], USERS[0])  # 09:59:40 -> "9.9944"
        h.clock.advance(5)
        h.write(KEYS[1], USERS[0])  # 09:59:45 -> "9.9958"
        h.clock.advance(30)
        h.write(KEYS[2], USERS[0])  # 10:00:15 -> "10.0041", first in text order
        h.write(KEYS[3], USERS[0])
        with pytest.raises(ProduceFailed):
            h.poll()
        assert not h.poller.ordered
        h.poll()
        published = [h.marker(r) for r in h.publisher.take()]
        h.restart()
        h.poller.time_pad = "0"
        h.poll()
        published += [h.marker(r) for r in h.publisher.take()]
    finally:
        h.close()
    assert sorted(published) == ["1", "2", "3", "4"]


def test_a_process_killed_right_after_noticing_the_disorder_resumes_from_before_it(tmp_path):
    """The watermark put back is stored before the poll reads on: a process killed just after the
    poller noticed the disorder does not resume past "9.9944"."""
    h = Harness(tmp_path, datetime(2024, 6, 3, 13, 59, 40, tzinfo=UTC), 1.0, "IM_ItemWarehouse", "", 2)
    stop = threading.Event()

    class StopsAtTheFirstRow(CapturingPublisher):
        def send(self, record: CanonicalRecord) -> None:
            super().send(record)
            if h.marker(record) == "1":  # "9.9944", read after the checkpoint at "10.0041"
                stop.set()

    h.publisher = StopsAtTheFirstRow()
    h.restart()
    h.poller.time_pad, h.poller.ordered = "0", True  # the setting that does not match the data
    try:
        h.write(KEYS[0], USERS[0])  # 09:59:40 -> "9.9944"
        h.clock.advance(5)
        h.write(KEYS[1], USERS[0])  # 09:59:45 -> "9.9958"
        h.clock.advance(30)
        h.write(KEYS[2], USERS[0])  # 10:00:15 -> "10.0041", first in text order
        h.write(KEYS[3], USERS[0])
        h.loop.run_once(stop)
        assert stop.is_set()
        assert not h.poller.ordered
        published = [h.marker(r) for r in h.publisher.take()]
        h.publisher.sent.clear()  # killed: what Kafka had not acknowledged is lost
        h.restart()  # and started again, from the stored position
        h.poller.time_pad = "0"
        h.poll()
        published += [h.marker(r) for r in h.publisher.take()]
    finally:
        h.close()
    assert sorted(published) == ["1", "2", "3", "4"]
