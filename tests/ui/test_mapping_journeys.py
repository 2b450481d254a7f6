"""Mapping journeys on a whole running sandbox (tests/e2e/conftest.py `sandbox_stack`: Kafka, the
registry, both emulators and the pipeline processes), in a real browser.

The console runs in the test process on the sandbox's Kafka and mapping files. Journey 1: a
mapper maps the Account picklist Customer_Tier__c to the AR_Customer UDF_CUSTOMER_TIER with a
value map, previews it on live records and saves; then a rep's tier on an Account arrives in
Sage as its code, and a Sage user's code comes back as the tier. Journey 2: an order
dead-lettered for an unknown product is fixed by adding a row to the ProductCode ->
ItemCode lookup in the mapping editor, and replayed from the dead-letter page: exactly one Sage
order. Screenshots: test-output/ui/<test name>/.
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pydantic import SecretStr

from console.app import create_app
from console.settings import ConsoleSettings
from console.users import MAPPER, OPERATOR, UserFile
from sagesf.config import KafkaSettings, RegistrySettings
from sagesf.stages import StageSettings
from sandbox import pipeline, stack
from sandbox.order_flow import (
    SageDatabase,
    price_book,
    sage_customer_accounts,
    sales_rep,
    sell_new_product,
    wait_for,
    win_opportunity,
)
from sandbox.order_flow import write_back as order_write_back
from sandbox.paths import REPO_ROOT
from sandbox.pipeline import sage_database_path
from sandbox.processes import free_port
from tests.e2e.conftest import sandbox_stack
from tests.kit.console import TIERS
from tests.ui.conftest import PASSWORD, Console, Shots, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


@dataclass(frozen=True)
class Studio:
    console: Console
    salesforce_url: str


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A whole sandbox (the order tests' stack) and a console on its Kafka and mapping files.

    The console runs here rather than as the sandbox's own process: `sagesf run console` needs the
    package's entry points installed, and this way the test depends on the console's code only.
    """
    from sandbox.salesforce.scenarios import seed

    state = tmp_path_factory.mktemp("sandbox")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "COMPONENTS", [c for c in pipeline.COMPONENTS if c.name != pipeline.CONSOLE])
        with sandbox_stack(state) as (sandbox, mappings_dir):
            seed(sales_rep(sandbox.addresses["salesforce"]))
            settings = ConsoleSettings(
                session_secret=SecretStr("s" * 48),
                users_file=state / "console" / "users.json",
                audit_log=state / "console" / "audit.jsonl",
                mappings_dir=mappings_dir,
                state_dir=state / "console" / "state",
                salesforce_metadata=REPO_ROOT / "sandbox/salesforce/metadata.yaml",
                sage_metadata=REPO_ROOT / "mappings/metadata/sage100.yaml",
                processors_reload_interval=1,
            )
            UserFile(settings.users_file).add("admin", PASSWORD, [MAPPER, OPERATOR])
            core = StageSettings(
                kafka=KafkaSettings(bootstrap_servers=sandbox.addresses["kafka"]),
                registry=RegistrySettings(url=sandbox.addresses["registry"]),
            )
            port = free_port()
            stop = serve(create_app(settings, core), port)
            try:
                yield Studio(
                    Console(f"http://127.0.0.1:{port}", settings, core), sandbox.addresses["salesforce"]
                )
            finally:
                stop()


_RELOADS = {
    "processors": "sagesf_processor_mapping_reloads_total",
    "salesforce-source": "sagesf_salesforce_source_mapping_reloads_total",
}


def _reloads(process: str) -> int:
    """How often the sandbox's `process` has loaded edited mapping files so far."""
    service = next(s for s in stack.services() if s.name == process)
    address = service.address()
    assert address is not None, f"the {process} process is not running"
    with urllib.request.urlopen(address, timeout=5) as response:  # noqa: S310 - the sandbox's own URL
        text = response.read().decode()
    found = re.search(rf'^{_RELOADS[process]}\{{result="ok"\}} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def _wait_until_reloaded(since: dict[str, int]) -> None:
    """Until each process named in `since` (with its reloads then) loaded the saved mapping files."""
    for process, before in since.items():

        def reloaded(process: str = process, before: int = before) -> bool | None:
            return _reloads(process) > before or None

        wait_for(f"the {process} to reload the mappings", reloaded, 30)


def test_a_tier_mapped_in_the_editor_goes_from_an_account_to_its_sage_customer_and_back(
    studio: Studio, page: Page, shots: Shots
) -> None:
    from sandbox.sage100 import open_database
    from sandbox.sage100.simulator import SageSimulator

    sf: Any = sales_rep(studio.salesforce_url)
    db = SageDatabase(sage_database_path())
    try:
        account_id, account_name = sage_customer_accounts(sf, db, 3)[2]  # journey 2 uses the first
        division, number = sf.Account.get(account_id)["ExternalID__c"].split("-", 1)

        def tier_in_sage() -> str | None:
            query = "SELECT UDF_CUSTOMER_TIER FROM AR_Customer WHERE ARDivisionNo = ? AND CustomerNo = ?"
            return str(db.rows(query, division, number)[0]["UDF_CUSTOMER_TIER"] or "") or None

        sf.Account.update(account_id, {"Phone": f"(312) 555-{uuid.uuid4().int % 9000 + 1000}"})
        url = studio.console.url
        studio.console.login(page, "admin")
        page.goto(f"{url}/mappings/customers")
        form = page.locator("#pair-form")
        form.locator("select[name=salesforce]").select_option("Customer_Tier__c")
        form.locator("select[name=sage]").select_option("UDF_CUSTOMER_TIER")
        form.locator("select[name=type]").select_option("picklist")
        form.get_by_role("button", name="Pair").click()
        grid = page.locator("#map-customer_tier")
        for tier, code in TIERS.items():
            grid.get_by_label(f"to for {tier}").fill(code)
        expect(grid.locator(".live-problems")).to_contain_text("no problems")
        grid.get_by_role("button", name="Apply to draft").click()
        expect(page.locator("#draft-bar")).to_contain_text("valid")
        shots("mapped")

        # the rep's edit above, as the running source published it, mapped by the saved and the draft
        page.get_by_role("link", name="Preview on live records").first.click()
        expect(page.locator("section.preview-record", has_text=account_name).first).to_be_visible()
        shots("preview")

        page.goto(f"{url}/mappings/changes")
        reloads = {process: _reloads(process) for process in _RELOADS}
        page.locator("#save").click()
        expect(page.locator(".flash-success")).to_contain_text("Saved as version")
        shots("saved")
        _wait_until_reloaded(reloads)

        sf.Account.update(account_id, {"Customer_Tier__c": "Gold"})
        assert wait_for("UDF_CUSTOMER_TIER = GOLD in Sage", lambda: tier_in_sage() == "GOLD" or None, 60)

        with SageSimulator(open_database(sage_database_path())) as sage:
            sage.edit_customer(division, number, {"UDF_CUSTOMER_TIER": "PLAT"})
        wait_for(
            "Customer_Tier__c = Platinum on the Account",
            lambda: sf.Account.get(account_id)["Customer_Tier__c"] == "Platinum" or None,
            60,
        )
        assert tier_in_sage() == "PLAT"  # the Sage user's edit was not undone by its echo
    finally:
        db.close()


def test_an_order_dead_lettered_for_an_unknown_product_is_fixed_in_the_lookup_grid_and_replayed_once(
    studio: Studio, page: Page, shots: Shots
) -> None:
    sf: Any = sales_rep(studio.salesforce_url)
    db = SageDatabase(sage_database_path())
    try:
        code = f"UI-WIDGET-{uuid.uuid4().hex[:6].upper()}"
        account_id, account_name = sage_customer_accounts(sf, db, 1)[0]
        entries = {**price_book(sf), code: sell_new_product(sf, code, 15.0)}
        won = win_opportunity(sf, account_id, account_name, [(code, 3)], entries)
        wait_for(
            "Sage_Sync_Status__c = Error",
            lambda: sf.Opportunity.get(won.opportunity_id)["Sage_Sync_Status__c"] == "Error" or None,
            timeout=60,
        )

        studio.console.login(page, "admin")  # mapper and operator
        url = studio.console.url
        page.goto(f"{url}/mappings/items")
        grid = page.locator("#code-lookup")
        grid.get_by_label("new ProductCode").fill(code)
        grid.get_by_label("new ItemCode").fill("HRDW-1008")
        shots("lookup-row-added")
        grid.get_by_role("button", name="Apply to draft").click()
        expect(page.locator("#draft-bar")).to_contain_text("valid")
        page.goto(f"{url}/mappings/changes")
        expect(page.locator("#diff")).to_contain_text(f"+  {code}: HRDW-1008")
        reloads = {"processors": _reloads("processors")}
        page.locator("#save").click()
        expect(page.locator(".flash-success")).to_contain_text("Saved as version")
        shots("saved")
        _wait_until_reloaded(reloads)

        page.goto(f"{url}/dead-letters/orders")
        row = page.locator("#dead-letters tr", has_text=won.opportunity_id).first
        expect(row).to_contain_text(code)
        row.locator("a").first.click()
        shots("dead-letter")
        page.locator("#replay").click()
        expect(page.locator("#replayed")).not_to_contain_text("not yet")
        shots("replayed")

        synced = wait_for(
            "the order number on the opportunity", lambda: order_write_back(sf, won.opportunity_id), 60
        )
        assert synced["Sage_Sync_Status__c"] == "Synced"
        orders = db.orders_for(won.opportunity_id)
        assert [o["SalesOrderNo"] for o in orders] == [synced["Sage_Order_No__c"]]
        lines = [
            (r["ItemCode"], Decimal(str(r["QuantityOrdered"])))
            for r in db.lines_of(orders[0]["SalesOrderNo"])
        ]
        assert lines == [("HRDW-1008", Decimal(3))]
    finally:
        db.close()
