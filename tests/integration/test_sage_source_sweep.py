"""The key sweep: deletions and changes made without a new DateUpdated still reach Kafka."""

from __future__ import annotations

from connectors.sage100.odbc import Q
from connectors.sage100.source import SageSource
from sagesf.source import SourceLoop
from sandbox.sage100.simulator import SageSimulator
from tests.integration.sage_source_support import key, make_due, value
from tests.kit.stages import CapturingPublisher, MemoryPositions


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
