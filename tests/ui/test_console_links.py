"""The link review queue in a browser: a viewer sees it, an operator decides, the decision is
written to the linker's topics and audited. Screenshots in test-output/ui/<test name>/."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from linking.config import TOPICS, LinkSettings
from linking.decisions import Decision
from linking.store import LinkStore
from sagesf.link_state import CUSTOMER, LINKED, SUGGESTED, PairState
from tests.ui.conftest import Console, Shots

pytestmark = pytest.mark.integration


def link_store(console: Console, topics: dict[str, str]) -> LinkStore:
    """The linker's store on this module's topics, as `sagesf link` would use it."""
    return LinkStore(console.core, LinkSettings(topics=topics))


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, console_factory: Callable[..., Console]) -> dict[str, Any]:
    """One customer pair waiting for review, on this module's own linker topics."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"ui.{name}.{suffix}" for name in TOPICS}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    compacted = {"cleanup.policy": "compact"}
    for future in admin.create_topics(
        [NewTopic(t, 1, 1, config=compacted) for t in topics.values()]
    ).values():
        future.result(30)
    console = console_factory(links=LinkSettings(topics=topics))
    pair = PairState(
        kind=CUSTOMER,
        salesforce_id="001UI0000000ZZZAAA",
        sage_id="01-ZEPH",
        state=SUGGESTED,
        how="automatic",
        probability=0.93,
        comparison={"name": 0, "phone": 2, "address": 1},
        salesforce_name="Zephyrine Widget Works",
        sage_name="ZEPHYRINE WIDGET WORKS",
        salesforce_key="001UI0000000ZZZAAA",
        at="2026-12-07T10:00:00+00:00",
    )
    decision = Decision()
    decision.add(pair)
    link_store(console, topics).write(decision)
    return {"console": console, "pair": pair, "topics": topics}


def test_an_operator_accepts_a_suggested_link_and_it_is_written_and_audited(
    page: Page, shots: Shots, world: dict[str, Any]
) -> None:
    console: Console = world["console"]
    pair: PairState = world["pair"]
    console.login(page, "viewer")
    page.goto(f"{console.url}/links")
    row = page.locator(f'#review tr[data-pair="{pair.key}"]')
    expect(row).to_contain_text("Zephyrine Widget Works")
    expect(row.locator("button")).to_have_count(0)
    shots("viewer")

    page.click("button:text-is('Log out')")
    console.login(page, "operator")
    page.goto(f"{console.url}/links")
    shots("operator")
    page.locator(f'#review tr[data-pair="{pair.key}"] button:text-is("Accept")').click()
    expect(page.locator(".flash-success")).to_contain_text(f"{pair.key}: linked")
    expect(page.locator(f'#linked tr[data-pair="{pair.key}"]')).to_contain_text("accepted by operator")
    expect(page.locator(f'#review tr[data-pair="{pair.key}"]')).to_have_count(0)
    shots("accepted")

    # what `sagesf link` reads back: the pair linked, by the operator
    linked = link_store(console, world["topics"]).book().get(pair.key)
    assert linked is not None
    assert (linked.state, linked.how, linked.reason) == (LINKED, "operator", "accepted by operator")

    page.click("nav a:text-is('Audit')")
    row = page.locator("#audit tbody tr").first
    expect(row).to_contain_text("link.accept")
    expect(row).to_contain_text("operator")
    shots("audit")
