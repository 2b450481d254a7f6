"""The issue's dead-letter journey in a browser, on the real processors worker: an order
dead-lettered for an unknown product, the lookup table fixed, the dead letter replayed from its
page by an operator, and the orders stage processes it again into exactly one Sage order command.

The worker and its topics are tests/integration/test_processors.py's `world` (one worker process
for this module). Screenshots in test-output/ui/<test name>/.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from playwright.sync_api import Page, expect

from sagesf.stages import StageOverride
from tests.integration.test_processors import World, line, sage_commands, sales_order, sf_id, world
from tests.ui.conftest import Console, Shots

pytestmark = pytest.mark.integration

__all__ = ["world"]  # the worker fixture, used here as it is there


def test_an_operator_replays_an_order_after_the_fix_and_it_becomes_one_sage_order(
    page: Page, shots: Shots, world: World, kafka_admin: AdminClient, console_factory: Callable[..., Console]
) -> None:
    opp = sf_id("006")
    order = sales_order(
        opp, [line(1, "HRDW-1000", "1", "12.50"), line(2, "GIZMO-UI", "2", "9.00")], external="01-ACME"
    )
    key_bytes, _ = world.produce("salesorder.v1", "SalesOrder", opp, order)
    world.wait_for("dead letter", lambda o: o.topic == "dlq.orders.v1" and o.raw_key == key_bytes)
    markers = f"ui.markers.{uuid.uuid4().hex[:8]}"
    compacted = NewTopic(markers, 1, 1, config={"cleanup.policy": "compact"})
    kafka_admin.create_topics([compacted])[markers].result(30)
    console = console_factory(
        stages={"orders": StageOverride(dlq_topic=world.topic("dlq.orders.v1"))}, dlq_markers_topic=markers
    )
    console.login(page, "operator")
    page.goto(f"{console.url}/dead-letters/orders")
    page.locator("#dead-letters tr", has_text=opp).locator("a").first.click()
    expect(page.locator(".error-text").first).to_contain_text("GIZMO-UI")
    shots("dead-letter")

    world.add_product_lookup("GIZMO-UI", "TOOL-1003")  # the fix, as the mapping editor's grid writes it

    page.click("#replay")
    expect(page.locator(".flash-success")).to_contain_text("Replayed: sent back to")
    shots("replayed")
    [command] = world.wait_for("CreateSalesOrder after the replay", sage_commands(world, opp, "order"))
    assert [ln["item_code"] for ln in command.value["command"]["order"]["lines"]] == [
        "HRDW-1000",
        "TOOL-1003",
    ]
    time.sleep(2)  # a second command would come within the worker's commit interval
    assert len(world.matching(sage_commands(world, opp, "order"))) == 1
