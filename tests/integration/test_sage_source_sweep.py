"""The key sweep: deletions and changes made without a new DateUpdated still reach Kafka."""

from __future__ import annotations

from connectors.sage100.odbc import Q
from connectors.sage100.source import SageSource
from sandbox.sage100.simulator import SageSimulator
from tests.integration.sage_source_support import CapturingPublisher, MemoryPositions, value


def test_sweep_reports_deleted_and_unstamped_rows(sage_db):
    publisher = CapturingPublisher()
    source = SageSource(sage_db.settings(), publisher, MemoryPositions())
    source.run_once(sweep=True)  # initial load, and the sweep's baseline
    first = publisher.take()
    orders = {r.key: value(r)["status"] for r in first if r.schema == "OrderStatusChange"}
    open_order = next(no for no, status in orders.items() if status == "OPEN")
    new_order = next(no for no, status in orders.items() if status == "NEW")
    odbc = sage_db.odbc()
    items, levels = Q(sage_db.tables["CI_Item"]), Q(sage_db.tables["IM_ItemWarehouse"])
    with SageSimulator(sage_db, user_key="0000000004") as sim:
        sim.delete_customer("01", "CASC003")
        sim.delete_order(new_order)  # history X
        sim.advance_order(open_order)  # O -> C, published by the poll
        sim.write_row("CI_Item", {"ItemCode": "TEMP-1", "ItemType": "1", "ItemCodeDesc": "Short-lived"})
        source.run_once()
        sim.purge_order(open_order)  # invoiced and purged: history C
    odbc.execute(items.delete(items.key_equals()), ["TEMP-1"])  # created and deleted between sweeps
    # a Visual Integrator style import: no new DateUpdated
    odbc.execute(items.update(["InactiveItem"], items.key_equals()), ["Y", "TOOL-1003"])
    odbc.execute(levels.delete(levels.key_equals()), ["PLMB-1002", "001"])
    odbc.close()
    publisher.take()

    assert source.run_once(sweep=True)["CI_Item"].emitted == 0  # the poll cannot see any of it
    swept = {(r.schema, r.key): r for r in publisher.take()}
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

    source.run_once(sweep=True)
    assert publisher.take() == []  # reported once
    source.close()
