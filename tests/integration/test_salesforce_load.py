"""`sagesf load salesforce` end to end: the emulator (REST and Bulk API 2.0 query jobs over
sockets) -> the real broker and registry, then the CDC source taking over.

The load runs as the real command in a subprocess, is killed with SIGKILL twice (before it stores
a Bulk result set of Accounts, then a REST page of Products, whose records Kafka has), Accounts
change while it is stopped, and it runs again to the end. Its records are compared with what the
live mapping makes of the same records read over REST (Accounts and Opportunities come through
Bulk API 2.0, with their Contacts and lines from child jobs; Products, in two pages, and Orders
through REST). Then the CDC source (`sagesf run salesforce-source`),
started from the load's hand-over, publishes each change made after T0 once and nothing older,
although the emulator still holds the change events of every record the load published.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from connectors.salesforce.record_mapper import RecordMapper
from connectors.salesforce.record_reader import RecordReader
from connectors.salesforce.source_mapping import load_source_mapping
from sagesf.schemas import load_schema

# fixtures; this module gets an emulator of its own (module scope): the load reads all it holds
from tests.integration.test_salesforce_source import (  # noqa: F401
    emulator,
    make_source,
    reader,
    sf,
)
from tests.kit.load import killed_load

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOAD = ("salesforce", "--since", "2024-01-01", "--go-live", "2025-06-01")


def create(org: Any, sobject: str, records: list[dict[str, Any]]) -> list[str]:
    """Records created through sObject Collections, 200 a call; their IDs in order."""
    ids: list[str] = []
    for start in range(0, len(records), 200):
        chunk = [{"attributes": {"type": sobject}, **r} for r in records[start : start + 200]]
        results = org.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": chunk})
        assert all(r["success"] for r in results), results[:3]
        ids.extend(r["id"] for r in results)
    return ids


def seed(org: Any, t: str) -> dict[str, list[str]]:
    """A few hundred records of each kind the mapping loads, and some it must not load."""
    accounts = create(
        org,
        "Account",
        [
            {
                "Name": f"Load {t} {i:03d}",
                "Phone": f"555-{i:04d}",
                "BillingStreet": f"{i} Main St\nSuite {i}",
                "BillingCity": "Springfield",
                "BillingCountry": "United States",
                **({"ExternalID__c": f"01-L{t}{i:03d}"} if i % 3 == 0 else {}),
            }
            for i in range(300)
        ],
    )
    create(org, "Contact", [{"LastName": f"Contact {i}", "AccountId": accounts[i]} for i in range(150)])
    products = create(
        org,
        "Product2",
        [{"Name": f"Widget {i}", "ProductCode": f"W-{t}-{i:03d}", "IsActive": True} for i in range(250)],
    )
    pricebook = org.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entries = create(
        org,
        "PricebookEntry",
        [
            {"Pricebook2Id": pricebook, "Product2Id": p, "UnitPrice": 2.5, "IsActive": True}
            for p in products[:3]
        ],
    )
    won = [{"StageName": "Closed Won", "CloseDate": "2025-01-15"}] * 260
    won += [{"StageName": "Closed Won", "CloseDate": "2025-07-01"}] * 10  # after go-live: new orders
    skipped = [{"StageName": "Closed Won", "CloseDate": "2023-06-30"}] * 10  # before --since
    skipped += [{"StageName": "Prospecting", "CloseDate": "2025-01-15"}] * 20  # not won
    opportunities = create(
        org,
        "Opportunity",
        [{"Name": f"Deal {i}", "AccountId": accounts[i], **kind} for i, kind in enumerate(won + skipped)],
    )
    create(
        org,
        "OpportunityLineItem",
        [
            {"OpportunityId": o, "PricebookEntryId": entries[i % 3], "Quantity": 1 + i % 4, "UnitPrice": 2.5}
            for i, o in enumerate(opportunities[:270])
        ],
    )
    orders = create(
        org,
        "Order",
        [
            {
                "AccountId": accounts[i],
                "EffectiveDate": "2025-02-01",
                "Status": "Draft",
                "Pricebook2Id": pricebook,
            }
            for i in range(20)
        ],
    )
    create(
        org,
        "OrderItem",
        [{"OrderId": o, "PricebookEntryId": entries[0], "Quantity": 2, "UnitPrice": 2.5} for o in orders],
    )
    org.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Order"}, "Id": o, "Status": "Activated"} for o in orders]},
    )
    return {"Account": accounts, "Product2": products, "Opportunity": opportunities[:270], "Order": orders}


def load(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagesf", "load", *LOAD],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def avro(schema: str, value: dict[str, Any]) -> dict[str, Any]:
    """A mapped value as a consumer decodes it (defaults filled in)."""
    parsed = load_schema(schema)
    buffer = io.BytesIO()
    schemaless_writer(buffer, parsed, value)
    buffer.seek(0)
    decoded: dict[str, Any] = schemaless_reader(buffer, parsed)  # type: ignore[assignment]
    return decoded


def expected(org: Any, entity: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """What the live source's mapping makes of these records read over REST, by record ID,
    without the envelope."""
    mapping = load_source_mapping()
    mapper = RecordMapper(mapping)
    found = RecordReader(org, mapping).read(entity, ids)
    out = {}
    for record_id, record in found.items():
        mapped = mapper.object_record(entity, record, event_id=str(uuid.uuid4()), event_time_ms=0)
        assert mapped.value is not None
        out[record_id] = {k: v for k, v in avro(mapped.schema, mapped.value).items() if k != "envelope"}
    return out


def by_record(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["value"]["envelope"]["source_record_id"]: r for r in found}


def test_the_load_resumes_after_kill_9_maps_as_the_source_and_hands_over_at_t0(
    make_source,  # noqa: F811 - the fixtures imported above
    reader,  # noqa: F811
    sf,  # noqa: F811
):
    t = uuid.uuid4().hex[:6]
    ids = seed(sf, t)
    source, topics = make_source(
        SAGESF_SALESFORCE__SOURCE__CHANNELS='["/data/AccountChangeEvent", "/data/OpportunityChangeEvent"]'
    )
    env = {
        **source.env,
        "SAGESF_SALESFORCE__LOAD__BULK_THRESHOLD": "260",  # Accounts and Opportunities through Bulk
        "SAGESF_SALESFORCE__LOAD__REST_BATCH_SIZE": "200",  # Product2 in two REST pages
        "SAGESF_SALESFORCE__LOAD__RESULT_SET_RECORDS": "50",
        "SAGESF_SALESFORCE__LOAD__POLL_INTERVAL": "0.05",
    }
    # killed twice: in the Accounts' Bulk result sets (second of six), and then in the second and
    # last REST page of Product2 (seventh checkpoint of the rerun: five more sets, one page)
    assert killed_load(env, *LOAD, checkpoint=2) == ["object/Account"]
    assert killed_load(env, *LOAD, checkpoint=7) == ["object/Product2"]
    during = [ids["Account"][1], ids["Account"][298]]  # changed after T0, while the load is stopped
    for account in during:
        sf.Account.update(account, {"Phone": "555-DURING"})
    done = load(env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "hand-over" in done.stdout

    customers = reader(topics["customer.v1"], "Customer")
    orders = reader(topics["salesorder.v1"], "SalesOrder")
    items = reader(topics["item.v1"], "Item")
    for topic in (customers, orders, items):
        topic.poll(0)
    # nothing missing, nothing else; again only the result set whose position the kill cut off,
    # as the same versions (key and event ID): idempotent for a consumer
    loaded = {"Account": customers, "Product2": items, "Opportunity": orders}
    for entity, topic in loaded.items():
        assert set(by_record(topic.records)) >= set(ids[entity]) - set(during), entity
    assert {r for r in by_record(orders.records) if r.startswith("801")} == set(ids["Order"])
    assert len(by_record(orders.records)) == 270 + 20  # not the open ones, not those before --since
    for entity, topic in loaded.items():
        versions = Counter((r["key"], r["value"]["envelope"]["event_id"]) for r in topic.records)
        assert set(versions.values()) <= {1, 2}, entity
        repeated = [pair for pair, n in versions.items() if n == 2]
        assert len(repeated) == {"Account": 50, "Product2": 50}.get(entity, 0), entity

    # the live mapping, whichever API read them: Contacts and lines joined from their own jobs
    for entity, topic in loaded.items():
        want = expected(sf, entity, ids[entity])
        got = {
            rid: {k: v for k, v in r["value"].items() if k != "envelope"}
            for rid, r in by_record(topic.records).items()
        }
        for record_id in set(ids[entity]) - set(during):
            assert got[record_id] == want[record_id], (entity, record_id)
    assert sum(len(r["value"]["contacts"]) for r in customers.records) >= 149  # the Contacts came
    # won before go-live: history, never to be ordered again; after it: a new order
    history = {rid: r["headers"].get("sagesf.history") for rid, r in by_record(orders.records).items()}
    assert Counter(history.values()) == {b"before-go-live": 260 + 20, None: 10}

    # run again: nothing new
    again = load(env)
    assert again.returncode == 0
    assert "loaded before" in again.stdout
    before = {name: len(topic.records) for name, topic in (("c", customers), ("o", orders), ("i", items))}
    for topic in (customers, orders, items):
        topic.poll(0)
    assert {
        name: len(topic.records) for name, topic in (("c", customers), ("o", orders), ("i", items))
    } == before

    # the source takes over: the changes after T0 once each, none of the older events the org keeps
    after = ids["Account"][150]
    sf.Account.update(after, {"Phone": "555-AFTER"})
    seen = len(customers.records)
    source.start()
    sentinel = sf.Account.create({"Name": f"Sentinel {t}"})["id"]  # its event comes after all others
    customers.wait_for(lambda r: r["value"]["envelope"]["source_record_id"] == sentinel, timeout=60)
    new = [r["value"] for r in customers.records[seen:]]
    assert sorted(v["envelope"]["source_record_id"] for v in new) == sorted([*during, after, sentinel])
    assert {v["telephone_no"] for v in new if v["envelope"]["source_record_id"] != sentinel} == {
        "555-DURING",
        "555-AFTER",
    }
    orders.poll(0)
    assert len(orders.records) == before["o"]  # no order again: the org's old events are skipped
