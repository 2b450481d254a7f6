"""The emulator's SOQL grammar: what it accepts, what it refuses, and that escaping is exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simple_salesforce.format import format_soql

from sandbox.salesforce.soql import (
    BoolOp,
    Comparison,
    FieldRef,
    FunctionCall,
    Literal,
    Not,
    Select,
    SoqlSyntaxError,
    SubQuery,
    parse,
)

WHERE_NAME = "SELECT Id FROM Account WHERE Name = "


def _where(text: str) -> Comparison:
    where = parse(text).where
    assert isinstance(where, Comparison)
    return where


def test_fields_parent_paths_and_child_subquery():
    select = parse(
        "SELECT Id, Account.Name, Opportunity.Account.ExternalID__c, "
        "(SELECT Id, Quantity FROM OpportunityLineItems WHERE Quantity > 1 ORDER BY Quantity DESC LIMIT 5) "
        "FROM Opportunity"
    )
    assert select.sobject == "Opportunity"
    assert select.items[:3] == [
        FieldRef(("Id",)),
        FieldRef(("Account", "Name")),
        FieldRef(("Opportunity", "Account", "ExternalID__c")),
    ]
    sub = select.items[3]
    assert isinstance(sub, SubQuery)
    assert sub.select.sobject == "OpportunityLineItems"
    assert sub.select.limit == 5
    assert sub.select.order[0].descending


def test_keywords_are_case_insensitive_and_order_is_an_object_name():
    select = parse("select id from Order order by OrderNumber desc nulls first limit 3 offset 2")
    assert select.sobject == "Order"
    assert select.order[0].field == FieldRef(("OrderNumber",))
    assert select.order[0].descending
    assert not select.order[0].nulls_last
    assert (select.limit, select.offset) == (3, 2)


def test_default_null_order_follows_direction():
    asc, desc = parse("SELECT Id FROM Account ORDER BY Name, Phone DESC").order
    assert not asc.nulls_last
    assert desc.nulls_last


@pytest.mark.parametrize("op", ["=", "!=", "<", ">", "<=", ">="])
def test_comparison_operators(op):
    assert _where("SELECT Id FROM Account WHERE AnnualRevenue " + op + " 10").op == op  # noqa: S608


def test_angle_brackets_mean_not_equal():
    assert _where("SELECT Id FROM Account WHERE Name <> 'x'").op == "!="


def test_literal_kinds():
    where = parse(
        "SELECT Id FROM Opportunity WHERE Amount >= -12.5 AND CloseDate < 2024-05-01 AND "
        "CreatedDate > 2024-05-01T10:00:00.123+02:00 AND IsWon = TRUE AND NextStep = null AND "
        "LastModifiedDate = LAST_N_DAYS:7 AND CloseDate = today"
    ).where
    assert isinstance(where, BoolOp)
    kinds = [
        c.value.kind for c in where.operands if isinstance(c, Comparison) and isinstance(c.value, Literal)
    ]
    assert kinds == ["number", "date", "datetime", "boolean", "null", "date_fn", "date_fn"]
    values = [
        c.value.value for c in where.operands if isinstance(c, Comparison) and isinstance(c.value, Literal)
    ]
    assert values[0] == -12.5
    assert values[5:] == ["LAST_N_DAYS:7", "TODAY"]


def test_in_not_in_and_semi_join():
    where = parse(
        "SELECT Id FROM Account WHERE Type IN ('Prospect', 'Other') AND Industry NOT IN ('Energy') "
        "AND Id IN (SELECT AccountId FROM Contact WHERE LastName = 'x')"
    ).where
    assert isinstance(where, BoolOp)
    first, second, third = where.operands
    assert isinstance(first, Comparison)
    assert first.op == "IN"
    assert isinstance(first.value, list)
    assert [v.value for v in first.value] == ["Prospect", "Other"]
    assert isinstance(second, Comparison)
    assert second.op == "NOT IN"
    assert isinstance(third, Comparison)
    assert isinstance(third.value, Select)
    assert third.value.sobject == "Contact"


def test_not_and_parentheses_nest():
    where = parse("SELECT Id FROM Account WHERE NOT (Name = 'a' OR (Name = 'b' AND Type = 'Other'))").where
    assert isinstance(where, Not)
    assert isinstance(where.operand, BoolOp)
    assert where.operand.op == "OR"
    inner = where.operand.operands[1]
    assert isinstance(inner, BoolOp)
    assert inner.op == "AND"


def test_mixing_and_with_or_needs_parentheses_as_in_salesforce():
    with pytest.raises(SoqlSyntaxError, match="unexpected token: 'OR'"):
        parse("SELECT Id FROM Account WHERE Name = 'a' AND Type = 'b' OR Type = 'c'")


def test_count_aggregates_and_fields_function():
    count = parse("SELECT COUNT() FROM Account").items[0]
    assert count == FunctionCall("COUNT", None, None)
    items = parse("SELECT COUNT(Id) n, MAX(CreatedDate) FROM Account").items
    assert items == [
        FunctionCall("COUNT", FieldRef(("Id",)), "n"),
        FunctionCall("MAX", FieldRef(("CreatedDate",)), None),
    ]
    fields = parse("SELECT FIELDS(ALL) FROM Account LIMIT 200").items[0]
    assert isinstance(fields, FunctionCall)
    assert fields.name == "FIELDS"


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r"'O\'Brien'", "O'Brien"),
        (r"'back\\slash'", "back\\slash"),
        (r"'say \"hi\"'", 'say "hi"'),
        (r"'tab\there'", "tab\there"),
        (r"'line\nbreak'", "line\nbreak"),
        (r"'\u00e9t\u00E9'", "été"),
        (r"'\' OR Name != \''", "' OR Name != '"),
    ],
)
def test_string_escapes_give_the_literal_value(literal, value):
    parsed = _where(WHERE_NAME + literal).value
    assert isinstance(parsed, Literal)
    assert (parsed.kind, parsed.value) == ("string", value)


def test_like_escapes_keep_percent_and_underscore_literal():
    value = _where(r"SELECT Id FROM Account WHERE Name LIKE '100\%\_a%_'").value
    assert isinstance(value, Literal)
    assert value.like_regex == "100%_a.*."


@pytest.mark.parametrize(
    "query",
    [
        "SELECT Id FROM Account WHERE Name = 'O'Brien'",  # unescaped quote ends the literal early
        r"SELECT Id FROM Account WHERE Name = 'a\\' OR Name != '",  # \\ closes the literal: dangling quote
        r"SELECT Id FROM Account WHERE Name = 'bad \x escape'",
        r"SELECT Id FROM Account WHERE Name = 'trailing\'",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        "SELECT Id FROM Account GROUP BY Name",
        "SELECT Id FROM Account WHERE Name = :name",
        "SELECT Id FROM Account USING SCOPE mine",
        "SELECT Id FROM Account FOR UPDATE",
        "SELECT Id, FROM Account",
        "SELECT FROM Account",
        "SELECT Id FROM Account; DELETE FROM Account",
        "SELECT Id FROM Account WHERE Name = 'a' --",
        "SELECT Id FROM Account WHERE (Name = 'a'",
        "DELETE FROM Account",
        "",
    ],
)
def test_unsupported_or_malformed_queries_are_syntax_errors(query):
    with pytest.raises(SoqlSyntaxError):
        parse(query)


def test_error_points_at_the_offending_token():
    with pytest.raises(SoqlSyntaxError) as caught:
        parse("SELECT Id FROM Account WHERE Name = 'O'Brien'")
    message = str(caught.value)
    assert "unexpected token: 'Brien'" in message
    assert "ERROR at Row:1:Column:40" in message


@given(st.text(max_size=40))
def test_any_value_quoted_by_simple_salesforce_parses_back_to_itself(value):
    query = format_soql("SELECT Id FROM Account WHERE Name = {}", value)
    where = _where(query)
    assert isinstance(where.value, Literal)
    assert where.value.value == value


@given(st.lists(st.text(max_size=10), min_size=1, max_size=4))
def test_quoted_lists_parse_back_to_their_values(values):
    where = _where(format_soql("SELECT Id FROM Account WHERE Name IN {}", values))
    assert isinstance(where.value, list)
    assert [v.value for v in where.value] == values


@given(st.text(max_size=30))
def test_a_quoted_value_never_adds_conditions(value):
    where = parse(format_soql("SELECT Id FROM Account WHERE Name = {} AND Type = 'Other'", value)).where
    assert isinstance(where, BoolOp)
    assert len(where.operands) == 2
