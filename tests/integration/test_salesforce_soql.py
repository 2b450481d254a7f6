"""SOQL against the emulator through simple-salesforce: shapes, operators, literals, escaping, errors.

One small data set per module, tagged with a unique AccountNumber so the shared emulator's other
records never leak into the answers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql

from sandbox.salesforce.harness import RunningEmulator


@dataclass
class Seeded:
    tag: str
    sf: Any
    ids: dict[str, str]

    def names(self, where: str, order: str = "Name") -> list[str]:
        """Names of this module's accounts matching `where` (a SOQL condition)."""
        query = "SELECT Name FROM Account WHERE AccountNumber = {} AND (" + where + ") ORDER BY " + order  # noqa: S608
        return [r["Name"] for r in self.sf.query_all(format_soql(query, self.tag))["records"]]

    def query(self, text: str) -> dict[str, Any]:
        result: dict[str, Any] = self.sf.query(text)
        return result


ACCOUNTS: dict[str, dict[str, Any]] = {
    "acme": {
        "Name": "Acme Corp",
        "Type": "Customer - Direct",
        "Industry": "Manufacturing",
        "AnnualRevenue": 5_000_000,
        "BillingCity": "Irvine",
    },
    "obrien": {"Name": "O'Brien & Sons", "Type": "Prospect", "AnnualRevenue": 250_000},
    "backslash": {"Name": "back\\slash Ltd", "Type": "Other", "BillingCity": "Tustin"},
    "natural": {
        "Name": "100% Natural_Foods",
        "Industry": "Food & Beverage",
        "AnnualRevenue": 75_000.5,  # scale 0: rounds half up to 75001
        "BillingCity": "irvine",
    },
    "injection": {"Name": "' OR Name != '"},
}


@pytest.fixture(scope="module")
def seeded(salesforce_emulator: RunningEmulator) -> Seeded:
    sf: Any = salesforce_emulator.connect()
    tag = uuid.uuid4().hex[:12]
    ids: dict[str, str] = {}
    for key, values in ACCOUNTS.items():
        ids[key] = sf.Account.create({**values, "AccountNumber": tag, "ExternalID__c": f"{tag}-{key}"})["id"]
    ids["deleted"] = sf.Account.create({"Name": "Zeta Deleted", "AccountNumber": tag})["id"]
    sf.Account.delete(ids["deleted"])
    for key, account, last in [
        ("smith", "acme", "Smith"),
        ("jones", "acme", "Jones"),
        ("obc", "obrien", "O'Brien"),
    ]:
        ids[key] = sf.Contact.create({"LastName": last, "AccountId": ids[account]})["id"]
    product = sf.Product2.create({"Name": f"Gadget {tag}", "ProductCode": f"G-{tag}", "IsActive": True})["id"]
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entry = sf.PricebookEntry.create({"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 20})["id"]
    soon = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    for key, account, name, stage, close, amount in [
        ("big", "acme", "Big Deal", "Closed Won", "2024-03-15", 1000),
        ("small", "acme", "Small Deal", "Prospecting", soon, None),
        ("maybe", "obrien", "Maybe", "Qualification", "2023-12-31", 300),
    ]:
        ids[key] = sf.Opportunity.create(
            {
                "Name": name,
                "AccountId": ids[account],
                "StageName": stage,
                "CloseDate": close,
                "Amount": amount,
            }
        )["id"]
    for quantity in (3, 1):
        sf.OpportunityLineItem.create(
            {"OpportunityId": ids["big"], "PricebookEntryId": entry, "Quantity": quantity, "UnitPrice": 20}
        )
    return Seeded(tag, sf, ids)


def _fails_with(seeded: Seeded, query: str, code: str) -> str:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        seeded.sf.query(query)
    content: Any = caught.value.content
    error = content[0]
    assert error["errorCode"] == code, error
    return str(error["message"])


# ---- shapes ---------------------------------------------------------------------------------------


def test_parent_paths_and_child_subquery_shapes(seeded):
    result = seeded.query(
        format_soql(
            "SELECT Name, Account.Name, Account.Owner.Name, "
            "(SELECT Quantity, TotalPrice, PricebookEntry.Product2.ProductCode FROM OpportunityLineItems "
            "ORDER BY Quantity) FROM Opportunity WHERE Account.AccountNumber = {} ORDER BY Name",
            seeded.tag,
        )
    )
    assert result["totalSize"] == 3
    big, maybe, small = result["records"]
    assert big["attributes"]["type"] == "Opportunity"
    assert big["Account"]["attributes"]["type"] == "Account"
    assert big["Account"]["Name"] == "Acme Corp"
    assert big["Account"]["Owner"]["Name"] == "Test Integration"
    lines = big["OpportunityLineItems"]
    assert (lines["totalSize"], lines["done"]) == (2, True)
    assert [line["Quantity"] for line in lines["records"]] == [1.0, 3.0]
    assert lines["records"][1]["TotalPrice"] == 60.0
    assert lines["records"][0]["PricebookEntry"]["Product2"]["ProductCode"] == f"G-{seeded.tag}"
    assert maybe["Account"]["Name"] == "O'Brien & Sons"
    assert small["OpportunityLineItems"] is None  # no children: null, as Salesforce answers


def test_null_parent_is_null(seeded):
    orphan = seeded.sf.Contact.create({"LastName": f"Orphan {seeded.tag}"})["id"]
    record = seeded.query(format_soql("SELECT Account.Name FROM Contact WHERE Id = {}", orphan))["records"][0]
    assert record["Account"] is None


def test_names_are_case_insensitive_and_answered_in_declared_case(seeded):
    record = seeded.query(
        format_soql("select name, account.name from contact where id = {}", seeded.ids["smith"])
    )["records"][0]
    assert record["Name"] == "Smith"
    assert record["Account"]["Name"] == "Acme Corp"


def test_fifteen_character_ids_match(seeded):
    short = seeded.ids["acme"][:15]
    assert (
        seeded.query(format_soql("SELECT Name FROM Account WHERE Id = {}", short))["records"][0]["Name"]
        == "Acme Corp"
    )


# ---- WHERE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'acme corp'", ["Acme Corp"]),  # string equality ignores case
        (
            "Type != 'Prospect'",
            ["' OR Name != '", "100% Natural_Foods", "Acme Corp", "back\\slash Ltd"],
        ),  # != keeps nulls
        ("AnnualRevenue > 250000", ["Acme Corp"]),
        ("AnnualRevenue >= 250000", ["Acme Corp", "O'Brien & Sons"]),
        ("AnnualRevenue < 250000", ["100% Natural_Foods"]),  # nulls never compare
        ("AnnualRevenue = 75001", ["100% Natural_Foods"]),
        ("AnnualRevenue = null", ["' OR Name != '", "back\\slash Ltd"]),
        ("BillingCity != null", ["100% Natural_Foods", "Acme Corp", "back\\slash Ltd"]),
        ("Type IN ('Prospect', 'other')", ["back\\slash Ltd", "O'Brien & Sons"]),  # sorted ignoring case
        ("Type NOT IN ('Prospect', 'Other')", ["' OR Name != '", "100% Natural_Foods", "Acme Corp"]),
        ("Name LIKE 'a%'", ["Acme Corp"]),
        ("Name LIKE '%SONS'", ["O'Brien & Sons"]),
        ("Name LIKE '_cme%'", ["Acme Corp"]),
        ("BillingCity = 'Irvine' AND Industry = 'Manufacturing'", ["Acme Corp"]),
        ("BillingCity = 'Tustin' OR Type = 'Prospect'", ["back\\slash Ltd", "O'Brien & Sons"]),
        ("NOT Name LIKE '%o%'", ["back\\slash Ltd"]),  # LIKE ignores case: ' OR ...' has an O
        (
            "(BillingCity = 'Irvine' OR Type = 'Other') AND NOT (AnnualRevenue > 1000000)",
            ["100% Natural_Foods", "back\\slash Ltd"],
        ),
        ("Owner.Name = 'Test Integration' AND Name = 'Acme Corp'", ["Acme Corp"]),
    ],
)
def test_where_operators(seeded, where, expected):
    assert seeded.names(where) == expected


def test_semi_join_and_anti_join(seeded):
    assert seeded.names("Id IN (SELECT AccountId FROM Contact WHERE LastName = 'Smith')") == ["Acme Corp"]
    assert "Acme Corp" not in seeded.names("Id NOT IN (SELECT AccountId FROM Contact)")


def test_date_and_datetime_literals(seeded):
    base = format_soql("SELECT Name FROM Opportunity WHERE Account.AccountNumber = {}", seeded.tag)

    def names(condition: str) -> list[str]:
        return sorted(r["Name"] for r in seeded.query(base + " AND " + condition)["records"])

    assert names("CloseDate < 2024-01-01") == ["Maybe"]
    assert names("CloseDate = 2024-03-15") == ["Big Deal"]
    assert names("CloseDate >= 2024-01-01 AND CloseDate <= 2024-12-31") == ["Big Deal"]
    assert names("CloseDate = NEXT_N_DAYS:30") == ["Small Deal"]
    assert names("CloseDate > TODAY") == ["Small Deal"]
    assert names("CreatedDate = TODAY") == ["Big Deal", "Maybe", "Small Deal"]
    assert names("CreatedDate = LAST_N_DAYS:1") == ["Big Deal", "Maybe", "Small Deal"]
    assert names("CreatedDate < YESTERDAY") == []
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    assert len(names(format_soql("CreatedDate > {}", yesterday))) == 3  # isoformat with +00:00
    assert names("CreatedDate > 2099-01-01T00:00:00Z") == []
    assert names("LastModifiedDate >= 2020-01-01T00:00:00.000+0000") == ["Big Deal", "Maybe", "Small Deal"]


# ---- ORDER BY, LIMIT, OFFSET, aggregates ----------------------------------------------------------------


def test_order_by_with_nulls_limit_and_offset(seeded):
    assert seeded.names("Name != null", order="AnnualRevenue DESC, Name") == [
        "Acme Corp",
        "O'Brien & Sons",
        "100% Natural_Foods",
        "' OR Name != '",
        "back\\slash Ltd",
    ]
    assert seeded.names("Name != null", order="AnnualRevenue ASC NULLS LAST, Name DESC") == [
        "100% Natural_Foods",
        "O'Brien & Sons",
        "Acme Corp",
        "back\\slash Ltd",
        "' OR Name != '",
    ]
    assert seeded.names("Name != null", order="Name LIMIT 2 OFFSET 1") == ["100% Natural_Foods", "Acme Corp"]


def test_count_and_aggregates(seeded):
    where = format_soql("FROM Account WHERE AccountNumber = {}", seeded.tag)
    counted = seeded.query("SELECT COUNT() " + where)
    assert (counted["totalSize"], counted["records"]) == (5, [])
    aggregate = seeded.query("SELECT COUNT(Id) n, SUM(AnnualRevenue), MAX(Name), MIN(CreatedDate) " + where)
    row = aggregate["records"][0]
    assert row["attributes"] == {"type": "AggregateResult"}
    assert row["n"] == 5
    assert row["expr0"] == 5_325_001
    assert row["expr1"] == "O'Brien & Sons"
    assert row["expr2"].endswith("+0000")


def test_fields_function(seeded):
    record = seeded.query(
        format_soql("SELECT FIELDS(ALL) FROM Account WHERE Id = {} LIMIT 1", seeded.ids["acme"])
    )["records"][0]
    assert record["ExternalID__c"] == f"{seeded.tag}-acme"
    assert record["IsDeleted"] is False
    custom = seeded.query(
        format_soql("SELECT FIELDS(CUSTOM) FROM Account WHERE Id = {} LIMIT 1", seeded.ids["acme"])
    )["records"][0]
    assert "Name" not in custom
    assert "Sage_Sync_Status__c" in custom


def test_query_all_includes_deleted_rows(seeded):
    query = format_soql(
        "SELECT Name, IsDeleted FROM Account WHERE AccountNumber = {} AND Name LIKE 'Zeta%'", seeded.tag
    )
    assert seeded.sf.query(query)["totalSize"] == 0
    deleted = seeded.sf.query_all(query, include_deleted=True)["records"]
    assert [(r["Name"], r["IsDeleted"]) for r in deleted] == [("Zeta Deleted", True)]


# ---- escaping and injection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["O'Brien & Sons", "back\\slash Ltd", "' OR Name != '", "100% Natural_Foods"]
)
def test_quoted_values_match_exactly_one_record(seeded, name):
    assert seeded.names(format_soql("Name = {}", name)) == [name]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (r"'O\'Brien & Sons'", ["O'Brien & Sons"]),
        (r"'back\\slash Ltd'", ["back\\slash Ltd"]),
        (r"'\' OR Name != \''", ["' OR Name != '"]),
        (r"'x\' OR Name != \'y'", []),  # an injection attempt, escaped: a value nobody has
        (r"'\' OR Name != \'' OR Name = 'Acme Corp'", ["' OR Name != '", "Acme Corp"]),
    ],
)
def test_hand_escaped_literals_match_literally(seeded, literal, expected):
    assert seeded.names("Name = " + literal) == expected


@pytest.mark.parametrize(
    "condition",
    [
        "Name = 'O'Brien & Sons'",  # unescaped quote
        r"Name = 'back\\' OR Name != '",  # \\ ends the literal, the rest dangles
        r"Name = 'back\slash Ltd'",  # \s is no escape
        "Name = '' OR Name != '",
    ],
)
def test_unescaped_injection_attempts_are_malformed(seeded, condition):
    query = format_soql("SELECT Name FROM Account WHERE AccountNumber = {} AND ", seeded.tag) + condition
    _fails_with(seeded, query, "MALFORMED_QUERY")


def test_like_escapes(seeded):
    assert seeded.names(r"Name LIKE '100\% Natural\_%'") == ["100% Natural_Foods"]
    assert seeded.names(r"Name LIKE '%\_%'") == ["100% Natural_Foods"]
    assert seeded.names(format_soql("Name LIKE '{:like}%'", "100% N")) == ["100% Natural_Foods"]
    assert seeded.names(r"Name LIKE '%\%%'") == ["100% Natural_Foods"]


# ---- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT Id FROM NoSuchObject__c", "INVALID_TYPE"),
        ("SELECT Id FROM Credit_Check_Request__e", "INVALID_TYPE"),
        ("SELECT Id, Bogus__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id, Nobody.Name FROM Account", "INVALID_FIELD"),
        ("SELECT Id, (SELECT Id FROM Nothings) FROM Account", "INVALID_TYPE"),
        ("SELECT Id FROM Account WHERE AnnualRevenue = '5'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = '2024-03-15'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Opportunity WHERE CreatedDate > 2024-03-15", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Account WHERE IsDeleted = 'false'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Account WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Account WHERE Description = 'x'", "INVALID_FIELD"),
        ("SELECT Name FROM Account GROUP BY Name", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'a' AND Type = 'b' OR Type = 'c'", "MALFORMED_QUERY"),
        ("SELECT Id, Name, name FROM Account", "MALFORMED_QUERY"),
        ("SELECT Name, COUNT(Id) FROM Account", "MALFORMED_QUERY"),
        ("SELECT FIELDS(ALL) FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT 1 OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE"),
        ("SELECT Id FROM Account WHERE Name = :name", "MALFORMED_QUERY"),
    ],
)
def test_invalid_queries_get_salesforce_error_codes(seeded, query, code):
    _fails_with(seeded, query, code)


def test_unknown_field_message_names_field_and_object(seeded):
    message = _fails_with(seeded, "SELECT Bogus__c FROM Account", "INVALID_FIELD")
    assert "No such column 'Bogus__c' on entity 'Account'" in message
