"""The mapping editor in a real browser: a mapper maps the new Account picklist Customer_Tier__c
to the new AR_Customer UDF_CUSTOMER_TIER with a value map, previews it on live customer.v1
records, and saves; a viewer cannot; a value map of order lines is previewed on the newest
salesorder.v1 record. Screenshots: test-output/ui/<test name>/.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.schema_registry import SchemaRegistryClient
from playwright.sync_api import FloatRect, Page, expect

from sagesf.serde import AvroSerde
from tests.kit.console import TIERS, tier_metadata
from tests.kit.kafka import produce
from tests.ui.conftest import Console, Shots

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def published(record_id: str) -> dict[str, Any]:
    """The envelope of a record the Salesforce source publishes now for `record_id`."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": "SALESFORCE",
        "source_record_id": record_id,
        "correlation_id": None,
    }


def account_record(account: str, name: str, tier: str) -> dict[str, Any]:
    """A Customer the Salesforce source published for an Account with Customer_Tier__c set."""
    return {
        "envelope": published(account),
        "salesforce_account_id": account,
        "name": name,
        "status": "ACTIVE",
        "custom_fields": {"customer_tier": tier},
    }


def won_opportunity(opportunity: str, account: str, name: str) -> dict[str, Any]:
    """A SalesOrder the Salesforce source published for a won Opportunity: one line of 2 boxes."""
    line = {
        "line_no": 1,
        "product_code": "HRDW-1008",
        "unit_of_measure": "Box",
        "quantity_ordered": Decimal(2),
        "unit_price": Decimal("9.50"),
        "extension_amount": Decimal("19.00"),
    }
    return {
        "envelope": published(opportunity),
        "salesforce_opportunity_id": opportunity,
        "customer": {"salesforce_account_id": account, "name": name},
        "status": "NEW",
        "order_date": date(2026, 12, 1),
        "currency_code": "USD",
        "total_amount": Decimal("19.00"),
        "lines": [line],
    }


def _ensure_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=10).topics:
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(30)


@pytest.fixture
def studio(
    kafka_bootstrap: str,
    schema_registry_url: str,
    console_factory: Callable[..., Console],
    tmp_path: Path,
) -> tuple[Console, Path, dict[str, str]]:
    """A console on a copy of mappings/ with metadata naming the tier pair, and two live Account
    records on customer.v1 (Gold, and Diamond, which no map knows)."""
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings, ignore=shutil.ignore_patterns("metadata"))
    sf, sage = tier_metadata(tmp_path / "metadata")
    registry = SchemaRegistryClient({"url": schema_registry_url})
    names = {
        "gold": f"Goldsmith Supply {uuid.uuid4().hex[:4]}",
        "diamond": f"Diamond Tools {uuid.uuid4().hex[:4]}",
    }
    records = []
    for tier, name in (("Gold", names["gold"]), ("Diamond", names["diamond"])):
        account = f"001UI{uuid.uuid4().hex[:13]}"
        key = AvroSerde.string_key(registry, "customer.v1", auto_register=True).encode(account)
        value = AvroSerde.canonical(registry, "Customer", "customer.v1", auto_register=True).encode(
            account_record(account, name, tier)
        )
        records.append((key, value))
    _ensure_topic(kafka_bootstrap, "customer.v1")
    produce(kafka_bootstrap, "customer.v1", records)
    console = console_factory(
        mappings_dir=mappings,
        state_dir=tmp_path / "state",
        salesforce_metadata=sf,
        sage_metadata=sage,
        preview_records=5,
    )
    return console, mappings, names


def test_a_mapper_maps_a_new_picklist_to_a_udf_with_a_value_map_previews_it_on_live_records_and_saves(
    studio: tuple[Console, Path, dict[str, str]], page: Page, shots: Shots
) -> None:
    console, mappings, names = studio
    console.login(page, "mapper")
    page.goto(f"{console.url}/mappings/customers")
    expect(page.locator("#salesforce-fields")).to_contain_text("Customer_Tier__c")
    expect(page.locator("#sage-columns")).to_contain_text("UDF_CUSTOMER_TIER")
    shots("editor")

    form = page.locator("#pair-form")
    form.locator("select[name=salesforce]").select_option("Customer_Tier__c")
    form.locator("select[name=sage]").select_option("UDF_CUSTOMER_TIER")
    form.locator("select[name=type]").select_option("picklist")
    form.get_by_role("button", name="Pair").click()
    expect(page.locator("#row-customer_tier")).to_contain_text("UDF_CUSTOMER_TIER")
    grid = page.locator("#map-customer_tier")
    grid.get_by_label("to for Platinum").fill("PLATINUM")  # checked as typed: too long for S4
    expect(grid.locator(".live-problems")).to_contain_text("PLATINUM")
    shots("checked-as-typed")
    for tier, code in TIERS.items():
        grid.get_by_label(f"to for {tier}").fill(code)
    expect(grid.locator(".live-problems")).to_contain_text("no problems")
    shots("value-map-filled")
    grid.get_by_role("button", name="Apply to draft").click()
    expect(page.locator("#draft-bar")).to_contain_text("valid")
    shots("paired-and-mapped")
    # the README's picture: the pairs, the pair form and the new value map, at a readable size
    bottom = page.evaluate(
        "document.querySelector('#map-customer_tier').getBoundingClientRect().bottom + window.scrollY"
    )
    readme: FloatRect = {"x": 0, "y": 0, "width": 1280, "height": float(bottom) + 16}
    page.screenshot(path=str(shots.folder / "readme-mapping-editor.png"), full_page=True, clip=readme)

    page.get_by_role("link", name="Preview on live records").first.click()
    gold = page.locator("section.preview-record", has_text=names["gold"])
    expect(gold).to_contain_text("UDF_CUSTOMER_TIER")
    expect(gold.locator("tr", has_text="UDF_CUSTOMER_TIER")).to_contain_text("GOLD")
    diamond = page.locator("section.preview-record", has_text=names["diamond"])
    expect(diamond.locator("td.fails")).to_contain_text("'Diamond'")
    shots("preview")

    page.goto(f"{console.url}/mappings/changes")
    expect(page.locator("#diff")).to_contain_text("+  customer_tier: {salesforce: Customer_Tier__c")
    shots("review")
    assert "customer_tier" not in (mappings / "customers.yaml").read_text(), "written before Save"
    page.locator("#save").click()
    expect(page.locator(".flash-success")).to_contain_text("Saved as version 1")
    expect(page.locator(".flash-success")).to_contain_text("within 10 s")
    shots("saved")

    saved = yaml.safe_load((mappings / "customers.yaml").read_text())
    assert saved["custom_fields"]["customer_tier"] == {
        "salesforce": "Customer_Tier__c",
        "sage": "UDF_CUSTOMER_TIER",
        "type": "picklist",
        "map": "customer_tier",
    }
    assert saved["picklists"]["customer_tier"]["values"] == TIERS
    source = yaml.safe_load((mappings / "salesforce_source.yaml").read_text())
    assert source["objects"]["Account"]["custom_fields"]["customer_tier"] == "Customer_Tier__c"


def test_a_viewer_gets_no_save_button_and_a_forged_save_is_refused(
    studio: tuple[Console, Path, dict[str, str]], page: Page, shots: Shots
) -> None:
    console, mappings, _ = studio
    before = {p.name: p.read_text() for p in mappings.glob("*.yaml")}
    console.login(page, "viewer")
    page.goto(f"{console.url}/mappings/customers")
    expect(page.locator("#pairs")).to_be_visible()
    expect(page.locator("#pair-form")).to_have_count(0)
    page.goto(f"{console.url}/mappings/changes")
    expect(page.locator("#save")).to_have_count(0)
    shots("viewer")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    answer = page.request.post(f"{console.url}/mappings/save", form={"csrf_token": token})
    assert answer.status == 403
    pair: dict[str, str | float | bool] = {
        "csrf_token": token,
        "salesforce": "Customer_Tier__c",
        "sage": "UDF_CUSTOMER_TIER",
    }
    assert page.request.post(f"{console.url}/mappings/customers/pair", form=pair).status == 403
    assert {p.name: p.read_text() for p in mappings.glob("*.yaml")} == before


def test_a_value_map_of_order_lines_is_previewed_on_the_newest_won_opportunity(
    kafka_bootstrap: str,
    schema_registry_url: str,
    console_factory: Callable[..., Console],
    tmp_path: Path,
    page: Page,
    shots: Shots,
) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings, ignore=shutil.ignore_patterns("metadata"))
    sf, sage = tier_metadata(tmp_path / "metadata")
    registry = SchemaRegistryClient({"url": schema_registry_url})
    opportunity, name = f"006UI{uuid.uuid4().hex[:13]}", f"Boxwood Hardware {uuid.uuid4().hex[:4]}"
    key = AvroSerde.string_key(registry, "salesorder.v1", auto_register=True).encode(opportunity)
    value = AvroSerde.canonical(registry, "SalesOrder", "salesorder.v1", auto_register=True).encode(
        won_opportunity(opportunity, f"001UI{uuid.uuid4().hex[:13]}", name)
    )
    _ensure_topic(kafka_bootstrap, "salesorder.v1")
    produce(kafka_bootstrap, "salesorder.v1", [(key, value)])
    console = console_factory(
        mappings_dir=mappings, state_dir=tmp_path / "state", salesforce_metadata=sf, sage_metadata=sage
    )
    console.login(page, "mapper")
    page.goto(f"{console.url}/mappings/order-lines")
    grid = page.locator("#map-unit_of_measure")
    grid.get_by_label("to for Box").fill("BX")
    grid.get_by_role("button", name="Apply to draft").click()
    expect(page.locator("#draft-bar")).to_contain_text("valid")

    page.get_by_role("link", name="Preview on live records").first.click()
    order = page.locator("section.preview-record", has_text=name)
    expect(order).to_contain_text("Sage SO_SalesOrderDetail")
    changed = order.locator("tr", has_text="line 1 UnitOfMeasure")
    expect(changed.locator("td.differs").first).to_have_text("BOX")
    expect(changed.locator("td.differs").last).to_have_text("BX")
    shots("order-lines-preview")

    page.goto(f"{console.url}/mappings/order-header/preview")
    header = page.locator("section.preview-record", has_text=name)
    expect(header).to_contain_text("Sage SO_SalesOrderHeader")
    expect(header.locator("tr", has_text="WarehouseCode")).to_contain_text("000")
    shots("order-header-preview")
