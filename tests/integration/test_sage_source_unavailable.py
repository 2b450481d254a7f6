"""Sage unavailable: the source backs off behind its circuit breaker and loses nothing.

An exclusive lock is held on the sandbox database file (what a Sage process holding the files,
or a backup, does): every poll fails with "database is locked". The running source opens its
breaker, tries again half-open after a backoff, re-opens, logs one line per state change, says
"degraded" on /healthz and publishes nothing. Changes made before the outage and after it are
all published exactly once when the lock goes away. A second scenario moves the database file
away (a share that went offline) and back.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable

import pytest

from connectors.sage100.availability import CIRCUIT_STATE, CircuitBreaker, CircuitState
from connectors.sage100.source import SageSource
from sagesf.retry import RetryPolicy
from sagesf.source import SourceLoop
from sandbox.sage100.database import connection_string
from sandbox.sage100.simulator import SageSimulator
from tests.integration.sage_source_support import key, make_due, value
from tests.kit.stages import CapturingPublisher, MemoryPositions, in_background

CLOSED, HALF, OPEN = CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def make_source(db, component: str) -> tuple[SageSource, SourceLoop, CapturingPublisher, CircuitBreaker]:
    settings = db.settings(
        connection_string=connection_string(db.path, timeout=0.2),  # wait 0.2 s for a lock
        source={"component": component, "tables": ["IM_ItemWarehouse", "AR_Customer"], "poll_interval": 0.1},
    )
    publisher = CapturingPublisher()
    breaker = CircuitBreaker(component, failure_threshold=2, initial_backoff=0.3, max_backoff=0.6)
    source = SageSource(settings, {}, breaker=breaker, sweep=False)
    loop = SourceLoop(
        source,
        publisher,
        MemoryPositions(),
        health=source.health,
        retry=RetryPolicy(initial=0.05, maximum=0.2),
    )
    return source, loop, publisher, breaker


def published_quantities(publisher: CapturingPublisher) -> Counter[tuple[str, str]]:
    return Counter(
        (key(r), str(value(r)["quantity_on_hand"])) for r in publisher.records if r.schema == "InventoryLevel"
    )


def test_a_locked_database_opens_the_breaker_and_nothing_is_lost(sage_db, caplog):
    caplog.set_level(logging.INFO, logger="connectors.sage100.availability")
    source, loop, publisher, breaker = make_source(sage_db, "sage-locked")
    loop.run_once()
    before = {r.key: value(r)["quantity_on_hand"] for r in publisher.take() if r.schema == "InventoryLevel"}
    sim = SageSimulator(sage_db, user_key="0000000003")
    sim.move_stock("HRDW-1000", "000", 5)  # before the outage, not yet polled
    sim.edit_customer("01", "BLUE002", {"TelephoneNo": "(555) 123-4567"})

    # SQLite grants an exclusive lock on a WAL database only when no other connection has it
    # open: let go of ours (the source reconnects by itself) and wait for the lock
    sim.close()
    source.odbc.close()
    holder = sqlite3.connect(sage_db.path, isolation_level=None, check_same_thread=False, timeout=10)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE IM_Warehouse SET WarehouseDesc = WarehouseDesc")  # takes the write lock

    try:
        with in_background(loop):
            try:
                # opened, tried again, re-opened
                wait_for(lambda: breaker.transitions.count((HALF, OPEN)) >= 2)
                assert publisher.records == []
                assert publisher.sent == []
                status, details = source.health.report()
                assert status == "degraded"
                assert details["sage100"]["status"] == "degraded"
                assert CIRCUIT_STATE.labels("sage-locked")._value.get() in (OPEN.value, HALF.value)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            sim = SageSimulator(sage_db, user_key="0000000003")
            sim.move_stock("HRDW-1000", "000", 2)  # after the outage
            try:
                wait_for(lambda: breaker.state is CLOSED and len(published_quantities(publisher)) >= 1)
                wait_for(lambda: any(r.schema == "Customer" for r in publisher.records))
                time.sleep(0.5)  # a few more polls: nothing more, nothing twice
            finally:
                sim.close()
    finally:
        source.close()

    assert breaker.transitions[0] == (CLOSED, OPEN)
    assert breaker.transitions[-1] == (HALF, CLOSED)
    assert set(breaker.transitions) <= {(CLOSED, OPEN), (OPEN, HALF), (HALF, OPEN), (HALF, CLOSED)}
    lines = [r for r in caplog.records if r.name == "connectors.sage100.availability"]
    assert len(lines) == len(breaker.transitions)  # one log line per state change
    assert lines[0].levelno == logging.WARNING
    assert "-> open" in lines[0].getMessage()

    levels = published_quantities(publisher)
    assert all(n == 1 for n in levels.values()), levels  # nothing twice
    # the move made after the outage may have been polled together with the one before it or
    # not: either way the last level published is the one in Sage now
    published = [value(r)["quantity_on_hand"] for r in publisher.records if r.key == "HRDW-1000/000"]
    assert published[-1] == before["HRDW-1000/000"] + 7
    assert set(levels) <= {("HRDW-1000/000", str(before["HRDW-1000/000"] + d)) for d in (5, 7)}
    customers = [r for r in publisher.records if r.schema == "Customer"]
    assert [value(c)["telephone_no"] for c in customers] == ["(555) 123-4567"]
    assert breaker.state is CLOSED


def test_a_database_file_moved_away_and_back(sage_db):
    source, loop, publisher, breaker = make_source(sage_db, "sage-moved")
    loop.run_once()
    publisher.take()
    with SageSimulator(sage_db, user_key="0000000003") as sim:
        sim.move_stock("ELEC-1001", "002", -3)
    parked = sage_db.path.with_suffix(".parked")
    files = [
        (f"{sage_db.path}{s}", f"{parked}{s}")
        for s in ("", "-wal", "-shm")
        if os.path.exists(f"{sage_db.path}{s}")
    ]
    for here, there in files:
        os.rename(here, there)
    source.odbc.close()  # the share went away: the open connection is gone with it
    try:
        for _ in range(2):
            make_due(source)
            with pytest.raises(Exception, match="Sage 100"):
                loop.run_once()  # the first table polled, IM_ItemWarehouse, fails
        assert breaker.state is OPEN
        assert not sage_db.path.exists()  # never re-created empty
    finally:
        for here, there in files:
            os.rename(there, here)
    wait_for(lambda: breaker.allow(), timeout=5)
    make_due(source)
    assert loop.run_once() == 1
    assert source.tables["IM_ItemWarehouse"].poller.stats.emitted == 1
    assert [r.key for r in publisher.records] == ["ELEC-1001/002"]
    assert breaker.state is CLOSED
    source.close()
