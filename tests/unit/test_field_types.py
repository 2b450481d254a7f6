"""Typed custom fields: each type converts both ways from the forms the two sources give, and a
value that is not of its type is a Permanent error naming the field and the value."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.field_types import to_sage, to_salesforce
from processors.mapping_model import CustomField, ValueMap
from processors.metadata import SageColumn
from sagesf.errors import Permanent

TEXT30 = SageColumn("UDF_TEXT", "text", length=30)
N12_2 = SageColumn("UDF_AMOUNT", "decimal", precision=12, scale=2)
DATE = SageColumn("UDF_DAY", "date")


def cf(type_: str, **more: Any) -> CustomField:
    return CustomField.model_validate({"salesforce": "X__c", "sage": "UDF_X", "type": type_, **more})


TIERS = ValueMap(values={"Gold": "G", "Silver": "S"}, unknown="error")


@pytest.mark.parametrize(
    ("type_", "column", "value", "sage"),
    [
        # Salesforce source text (record_mapper._text) and plain Python values
        ("number", N12_2, "12.5", "12.50"),
        ("number", N12_2, 12, "12.00"),
        ("number", N12_2, "1e-05", "0.00"),
        ("number", N12_2, Decimal("0.125"), "0.13"),
        ("number", TEXT30, "12.50", "12.5"),
        ("number", None, "100", "100"),
        ("checkbox", TEXT30, "true", "Y"),
        ("checkbox", TEXT30, False, "N"),
        ("date", DATE, "2026-03-01", "2026-03-01"),
        ("date", TEXT30, date(2026, 3, 1), "2026-03-01"),
        ("datetime", DATE, "2026-03-01T23:30:00.000-0200", "2026-03-02"),
        ("datetime", TEXT30, "2026-03-01T10:00:00.000+0000", "2026-03-01T10:00:00Z"),
        ("datetime", None, datetime(2026, 3, 1, 10, tzinfo=UTC), "2026-03-01T10:00:00Z"),
        ("text", TEXT30, "hello", "hello"),
        ("text", TEXT30, True, "true"),
    ],
)
def test_each_type_goes_to_sage_in_its_canonical_text(type_: str, column: Any, value: Any, sage: str) -> None:
    assert to_sage(cf(type_), value, column) == sage


@pytest.mark.parametrize(
    ("type_", "value", "salesforce"),
    [
        # the Sage source's text of a UDF column (streams._text)
        ("number", "12.50", 12.5),
        ("number", Decimal("3"), 3.0),
        ("checkbox", "Y", True),
        ("checkbox", "N", False),
        ("date", "2026-03-01", "2026-03-01"),
        ("date", "2026-03-01 00:00:00", "2026-03-01"),
        ("datetime", "2026-03-01", "2026-03-01T00:00:00Z"),
        ("datetime", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z"),
        ("text", "hello", "hello"),
    ],
)
def test_each_type_comes_to_salesforce_as_its_field_value(type_: str, value: Any, salesforce: Any) -> None:
    assert to_salesforce(cf(type_), value) == salesforce


def test_a_picklist_goes_through_its_map_and_comes_back_through_the_inverse() -> None:
    field = cf("picklist", map="tiers")
    assert to_sage(field, "Gold", TEXT30, values=TIERS) == "G"
    assert to_salesforce(field, "S", values=TIERS) == "Silver"
    with pytest.raises(Permanent, match="'Bronze' is not in the picklist map 'tiers'"):
        to_sage(field, "Bronze", TEXT30, values=TIERS)


def test_an_empty_value_is_none_or_the_default_toward_sage() -> None:
    assert to_sage(cf("number"), "", N12_2) is None
    assert to_sage(cf("checkbox", default="N"), None, TEXT30) == "N"
    assert to_salesforce(cf("number"), "  ") is None


@pytest.mark.parametrize(
    ("type_", "column", "value", "reason"),
    [
        ("number", N12_2, "twelve", "'twelve' is not a number"),
        ("number", N12_2, "1e12", "does not fit UDF_AMOUNT (N12.2)"),
        ("number", N12_2, True, "is not a number"),
        ("checkbox", TEXT30, "maybe", "'maybe' is not a checkbox value"),
        ("date", DATE, "01/03/2026", "is not a date"),
        ("datetime", TEXT30, "soon", "is not a date-time"),
        ("text", SageColumn("UDF_T", "text", length=3), "long", "'long' is 4 characters; UDF_T holds 3"),
    ],
)
def test_a_value_not_of_its_type_is_permanent_naming_field_and_value(
    type_: str, column: Any, value: Any, reason: str
) -> None:
    with pytest.raises(Permanent, match=re.escape(reason)) as info:
        to_sage(cf(type_), value, column)
    assert "X__c" in str(info.value)


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False))
def test_a_number_round_trips_through_a_sage_decimal_column(number: Decimal) -> None:
    text = to_sage(cf("number"), str(number), N12_2)
    assert text is not None
    assert Decimal(text) == number
    assert to_salesforce(cf("number"), text) == float(number)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(UTC)))
def test_a_datetime_round_trips_through_a_text_column(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    text = to_sage(cf("datetime"), moment.isoformat(), TEXT30)
    assert to_salesforce(cf("datetime"), text) == moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@given(st.booleans())
def test_a_checkbox_round_trips(value: bool) -> None:
    assert to_salesforce(cf("checkbox"), to_sage(cf("checkbox"), value, TEXT30)) is value


def test_a_picklist_or_lookup_names_its_map() -> None:
    with pytest.raises(ValueError, match="names its value map"):
        cf("picklist")
    with pytest.raises(ValueError, match="map applies to type picklist"):
        cf("text", map="tiers")
