"""Going live on a company that already has data, end to end, as an operator does it.

A generated company (`sagesf sandbox seed existing`: the same customers and products typed
differently on both sides, some on one side only, won opportunities with the Sage orders entered
for them by hand) is loaded into Kafka (`sagesf load salesforce|sage`), linked (`sagesf link
suggest`, then the review queue decided as an operator would, knowing the company: the ground
truth plays that operator), and only then is the pipeline started. What a user would see is then
checked: no Account or AR_Customer made twice, stock on the Product2s the company already had, and
a Closed Won opportunity from before go-live never ordered again, while one won after go-live is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from simple_salesforce.format import format_soql

from sandbox import pipeline, stack
from sandbox.order_flow import SageDatabase, sales_rep, wait_for, win_opportunity
from tests.e2e.conftest import sandbox_stack

pytestmark = pytest.mark.timeout(600)

CUSTOMERS = 120


@dataclass
class GoLive:
    """The company as it was before the pipeline started, and the handles to look at it after."""

    sf: Any  # a sales rep's simple-salesforce
    db: SageDatabase
    truth: dict[str, Any]
    env: dict[str, str]
    accounts_before: set[str]
    customers_before: set[str]  # ARDivisionNo-CustomerNo
    products_before: set[str]
    orders_before: set[str]  # sales order numbers, open or in history
    decided: dict[str, int]  # accepted / rejected by the operator


def sagesf(env: dict[str, str], *args: str) -> str:
    done = stack.sagesf_command(list(args), env)
    assert done.returncode == 0, (
        f"sagesf {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    return done.stdout


def account_links(sf: Any) -> dict[str, str | None]:
    """Account Id -> ExternalID__c of every Account."""
    return {
        r["Id"]: r["ExternalID__c"] for r in sf.query_all("SELECT Id, ExternalID__c FROM Account")["records"]
    }


def customer_links(db: SageDatabase) -> dict[str, str | None]:
    """ARDivisionNo-CustomerNo -> UDF_SALESFORCE_ID of every AR_Customer."""
    rows = db.rows("SELECT ARDivisionNo, CustomerNo, UDF_SALESFORCE_ID FROM AR_Customer")
    return {f"{r['ARDivisionNo']}-{r['CustomerNo']}": r["UDF_SALESFORCE_ID"] or None for r in rows}


def order_nos(db: SageDatabase) -> set[str]:
    """Every sales order number Sage has, open or in history."""
    return {
        r["SalesOrderNo"]
        for table in ("SO_SalesOrderHeader", "SO_SalesOrderHistoryHeader")
        for r in db.rows(f"SELECT SalesOrderNo FROM {table}")  # noqa: S608 - a table name of ours
    }


def decide_review_queue(env: dict[str, str], truth: dict[str, Any]) -> dict[str, int]:
    """The operator's part: every pair waiting for review accepted when it is the same company or
    product, rejected when not (through `sagesf link accept|reject`, as a person would)."""
    from linking.config import LinkSettings
    from linking.decisions import review_queue
    from linking.store import LinkStore
    from sagesf.config import KafkaSettings, RegistrySettings, Settings

    same = {("customer", p["account_id"], p["sage_key"]) for p in truth["customer_pairs"]}
    same |= {("item", p["product_id"], p["item_code"]) for p in truth["item_pairs"]}
    core = Settings(
        kafka=KafkaSettings(bootstrap_servers=env["SAGESF_KAFKA__BOOTSTRAP_SERVERS"]),
        registry=RegistrySettings(url=env["SAGESF_REGISTRY__URL"]),
    )
    queue = review_queue(LinkStore(core, LinkSettings()).book())
    accept = [p.key for p in queue if (p.kind, p.salesforce_id, p.sage_id) in same]
    reject = [p.key for p in queue if (p.kind, p.salesforce_id, p.sage_id) not in same]
    # a record in two pairs: accepting its true pair first supersedes the other one
    for verb, keys in (("accept", accept), ("reject", reject)):
        if keys:
            done = stack.sagesf_command(["link", verb, *keys, "--by", "go-live test"], env)
            assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a pair already decided
    return {"accepted": len(accept), "rejected": len(reject)}


@pytest.fixture(scope="module")
def go_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoLive]:
    state_dir = tmp_path_factory.mktemp("go-live")
    with sandbox_stack(state_dir, with_pipeline=False) as (sandbox, _mappings):
        env = pipeline.pipeline_env(
            sandbox.addresses["kafka"], sandbox.addresses["registry"], sandbox.addresses["salesforce"]
        )
        truth_path = state_dir / "truth.json"
        sagesf(
            env, "sandbox", "seed", "existing", "--customers", str(CUSTOMERS), "--truth", str(truth_path),
            "--replace-sage",
        )  # fmt: skip
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        sf = sales_rep(sandbox.addresses["salesforce"])
        db = SageDatabase(pipeline.sage_database_path())
        try:
            before = GoLive(
                sf=sf,
                db=db,
                truth=truth,
                env=env,
                accounts_before=set(account_links(sf)),
                customers_before=set(customer_links(db)),
                products_before={r["Id"] for r in sf.query_all("SELECT Id FROM Product2")["records"]},
                orders_before=order_nos(db),
                decided={},
            )
            go_live_day = date.fromisoformat(truth["go_live"])
            since = (go_live_day - timedelta(days=3 * 365)).isoformat()
            sagesf(env, "load", "salesforce", "--since", since, "--go-live", go_live_day.isoformat())
            sagesf(env, "load", "sage")
            sagesf(env, "link", "suggest")
            before.decided = decide_review_queue(env, truth)
            stack.start_pipeline(sandbox, lambda line: None)
            yield before
        finally:
            db.close()


def linked_stock_converged(box: GoLive) -> list[str] | None:
    """The linked items whose Product2 does not show Sage's stock yet (None when all do)."""
    pairs = {p["product_id"]: p["item_code"] for p in box.truth["item_pairs"]}
    rows = box.sf.query_all("SELECT Id, Quantity_On_Hand__c FROM Product2")["records"]
    shown = {r["Id"]: r["Quantity_On_Hand__c"] for r in rows}
    stocked = {r["ItemCode"] for r in box.db.rows("SELECT DISTINCT ItemCode FROM IM_ItemWarehouse")}
    behind = [
        f"{item}: Salesforce {shown.get(product)}, Sage {box.db.on_hand(item)}"
        for product, item in pairs.items()
        if item in stocked
        and (shown.get(product) is None or Decimal(str(shown[product])) != box.db.on_hand(item))
    ]
    return behind or None


def test_stock_reaches_the_product2s_that_existed_before(go_live: GoLive) -> None:
    def converged() -> bool | None:
        return linked_stock_converged(go_live) is None or None

    try:
        wait_for("stock on every linked Product2", converged, timeout=240, every=2)
    except TimeoutError:
        behind = linked_stock_converged(go_live) or []
        pytest.fail(f"{len(behind)} linked Product2s without Sage's stock, e.g. {behind[:5]}")
    products = {r["Id"] for r in go_live.sf.query_all("SELECT Id FROM Product2")["records"]}
    assert products == go_live.products_before, "the pipeline made Product2s the company already had"


def test_no_account_or_sage_customer_is_made_twice(go_live: GoLive) -> None:
    truth = go_live.truth
    pairs = {p["account_id"]: p["sage_key"] for p in truth["customer_pairs"]}

    def linked() -> bool | None:
        accounts = account_links(go_live.sf)
        return all(accounts.get(a) == k for a, k in pairs.items()) or None

    wait_for("ExternalID__c on every Account of a linked pair", linked, timeout=180, every=2)
    time.sleep(10)  # the Sage-only customers' new Accounts, and anything made twice, come meanwhile
    accounts = account_links(go_live.sf)
    new_accounts = {a: accounts[a] for a in set(accounts) - go_live.accounts_before}
    sage_only = set(truth["sage_only_customers"])
    twice = {a: k for a, k in new_accounts.items() if k not in sage_only}
    assert not twice, f"Accounts made for Sage customers that already had one: {twice}"
    external_ids = [k for k in accounts.values() if k]
    assert len(external_ids) == len(set(external_ids)), "two Accounts name the same Sage customer"

    customers = customer_links(go_live.db)
    assert set(customers) == go_live.customers_before, "the pipeline made AR_Customers"
    assert {k: customers[k] for k in pairs.values()} == {k: a for a, k in pairs.items()}


def test_an_order_won_before_go_live_is_not_ordered_again(go_live: GoLive) -> None:
    sf, db, truth = go_live.sf, go_live.db, go_live.truth
    old = truth["orders"][0]["opportunity_id"]
    sf.Opportunity.update(old, {"Description": "edited after go-live"})  # a change event for it

    # the control: an order won now, for a linked Account and a product the company already had
    pair = truth["customer_pairs"][0]
    item = truth["item_pairs"][0]
    code = sf.Product2.get(item["product_id"])["ProductCode"]
    entry = sf.query(
        format_soql(
            "SELECT Id, UnitPrice FROM PricebookEntry WHERE Product2Id = {} AND IsActive = true LIMIT 1",
            item["product_id"],
        )
    )["records"][0]
    won = win_opportunity(
        sf, pair["account_id"], pair["account_name"], [(code, 2)], {code: (entry["Id"], entry["UnitPrice"])}
    )
    order = wait_for(
        "the Sage order of the opportunity won after go-live",
        lambda: db.order_for(won.opportunity_id),
        timeout=120,
    )
    assert f"{order['ARDivisionNo']}-{order['CustomerNo']}" == pair["sage_key"]
    assert [r["ItemCode"] for r in db.lines_of(order["SalesOrderNo"])] == [item["item_code"]]

    time.sleep(5)  # the old opportunity's change went through the same processors meanwhile
    assert db.orders_for(old) == [], "the opportunity won before go-live was ordered again"
    assert order_nos(db) - go_live.orders_before == {order["SalesOrderNo"]}, "orders other than the new one"
