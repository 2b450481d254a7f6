"""Record linking: the seeded company that already has data, the linker on it, and the operator's
decisions. Pure logic over canonical records (what customer.v1 and item.v1 carry); the Kafka side
is tests/integration/test_linking_kafka.py, the figures at 2,000 customers bench/linking.py."""

from __future__ import annotations

import builtins
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from linking import decisions
from linking.config import LinkSettings
from linking.decisions import Decision, Refused
from linking.effects import Outbound
from linking.matcher import Thresholds
from linking.records import Article, Party, article, party
from sagesf import topic_names
from sagesf.config import ConfigError, load_settings
from sagesf.link_state import CUSTOMER, LINKED, REJECTED, SUGGESTED, UNLINKED, LinkBook, PairState
from sagesf.schemas import load_schema
from sandbox.existing_company import ExistingCompany, generate
from sandbox.salesforce.ids import make_id
from sandbox.seed_existing import canonical_records

THRESHOLDS = Thresholds(auto=0.999, review=0.5)


def ids(prefix: str, n: int) -> list[str]:
    return [make_id(prefix, i + 1) for i in range(n)]


def records(company: ExistingCompany) -> tuple[list[Party], list[Article], list[str], list[str]]:
    account_ids, product_ids = ids("001", len(company.accounts)), ids("01t", len(company.products))
    customers, items = canonical_records(company, account_ids, product_ids)
    parties = [p for key, value in customers if (p := party(value, key)) is not None]
    articles = [a for key, value in items if (a := article(value, key)) is not None]
    return parties, articles, account_ids, product_ids


def truth(company: ExistingCompany, account_ids: list[str], product_ids: list[str]) -> set[tuple[str, str]]:
    customers = {
        (
            account_ids[a],
            f"{company.sage_customers[s]['ARDivisionNo']}-{company.sage_customers[s]['CustomerNo']}",
        )
        for a, s in company.customer_pairs
    }
    items = {(product_ids[p], company.items[i]["ItemCode"]) for p, i in company.item_pairs}
    return customers | items


@pytest.fixture(scope="module")
def company() -> ExistingCompany:
    return generate(300, seed=5)


@pytest.fixture(scope="module")
def first_run(company: ExistingCompany) -> tuple[Decision, set[tuple[str, str]]]:
    parties, articles, account_ids, product_ids = records(company)
    return decisions.suggest(LinkBook(), parties, articles, THRESHOLDS), truth(
        company, account_ids, product_ids
    )


# --- the seeded company ----------------------------------------------------------------------------


def test_the_same_seed_makes_the_same_company_and_another_seed_another():
    assert generate(80, seed=3) == generate(80, seed=3)
    assert generate(80, seed=3).accounts != generate(80, seed=4).accounts


def test_most_customers_are_on_both_sides_and_some_on_one_side_only(company):
    paired_accounts = {a for a, _ in company.customer_pairs}
    paired_customers = {s for _, s in company.customer_pairs}
    assert 0.65 < len(company.customer_pairs) / len(company.sage_customers) < 0.85
    assert len(company.sage_customers) - len(paired_customers) > 30  # Sage only
    assert len(company.accounts) - len(paired_accounts) > 30  # Salesforce only (prospects)
    assert company.linked_on_account
    assert company.linked_in_sage


def test_both_sides_write_one_company_differently(company):
    pairs = [(company.accounts[a], company.sage_customers[s]) for a, s in company.customer_pairs]
    names_differ = sum(1 for a, c in pairs if a["Name"] != c["CustomerName"])
    phones_differ = sum(
        1 for a, c in pairs if a.get("Phone") and c["TelephoneNo"] and a["Phone"] != c["TelephoneNo"]
    )
    suite_lines = sum(1 for a, c in pairs if ("\n" in a["BillingStreet"]) != bool(c["AddressLine2"]))
    assert names_differ > len(pairs) / 3
    assert phones_differ > len(pairs) / 2
    assert suite_lines > 5
    assert any(c["CustomerName"].isupper() for _, c in pairs)
    assert any(a["Name"].endswith(("Inc", "Inc.", "Incorporated")) for a, _ in pairs)
    codes = [
        (company.products[p]["ProductCode"], company.items[i]["ItemCode"]) for p, i in company.item_pairs
    ]
    assert any(pc == ic.lower() for pc, ic in codes)
    assert any(pc.endswith(ic) and pc != ic for pc, ic in codes)  # a prefix
    assert company.orders
    assert all(o.sales_order_no for o in company.orders)


def test_sage_rows_fit_their_columns_and_code_page(company):
    lengths = {
        "CustomerName": 30,
        "AddressLine1": 30,
        "AddressLine2": 30,
        "City": 20,
        "TelephoneNo": 17,
        "ZipCode": 10,
    }
    for row in company.sage_customers:
        for column, length in lengths.items():
            assert len(row[column]) <= length, (column, row[column])
            row[column].encode("cp1252")
    assert all(len(i["ItemCodeDesc"]) <= 30 for i in company.items)


# --- suggesting --------------------------------------------------------------------------------------


def test_automatic_links_are_right_and_find_almost_every_pair(first_run):
    decision, true_pairs = first_run
    linked = {(p.salesforce_id, p.sage_id) for p in decision.changed if p.state == LINKED}
    assert linked <= true_pairs
    assert len(linked) / len(true_pairs) >= 0.95


def test_products_are_linked_by_score_though_the_source_keys_them_by_product_code(first_run):
    """The source publishes a Product2 without Sage_Item_Code__c with its ProductCode as item_code
    (its mapping's fallback): that names no Sage item, so the pair is scored, not taken as named."""
    decision, true_pairs = first_run
    products = {p for p in true_pairs if p[0].startswith("01t")}
    items = [p for p in decision.changed if p.kind == "item"]
    linked = {(p.salesforce_id, p.sage_id) for p in items if p.state == LINKED}
    assert linked <= products
    assert len(linked) / len(products) >= 0.95


def test_a_product_code_is_no_link_and_a_sage_item_code_is():
    def product(**fields: str) -> Article:
        record = {"envelope": {"source_system": "SALESFORCE"}, "salesforce_product_id": "01t000000000001AAA"}
        found = article({**record, **fields})
        assert found is not None
        return found

    assert product(item_code="hrdw 1000", product_code="hrdw 1000").linked_to is None
    assert product(item_code="HRDW-1000", product_code="hrdw 1000").linked_to == "HRDW-1000"


def test_links_named_by_a_record_are_linked_as_existing(first_run, company):
    decision, _ = first_run
    existing = [p for p in decision.changed if p.how == "existing"]
    assert len(existing) == len(company.linked_on_account | company.linked_in_sage)


def test_the_linker_never_reads_the_ground_truth(company, monkeypatch):
    parties, articles, _, _ = records(company)
    real_open = builtins.open

    def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
        assert "truth" not in str(file), f"the linker opened {file}"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    assert decisions.suggest(LinkBook(), parties, articles, THRESHOLDS).changed


def test_a_pair_with_only_the_name_and_town_in_common_waits_for_review(company):
    parties, articles, _, _ = records(company)
    account, customer = _moved_namesakes()
    decision = decisions.suggest(LinkBook(), [*parties, account, customer], articles, THRESHOLDS)
    [pair] = [p for p in decision.changed if p.salesforce_id == account.id]
    assert (pair.state, pair.sage_id) == (SUGGESTED, customer.id)
    assert not [o for o in decision.outbound if o.key == account.id and o.schema]  # nothing written for it


def _moved_namesakes() -> tuple[Party, Party]:
    """An Account and a Sage customer with one name in one town, but other phones and streets."""
    account = _party(
        "SALESFORCE", "001000000000ZZZAAA", "Zephyrine Widget Works", "3035550111", "12 Oak St", "80202"
    )
    customer = _party("SAGE100", "01-ZEPH", "ZEPHYRINE WIDGET WORKS", "7205550199", "98 Elm Ave", "80219")
    return account, customer


def _party(side: str, record_id: str, name: str, phone: str, street: str, zip_code: str) -> Party:
    record = {
        "envelope": {"source_system": side},
        "salesforce_account_id": record_id if side == "SALESFORCE" else None,
        "ar_division_no": record_id.split("-")[0] if side == "SAGE100" else None,
        "customer_no": record_id.split("-")[1] if side == "SAGE100" else None,
        "name": name,
        "telephone_no": phone,
        "billing_address": {"line1": street, "postal_code": zip_code},
    }
    found = party(record, record_id)
    assert found is not None
    return found


def test_a_second_run_changes_nothing(company, first_run):
    decision, _ = first_run
    book = _book_after(decision)
    parties, articles, _, _ = records(company)
    again = decisions.suggest(book, parties, articles, THRESHOLDS)
    assert again.changed == []
    assert again.outbound == []


def _book_after(*steps: Decision) -> LinkBook:
    book = LinkBook()
    for decision in steps:
        for pair in decision.changed:
            book.put(pair)
    return book


# --- what a link writes -----------------------------------------------------------------------------


def _encoded(out: Outbound) -> dict[str, Any]:
    """The command as its topic carries it: written and read with the canonical schema."""
    schema = load_schema(str(out.schema))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, out.value)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema, schema)
    assert isinstance(decoded, dict)
    return decoded


def _customer_pair(state: str = SUGGESTED) -> PairState:
    return PairState(
        kind=CUSTOMER,
        salesforce_id="001000000000AAAAAA",
        sage_id="01-ACME0001",
        state=state,
        how="automatic",
        probability=0.93,
        salesforce_name="Acme Corporation",
        sage_name="ACME CORP.",
        salesforce_key="001000000000AAAAAA",
    )


def test_accepting_writes_the_external_id_the_udf_and_a_tombstone_for_the_account_keyed_record():
    pair = _customer_pair()
    book = LinkBook()
    book.put(pair)
    decision = decisions.accept(book, pair, "tester")
    by_topic = {o.topic: o for o in decision.outbound}
    account = _encoded(by_topic[topic_names.SALESFORCE_COMMANDS])
    assert (account["operation"], account["record_id"]) == ("UPDATE", pair.salesforce_id)
    assert account["fields"] == {"ExternalID__c": "01-ACME0001"}
    customer = _encoded(by_topic[topic_names.SAGE_COMMANDS])["command"]["customer"]
    assert (customer["salesforce_account_id"], customer["ar_division_no"], customer["customer_no"]) == (
        pair.salesforce_id,
        "01",
        "ACME0001",
    )
    tombstone = by_topic[topic_names.CUSTOMERS]
    assert (tombstone.key, tombstone.value) == (pair.salesforce_id, None)
    assert decision.outbound[-1].topic == topic_names.LINK_STATE  # the state after its effects
    assert [p.state for p in decision.changed] == [LINKED]


def test_accept_reject_and_unlink_are_idempotent():
    book = LinkBook()
    pair = _customer_pair()
    book.put(pair)
    accepted = decisions.accept(book, pair, "tester")
    book.put(accepted.changed[0])
    assert decisions.accept(book, book.get(pair.key), "tester").outbound == []  # type: ignore[arg-type]
    unlinked = decisions.unlink(book, book.get(pair.key), "tester")  # type: ignore[arg-type]
    assert [p.state for p in unlinked.changed] == [UNLINKED]
    assert _encoded(unlinked.outbound[0])["fields"] == {"ExternalID__c": None}
    assert any("UDF_SALESFORCE_ID" in note for note in unlinked.notes)
    book.put(unlinked.changed[0])
    assert decisions.unlink(book, book.get(pair.key), "tester").outbound == []  # type: ignore[arg-type]
    rejected = decisions.reject(book, book.get(pair.key), "tester")  # type: ignore[arg-type]
    book.put(rejected.changed[0])
    assert decisions.reject(book, book.get(pair.key), "tester").outbound == []  # type: ignore[arg-type]
    assert book.get(pair.key).state == REJECTED  # type: ignore[union-attr]


def test_a_linked_pair_cannot_be_rejected_and_a_linked_record_not_accepted_elsewhere():
    book = LinkBook()
    linked = _customer_pair(LINKED)
    other = PairState(**{**_customer_pair().__dict__, "sage_id": "01-ACME0002"})
    book.put(linked)
    book.put(other)
    with pytest.raises(Refused, match="unlink it first"):
        decisions.reject(book, linked, "tester")
    with pytest.raises(Refused, match="is linked to 01-ACME0001"):
        decisions.accept(book, other, "tester")


def test_a_rejected_pair_is_never_suggested_again(company):
    parties, articles, _, _ = records(company)
    account, customer = _moved_namesakes()
    first = decisions.suggest(LinkBook(), [*parties, account, customer], articles, THRESHOLDS)
    book = _book_after(first)
    [pair] = [p for p in first.changed if p.salesforce_id == account.id]
    book.put(decisions.reject(book, pair, "tester").changed[0])
    again = decisions.suggest(book, [*parties, account, customer], articles, THRESHOLDS)
    assert [p for p in again.changed if p.salesforce_id == account.id and p.state == SUGGESTED] == []


def test_a_record_waits_for_review_only_while_a_suggestion_is_open():
    book = LinkBook()
    pair = _customer_pair()
    book.put(pair)
    assert book.waits_for_review(CUSTOMER, "salesforce", pair.salesforce_id)
    assert book.waits_for_review(CUSTOMER, "sage", pair.sage_id)
    book.put(pair.moved_to(REJECTED, "operator"))
    assert not book.waits_for_review(CUSTOMER, "salesforce", pair.salesforce_id)


def test_item_links_write_the_sage_item_code_on_the_product(first_run):
    decision, _ = first_run
    item = next(p for p in decision.changed if p.kind == "item" and p.state == LINKED)
    [update] = [o for o in decision.outbound if o.key == item.salesforce_id and o.schema]
    assert _encoded(update)["fields"] == {"Sage_Item_Code__c": item.sage_id}


def _iter_normal() -> Iterator[tuple[str, str]]:
    from linking import normalise

    yield normalise.company_name("ACME Corp."), normalise.company_name("Acme Corporation")
    yield normalise.company_name("Smith & Sons, Inc."), normalise.company_name("SMITH AND SONS INCORPORATED")
    yield normalise.phone("(303) 555-0110 x12"), normalise.phone("+1 303.555.0110")
    yield normalise.street("12 Main Street Suite 200"), normalise.street("12 MAIN ST", "Ste 200")
    yield normalise.item_code("HRDW-01000"), normalise.item_code(" hrdw 1000 ")


def test_normal_forms_make_spellings_of_one_value_equal():
    for a, b in _iter_normal():
        assert a == b
        assert a


def test_prices_come_through_as_decimals():
    found = article(
        {"envelope": {"source_system": "SAGE100"}, "item_code": "X-1", "standard_unit_price": "12.50"}
    )
    assert found is not None
    assert found.price == Decimal("12.50")


def test_a_review_threshold_above_the_automatic_one_is_refused_naming_both(monkeypatch):
    monkeypatch.setenv("SAGESF_LINK__AUTO_THRESHOLD", "0.4")
    with pytest.raises(ConfigError, match=r"REVIEW_THRESHOLD .* is above SAGESF_LINK__AUTO_THRESHOLD"):
        load_settings(LinkSettings)
