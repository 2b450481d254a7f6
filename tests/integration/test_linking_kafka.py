"""`sagesf link` on a real broker and registry: both sides' records read from customer.v1 and
item.v1, the links written as commands, tombstones and link.state.v1 records; and a link's
UpsertCustomer, applied by the real Sage sink, writes UDF_SALESFORCE_ID."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.commands import parse_command
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.reads import SqlSageReads
from connectors.sage100.sink import SageCommandSink
from connectors.sage100.sql_writer import SqlSageWriter
from connectors.sage100.validation import CommandValidator
from linking import decisions
from linking.cli import app as link_app
from linking.cli import console as link_console
from linking.config import TOPICS, LinkSettings
from linking.store import LinkStore
from sagesf import topic_names
from sagesf.config import KafkaSettings, RegistrySettings, Settings
from sagesf.link_state import LINKED
from sagesf.producer import ConfirmedProducer
from sandbox.existing_company import generate
from sandbox.salesforce.ids import make_id
from sandbox.seed_existing import canonical_records
from tests.kit.kafka import read_topic

pytestmark = pytest.mark.integration


def _namesake(source: str, name: str, phone: str, line1: str, zip_code: str, **ids: str) -> dict[str, Any]:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": source,
        "source_record_id": "x",
        "correlation_id": None,
    }
    return {
        "envelope": envelope,
        "name": name,
        "status": "ACTIVE",
        "telephone_no": phone,
        "billing_address": {"line1": line1, "postal_code": zip_code},
        **ids,
    }


# one name in one town, other phones and streets: a pair for review
NAMESAKES = (
    _namesake(
        "SALESFORCE",
        "Zephyrine Widget Works",
        "3035550111",
        "12 Oak St",
        "80202",
        salesforce_account_id="001000000000ZZZAAA",
    ),
    _namesake(
        "SAGE100",
        "ZEPHYRINE WIDGET WORKS",
        "7205550199",
        "98 Elm Ave",
        "80219",
        ar_division_no="01",
        customer_no="ZEPH",
    ),
)


@pytest.fixture
def store(kafka_bootstrap: str, schema_registry_url: str, new_topic: Callable[..., str]) -> LinkStore:
    core = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        registry=RegistrySettings(url=schema_registry_url, auto_register=True),
    )
    topics = {
        name: new_topic(name.replace(".", "-"), config={"cleanup.policy": "compact"}) for name in TOPICS
    }
    return LinkStore(core, LinkSettings(topics=topics))


def test_links_go_out_as_commands_tombstones_and_states(
    store: LinkStore, kafka_bootstrap: str, sage_db
) -> None:
    company = generate(120, seed=8)
    account_ids = [make_id("001", i + 1) for i in range(len(company.accounts))]
    product_ids = [make_id("01t", i + 1) for i in range(len(company.products))]
    customers, items = canonical_records(company, account_ids, product_ids)
    customers += [(NAMESAKES[0]["salesforce_account_id"], NAMESAKES[0]), ("01-ZEPH", NAMESAKES[1])]
    producer = ConfirmedProducer(store.core.kafka)
    for name, schema, records in (
        (topic_names.CUSTOMERS, "Customer", customers),
        (topic_names.ITEMS, "Item", items),
    ):
        topic = store.settings.topic(name)
        for key, value in records:
            producer.send(
                topic, store._serde(topic, schema).encode(value), store._serde(topic, "key").encode(key)
            )
    producer.confirm()
    producer.close()

    parties, articles = store.records()
    assert len(parties) == len(company.accounts) + len(company.sage_customers) + len(NAMESAKES)
    decision = decisions.suggest(store.book(), parties, articles, store.settings.thresholds)  # what to expect
    cli = _cli(store)
    code, out = cli("suggest")
    assert code == 0, out
    assert "waiting for review" in out

    states = read_topic(kafka_bootstrap, store.settings.topic(topic_names.LINK_STATE))
    assert len(states) == len(decision.changed)
    linked = [json.loads(r.value or b"{}") for r in states]
    automatic = [
        p for p in linked if p["state"] == LINKED and p["kind"] == "customer" and p["how"] == "automatic"
    ]
    assert automatic
    tombstoned = {
        r.key
        for r in read_topic(kafka_bootstrap, store.settings.topic(topic_names.CUSTOMERS))
        if r.value is None
    }
    assert len(tombstoned) >= len(automatic)  # each automatic customer link drops its Account-keyed record
    assert store.book().get(f"customer:{automatic[0]['salesforce_id']}:{automatic[0]['sage_id']}") is not None
    again = decisions.suggest(store.book(), *store.records(), store.settings.thresholds)
    book = store.book()
    relinked = [p for p in again.changed if (book.get(p.key) or p).state == LINKED]
    assert relinked == [], [(p.key, p.state, p.how) for p in again.changed]  # nothing linked twice

    # the review queue and an operator's decisions, from the command line
    code, out = cli("review")
    assert code == 0, out
    assert "customer:001000000000ZZZAAA:01-ZEPH" in out
    assert "waiting" in out
    code, out = cli("accept", "001000000000ZZZAAA", "--by", "tester")
    assert (code, "customer:001000000000ZZZAAA:01-ZEPH: linked") == (0, out.strip().splitlines()[0]), out
    code, out = cli("accept", "customer:001000000000ZZZAAA:01-ZEPH")
    assert code == 0
    assert "linked already" in out
    code, out = cli("reject", "customer:001000000000ZZZAAA:01-ZEPH")
    assert code == 1
    assert "unlink it first" in out

    # the link's UpsertCustomer, as the Sage sink applies it, links an unlinked customer
    sage_commands = read_topic(kafka_bootstrap, store.settings.topic(topic_names.SAGE_COMMANDS))
    topic = store.settings.topic(topic_names.SAGE_COMMANDS)
    command = parse_command(store._serde(topic, "SageCommand").decode(sage_commands[0].value or b""))
    odbc = sage_db.odbc()
    try:
        [(division, number)] = odbc.fetchall(
            "SELECT ARDivisionNo, CustomerNo FROM AR_Customer ORDER BY CustomerNo LIMIT 1"
        )
        command.customer["ar_division_no"], command.customer["customer_no"] = division, number  # type: ignore[index]
        reads = SqlSageReads(odbc, sage_db.tables)
        sink = SageCommandSink(
            reads=reads,
            writer=SqlSageWriter(odbc, sage_db.tables, user_key="SGSF", zone=sage_db.settings().zone),
            validator=CommandValidator(reads, tables=sage_db.tables),
            numbering=CustomerNumbering(),
            results_topic="sage.results.v1",
            breaker=CircuitBreaker("sage-sink"),
        )
        result = sink.apply(command)
        [(udf, name)] = odbc.fetchall(
            "SELECT UDF_SALESFORCE_ID, CustomerName FROM AR_Customer "
            "WHERE ARDivisionNo = ? AND CustomerNo = ?",
            [division, number],
        )
    finally:
        odbc.close()
    assert result["outcome"] == "UPDATED"
    assert udf == command.customer["salesforce_account_id"]  # type: ignore[index]
    assert name  # Sage's name stays


def _cli(store: LinkStore) -> Callable[..., tuple[int, str]]:
    """`sagesf link <args>` against the test's cluster, registry and topics."""
    env = {
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": store.core.kafka.bootstrap_servers,
        "SAGESF_REGISTRY__URL": store.core.registry.url,
        "SAGESF_REGISTRY__AUTO_REGISTER": "true",
        "SAGESF_LINK__TOPICS": json.dumps(store.settings.topics),
        "COLUMNS": "300",
    }

    # the command's console took its width when linking.cli was imported, wherever that was
    link_console.width = 300

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(link_app, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return run
