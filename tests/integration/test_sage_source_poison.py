"""Rows Sage should never hold. What a broken import leaves goes to dlq.sage-source.v1 naming its
table, key and column, and every other change is still published, before and after a restart;
a row stamped in the future by a wrong clock is published and hides no change made after it."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from connectors.sage100.source import SageSource
from connectors.sage100.values import format_hours, stamp_of
from sagesf.source import SourceLoop
from sandbox.sage100.simulator import SageSimulator
from tests.integration.sage_source_support import key, make_due
from tests.kit.stages import CapturingPublisher, MemoryPositions

FUTURE_ROWS = "sagesf_sage_future_rows_total"


def dead_letters(publisher: CapturingPublisher) -> dict[tuple[str, str], dict[str, Any]]:
    """(table, key) -> the dead letter's JSON value, with the column its error names."""
    out = {}
    for failed, error, _, _ in publisher.dead:
        value = json.loads(failed.value or b"{}")
        assert (value["column"], value["reason"]) == (getattr(error, "field", None), str(error))
        out[(failed.topic, (failed.key or b"").decode())] = value
    publisher.dead.clear()
    return out


def test_bad_rows_are_dead_lettered_and_the_other_changes_published(sage_db):
    publisher, positions = CapturingPublisher(), MemoryPositions()
    source = SageSource(sage_db.settings(), {})
    loop = SourceLoop(source, publisher, positions)
    loop.run_once()  # the initial load, and the sweep's first look at every key
    publisher.take()
    odbc = sage_db.odbc()
    items = [str(r[0]) for r in odbc.fetchall("SELECT ItemCode FROM CI_Item WHERE ItemType = '1'")]
    (level_item, warehouse) = odbc.fetchall("SELECT ItemCode, WarehouseCode FROM IM_ItemWarehouse")[5]
    customers = [
        (str(d), str(n)) for d, n in odbc.fetchall("SELECT ARDivisionNo, CustomerNo FROM AR_Customer")
    ]
    odbc.close()
    today = datetime.now(source.zone).date()
    with SageSimulator(sage_db, user_key="0000000003") as sim:
        stamped = {"DateUpdated": today, "UserUpdatedKey": "VI"}
        sim.import_raw("CI_Item", {**stamped, "TimeUpdated": "25.0000"}, key=(items[0],))
        sim.import_raw("CI_Item", {**stamped, "TimeUpdated": "abc"}, key=(items[1],))
        sim.import_raw("CI_Item", {"StandardUnitPrice": "9" * 30 + ".5"}, key=(items[2],))
        sim.write_row("CI_Item", {"ItemCode": items[2]})  # stamped as a user's edit
        now = {"TimeUpdated": format_hours(datetime.now(source.zone))}
        sim.import_raw("CI_Item", {"ItemCode": None, "ItemType": "1", **stamped, **now})
        sim.import_raw("AR_Customer", {"CreditLimit": "n/a"}, key=tuple(customers[0]))
        sim.write_row("AR_Customer", {"ARDivisionNo": customers[0][0], "CustomerNo": customers[0][1]})
        far = {"DateUpdated": date(9999, 12, 31), "TimeUpdated": "23.5000", "UserUpdatedKey": "VI"}
        sim.import_raw("IM_ItemWarehouse", far, key=(level_item, warehouse))
        sim.import_raw("CI_Item", {"ItemType": "9"}, key=(items[3],))  # unstamped: the sweep finds it
        # and after all that, Sage users go on working
        sim.edit_customer(*customers[1], {"TelephoneNo": "(555) 555-0199"})
        sim.move_stock(items[4], "000", 5)

    make_due(source, sweep=True)
    loop.run_once()
    published = {(r.schema, key(r)) for r in publisher.take()}
    assert ("Customer", f"{customers[1][0]}-{customers[1][1]}") in published
    assert ("Item", items[4]) in published
    assert ("InventoryLevel", f"{items[4]}/000") in published
    dead = dead_letters(publisher)
    assert {k: (v["column"], v["key"]) for k, v in dead.items()} == {
        ("CI_Item", items[0]): ("TimeUpdated", {"ItemCode": items[0]}),
        ("CI_Item", items[1]): ("TimeUpdated", {"ItemCode": items[1]}),
        ("CI_Item", items[2]): ("StandardUnitPrice", {"ItemCode": items[2]}),
        ("CI_Item", ""): ("ItemCode", {"ItemCode": None}),
        ("AR_Customer", "-".join(customers[0])): (
            "CreditLimit",
            {"ARDivisionNo": customers[0][0], "CustomerNo": customers[0][1]},
        ),
        ("IM_ItemWarehouse", f"{level_item}-{warehouse}"): (
            "DateUpdated",
            {"ItemCode": level_item, "WarehouseCode": warehouse},
        ),
        ("CI_Item", items[3]): ("ItemType", {"ItemCode": items[3]}),
    }
    assert "n/a" in dead[("AR_Customer", "-".join(customers[0]))]["reason"]
    assert dead[("CI_Item", items[3])]["rows"][0]["ItemType"] == "9"
    # the year-9999 row does not carry the watermark away with it
    latest = stamp_of((datetime.now(source.zone) + timedelta(hours=1)).replace(tzinfo=None))
    assert positions.stored["IM_ItemWarehouse"]["stamp"] < latest

    # a restarted source reads the same rows again: nothing is dead-lettered twice, nothing stops
    restarted = SageSource(sage_db.settings(), positions.load())
    again = SourceLoop(restarted, publisher, positions)
    again.run_once()
    make_due(restarted, sweep=True)
    again.run_once()
    assert dead_letters(publisher) == {}
    with SageSimulator(sage_db, user_key="0000000003") as sim:
        sim.move_stock(items[5], "001", 1)
    make_due(restarted)
    again.run_once()
    assert ("InventoryLevel", f"{items[5]}/001") in {(r.schema, key(r)) for r in publisher.take()}
    source.close()
    restarted.close()


def test_a_row_stamped_in_the_future_is_published_and_hides_no_later_change(sage_db, caplog):
    publisher = CapturingPublisher()
    source = SageSource(sage_db.settings(), {}, sweep=False)
    loop = SourceLoop(source, publisher, MemoryPositions())
    loop.run_once()
    publisher.take()
    odbc = sage_db.odbc()
    first, second = [
        (str(d), str(n)) for d, n in odbc.fetchall("SELECT ARDivisionNo, CustomerNo FROM AR_Customer")[:2]
    ]
    odbc.close()
    counted = REGISTRY.get_sample_value(FUTURE_ROWS, {"table": "AR_Customer"}) or 0.0
    tomorrow = datetime.now(source.zone).replace(tzinfo=None) + timedelta(days=1)
    with SageSimulator(sage_db, user_key="0000000003") as sim:
        # a workstation whose clock runs a day ahead
        sim.write_row("AR_Customer", {"ARDivisionNo": first[0], "CustomerNo": first[1]}, at=tomorrow)
    make_due(source)
    loop.run_once()
    assert [key(r) for r in publisher.take()] == ["-".join(first)]

    with SageSimulator(sage_db, user_key="0000000003") as sim:
        sim.edit_customer(*second, {"TelephoneNo": "(555) 555-0142"})  # stamped now, by a right clock
    make_due(source)
    loop.run_once()
    assert [key(r) for r in publisher.take()] == ["-".join(second)]  # and the first not again
    assert "later than now + 300 s" in caplog.text  # the clock is named, once
    assert caplog.text.count("later than now") == 1
    assert REGISTRY.get_sample_value(FUTURE_ROWS, {"table": "AR_Customer"}) == counted + 1
    source.close()
