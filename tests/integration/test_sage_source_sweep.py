"""The key sweep: deletions and changes made without a new DateUpdated still reach Kafka, also
those made while the source was down."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from connectors.sage100.odbc import Q
from connectors.sage100.source import SageSource
from connectors.sage100.streams import MappingContext, build_streams
from connectors.sage100.sweep import KeySweeper
from sagesf.source import SourceLoop
from sandbox.sage100.simulator import SageSimulator
from tests.integration.sage_source_support import key, make_due, value
from tests.kit.stages import CapturingPublisher, MemoryPositions

NY = ZoneInfo("America/New_York")


def test_sweep_reports_deleted_and_unstamped_rows(sage_db):
    publisher = CapturingPublisher()
    source = SageSource(sage_db.settings(), {})
    loop = SourceLoop(source, publisher, MemoryPositions())
    loop.run_once()  # the first read polls every table (initial load) and takes the sweep's baseline
    first = publisher.take()
    orders = {key(r): value(r)["status"] for r in first if r.schema == "OrderStatusChange"}
    open_order = next(no for no, status in orders.items() if status == "OPEN")
    new_order = next(no for no, status in orders.items() if status == "NEW")
    odbc = sage_db.odbc()
    items, levels = Q(sage_db.tables["CI_Item"]), Q(sage_db.tables["IM_ItemWarehouse"])
    with SageSimulator(sage_db, user_key="0000000004") as sim:
        sim.delete_customer("01", "CASC003")
        sim.delete_order(new_order)  # history X
        sim.advance_order(open_order)  # O -> C, published by the poll
        sim.write_row("CI_Item", {"ItemCode": "TEMP-1", "ItemType": "1", "ItemCodeDesc": "Short-lived"})
        make_due(source)  # polls only: the sweeps are an hour away
        loop.run_once()
        sim.purge_order(open_order)  # invoiced and purged: history C
    odbc.execute(items.delete(items.key_equals()), ["TEMP-1"])  # created and deleted between sweeps
    # a Visual Integrator style import: no new DateUpdated
    odbc.execute(items.update(["InactiveItem"], items.key_equals()), ["Y", "TOOL-1003"])
    odbc.execute(levels.delete(levels.key_equals()), ["PLMB-1002", "001"])
    odbc.close()
    polled = publisher.take()
    assert ("OrderStatusChange", open_order) in {(r.schema, r.key) for r in polled}

    make_due(source, sweep=True)
    loop.run_once()
    assert source.tables["CI_Item"].poller.stats.emitted == 0  # the poll cannot see any of it
    records = publisher.take()
    swept = {(r.schema, r.key): r for r in records}
    assert len(swept) == len(records)  # each change once
    customer = value(swept.pop(("Customer", "01-CASC003")))
    assert customer["deleted"] is True
    assert value(swept.pop(("OrderStatusChange", new_order)))["status"] == "DELETED"
    purged = value(swept.pop(("OrderStatusChange", open_order)))
    assert (purged["status"], purged["source_status"]) == ("CLOSED", "C")
    assert value(swept.pop(("Item", "TEMP-1")))["deleted"] is True
    deactivated = value(swept.pop(("Item", "TOOL-1003")))
    assert (deactivated["active"], deactivated["deleted"]) == (False, False)
    assert swept.pop(("InventoryLevel", "PLMB-1002/001")).value is None  # a tombstone
    assert swept == {}

    make_due(source, sweep=True)
    loop.run_once()
    assert publisher.take() == []  # reported once
    source.close()


def test_rows_deleted_while_the_source_was_down_are_found_by_the_first_sweep_after_start(sage_db):
    publisher, positions = CapturingPublisher(), MemoryPositions()
    source = SageSource(sage_db.settings(), {})
    loop = SourceLoop(source, publisher, positions)
    loop.run_once()  # the initial load, and the sweep's first look at every key
    orders = {key(r): value(r)["status"] for r in publisher.take() if r.schema == "OrderStatusChange"}
    open_order = next(no for no, status in orders.items() if status == "OPEN")
    with SageSimulator(sage_db, user_key="0000000004") as sim:
        sim.write_row(
            "CI_Item", {"ItemCode": "TEMP-2", "ItemType": "1", "ItemCodeDesc": "Made after the sweep"}
        )
    make_due(source)
    loop.run_once()
    assert ("Item", "TEMP-2") in {(r.schema, key(r)) for r in publisher.take()}
    source.close()  # the source stops; meanwhile Sage users delete
    with SageSimulator(sage_db, user_key="0000000004") as sim:
        sim.delete_customer("01", "CASC003")
        sim.delete_order(open_order)  # history X
    odbc = sage_db.odbc()
    items, levels = Q(sage_db.tables["CI_Item"]), Q(sage_db.tables["IM_ItemWarehouse"])
    odbc.execute(items.delete(items.key_equals()), ["TEMP-2"])
    odbc.execute(levels.delete(levels.key_equals()), ["PLMB-1002", "001"])
    odbc.close()

    restarted = SageSource(sage_db.settings(), positions.load())
    SourceLoop(restarted, publisher, positions).run_once()  # the first read after start polls and sweeps
    swept = {(r.schema, key(r)): r for r in publisher.take()}
    assert value(swept.pop(("Customer", "01-CASC003")))["deleted"] is True
    assert value(swept.pop(("OrderStatusChange", open_order)))["status"] == "DELETED"
    assert value(swept.pop(("Item", "TEMP-2")))["deleted"] is True
    assert swept.pop(("InventoryLevel", "PLMB-1002/001")).value is None
    assert swept == {}
    restarted.close()


def test_the_stored_knowledge_is_split_and_only_what_changed_is_written_again(sage_db):
    """Small buckets and few notes apart (a big table in miniature): a restarted sweeper still
    finds every deletion, and a sweep that found one rewrites only that key's bucket."""
    stream = build_streams(sage_db.tables, ["CI_Item"], MappingContext(NY, "UDF_SALESFORCE_ID", {}))[
        "CI_Item"
    ]
    odbc = sage_db.odbc()
    stored: dict[str, object] = {}

    def sweeper() -> KeySweeper:
        return KeySweeper(stream, odbc, stored=dict(stored), bucket_bytes=500, since_max=2)

    first = sweeper()
    result = first.sweep()
    assert result.baseline
    stored.update({k.removeprefix("CI_Item/keys/"): v for k, v in result.positions.items()})
    first.commit(result)
    buckets = len([k for k in stored if k.isdigit()])
    assert buckets >= 8
    with SageSimulator(sage_db, user_key="0000000004") as sim:
        for code in ("TEMP-3", "TEMP-4", "TEMP-5"):  # more than since_max: folded into the buckets
            sim.write_row("CI_Item", {"ItemCode": code, "ItemType": "1"})
    groups = [stream.read_key(odbc, [code]) for code in ("TEMP-3", "TEMP-4", "TEMP-5")]
    notes, noted = first.noting([g for g in groups if g is not None])
    assert "CI_Item/keys/since" in notes
    stored.update({k.removeprefix("CI_Item/keys/"): v for k, v in notes.items()})
    noted()
    items = Q(sage_db.tables["CI_Item"])
    [(seeded,)] = odbc.fetchall("SELECT MIN(ItemCode) FROM CI_Item WHERE ItemCode LIKE 'HRDW%'")
    for code in ("TEMP-4", seeded):
        odbc.execute(items.delete(items.key_equals()), [code])

    restarted = sweeper()
    result = restarted.sweep()
    assert {r.key for r in result.records} == {"TEMP-4", seeded}
    assert all(value(r)["deleted"] for r in result.records)
    assert 1 <= len([k for k in result.positions if k.removeprefix("CI_Item/keys/").isdigit()]) <= 2
    odbc.close()
