"""The console's access rules and the dead-letter replay, as a person in a browser meets them.

Each test is one journey; its screenshots are in test-output/ui/<test name>/.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from playwright.sync_api import Page, expect

from console.audit import AuditLog
from sagesf.config import KafkaSettings
from sagesf.dead_letter_replay import REPLAYED_FROM_HEADER
from sagesf.dead_letter_writer import STAGE_TASK_PUT, DeadLetterWriter, FailedRecord
from sagesf.errors import Permanent
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroSerde
from sagesf.stages import StageOverride
from sandbox.samples import sales_order
from tests.kit.kafka import produce, read_topic
from tests.ui.conftest import Console, Shots

pytestmark = pytest.mark.integration

UNKNOWN_PRODUCT = "GADGET-NEW"


@pytest.fixture(scope="module")
def world(
    kafka_bootstrap: str, schema_registry_url: str, console_factory: Callable[..., Console]
) -> dict[str, Any]:
    """One order dead-lettered by stage `orders` (an unknown product), on this module's own topics,
    and a console pointed at them."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    suffix = uuid.uuid4().hex[:8]
    origin, dlq, markers = f"ui.salesorder.{suffix}", f"ui.dlq-orders.{suffix}", f"ui.markers.{suffix}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    new = [
        NewTopic(origin, 1, 1),
        NewTopic(dlq, 1, 1),
        NewTopic(markers, 1, 1, config={"cleanup.policy": "compact"}),
    ]
    for future in admin.create_topics(new).values():
        future.result(30)
    registry = SchemaRegistryClient({"url": schema_registry_url})
    opportunity = f"006UI{uuid.uuid4().hex[:13]}"
    order = sales_order()
    order["salesforce_opportunity_id"] = opportunity
    order["lines"][0]["product_code"] = UNKNOWN_PRODUCT
    key = AvroSerde.string_key(registry, origin, auto_register=True).encode(opportunity)
    value = AvroSerde.canonical(registry, "SalesOrder", origin, auto_register=True).encode(order)
    produce(kafka_bootstrap, origin, [(key, value)])
    DeadLetterWriter(ConfirmedProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap)), "orders", dlq).send(
        [
            (
                FailedRecord(origin, 0, 0, key, value, [("traceparent", b"00-abc-def-01")]),
                Permanent(
                    f"ProductCode {UNKNOWN_PRODUCT!r} maps to no ItemCode",
                    field="lines[1].product_code",
                    value=UNKNOWN_PRODUCT,
                ),
                STAGE_TASK_PUT,
                "orders_agent",
            )
        ]
    )
    console = console_factory(stages={"orders": StageOverride(dlq_topic=dlq)}, dlq_markers_topic=markers)
    return {
        "console": console,
        "opportunity": opportunity,
        "origin": origin,
        "dlq": dlq,
        "key": key,
        "value": value,
        "letter": f"{console.url}/dead-letters/orders/0/0",
    }


def replays_on(bootstrap: str, topic: str) -> list[Any]:
    return [r for r in read_topic(bootstrap, topic) if r.header(REPLAYED_FROM_HEADER) is not None]


def test_an_anonymous_visitor_is_sent_to_login_and_then_to_the_page_asked_for(
    page: Page, shots: Shots, world: dict[str, Any]
) -> None:
    console: Console = world["console"]
    page.goto(f"{console.url}/dead-letters")
    expect(page).to_have_url(re.compile(r"/login\?next=/dead-letters$"))
    expect(page.locator("nav.sections")).to_have_count(0)
    shots("login")
    page.fill("input[name=username]", "viewer")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".flash-error")).to_contain_text("Wrong name or password")
    shots("wrong-password")
    console.login(page, "viewer", here=True)
    expect(page).to_have_url(f"{console.url}/dead-letters")
    expect(page.locator("#dead-letter-stages")).to_contain_text(world["dlq"])
    shots("dead-letters")


def test_a_mapper_sees_no_replay_button_and_a_forged_replay_is_refused(
    page: Page, shots: Shots, world: dict[str, Any], kafka_bootstrap: str
) -> None:
    console: Console = world["console"]
    console.login(page, "mapper")
    page.goto(world["letter"])
    expect(page.locator("h1")).to_contain_text("Dead letter")
    expect(page.locator("#value")).to_contain_text(UNKNOWN_PRODUCT)
    expect(page.locator("#replay")).to_have_count(0)
    expect(page.get_by_text("Replaying needs the operator role")).to_be_visible()
    shots("no-replay-button")
    before = len(replays_on(kafka_bootstrap, world["origin"]))
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = page.request.post(f"{world['letter']}/replay", form={"csrf_token": token or ""})
    assert answer.status == 403
    assert "needs the operator role" in answer.text()
    assert len(replays_on(kafka_bootstrap, world["origin"])) == before
    assert all(
        e.action != "dead-letter.replay" or e.user != "mapper"
        for e in AuditLog(console.settings.audit_log).entries()
    )


def test_a_post_without_the_csrf_token_is_refused(
    page: Page, shots: Shots, world: dict[str, Any], kafka_bootstrap: str
) -> None:
    console: Console = world["console"]
    console.login(page, "operator")
    before = len(replays_on(kafka_bootstrap, world["origin"]))
    answer = page.request.post(f"{world['letter']}/replay", form={"again": "true"})
    assert answer.status == 403
    assert "security token" in answer.text()
    page.set_content(answer.text())
    shots("refused")
    assert len(replays_on(kafka_bootstrap, world["origin"])) == before


def test_an_operator_replays_a_dead_letter_and_the_audit_shows_who_and_when(
    page: Page, shots: Shots, world: dict[str, Any], kafka_bootstrap: str
) -> None:
    console: Console = world["console"]
    console.login(page, "operator")
    page.goto(f"{console.url}/dead-letters")
    page.click("a:text-is('orders')")
    expect(page.locator("#dead-letters")).to_contain_text("maps to no ItemCode")
    shots("stage-list")
    page.click("#dead-letters a >> nth=0")
    expect(page.locator("#value")).to_contain_text(UNKNOWN_PRODUCT)
    shots("dead-letter")
    before = len(replays_on(kafka_bootstrap, world["origin"]))
    page.click("#replay")
    expect(page.locator(".flash-success")).to_contain_text(f"Replayed: sent back to {world['origin']}/0/")
    expect(page.locator("#replayed")).to_contain_text(world["origin"])
    shots("replayed")

    # the original record is back on its topic, marked as a replay, for the stage to process again
    replays = replays_on(kafka_bootstrap, world["origin"])
    assert len(replays) == before + 1
    assert (replays[-1].key, replays[-1].value) == (world["key"], world["value"])
    assert replays[-1].header(REPLAYED_FROM_HEADER) == f"{world['dlq']}/0/0".encode()

    page.click("nav a:text-is('Audit')")
    row = page.locator("#audit tbody tr").first
    expect(row).to_contain_text("operator")
    expect(row).to_contain_text("dead-letter.replay")
    expect(row).to_contain_text(f"{world['dlq']}/0/0")
    when = row.locator("td").first.inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", when), when
    shots("audit")


def test_a_viewer_traces_an_order_to_its_dead_letter(page: Page, shots: Shots, world: dict[str, Any]) -> None:
    console: Console = world["console"]
    console.login(page, "viewer")
    page.goto(f"{console.url}/trace?topic={world['origin']}&topic={world['dlq']}")
    page.fill("input[name=id]", world["opportunity"])
    page.click("button:text-is('Trace')")
    table = page.locator("#trace")
    expect(table).to_contain_text(f"{world['origin']}/0/0")
    expect(table).to_contain_text(f"{world['dlq']}/0/0")
    expect(table.locator(".error-text").first).to_contain_text("DEAD LETTER")
    shots("trace")
