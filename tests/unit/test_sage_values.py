"""Sage 100 value conversions: exact decimals, decimal-hour times, change stamps, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sage100.tables import TABLES
from connectors.sage100.values import (
    change_stamp,
    decimal_param,
    format_hours,
    hours_to_time,
    local_to_utc,
    micro_hours,
    stamp_local,
    to_date,
    to_decimal,
    value_problem,
)

NY = ZoneInfo("America/New_York")


def test_decimal_hours_read_as_sage_means_them():
    # 14.5012 h = 14 h + 0.5012 * 60 min = 14:30:04.32
    assert hours_to_time("14.5012") == time(14, 30, 4, 320000)
    assert hours_to_time("09.5") == hours_to_time("9.5") == hours_to_time(" 9.5000") == time(9, 30)
    assert micro_hours("") == 0
    with pytest.raises(ValueError, match="outside a day"):
        micro_hours("24.0001")
    with pytest.raises(ValueError, match="not a decimal-hour"):
        micro_hours("ab.cd")


def test_format_hours_pads_and_truncates():
    assert format_hours(time(9, 30, 4)) == "09.5011"  # 9.50111.. truncated, never rounded up
    assert format_hours(time(9, 30, 4), pad="") == "9.5011"
    assert format_hours(time(9, 30, 4), pad=" ") == " 9.5011"
    assert format_hours(time(23, 59, 59, 999999)) == "23.9999"


@given(st.times())
def test_formatted_time_reads_back_within_sage_resolution(t):
    back = hours_to_time(format_hours(t))
    delta = (datetime.combine(date.today(), t) - datetime.combine(date.today(), back)).total_seconds()
    assert 0 <= delta < 0.36  # 1e-4 hours, truncated


@given(st.dates(min_value=date(2000, 1, 1)), st.times(), st.dates(min_value=date(2000, 1, 1)), st.times())
def test_change_stamps_order_like_the_timestamps(d1, t1, d2, t2):
    s1, s2 = change_stamp(d1, format_hours(t1)), change_stamp(d2, format_hours(t2))
    a, b = (d1, format_hours(t1)), (d2, format_hours(t2))
    assert (s1 < s2) == (a < b)
    assert stamp_local(s1).date() == d1


def test_money_never_goes_through_float():
    assert to_decimal("12.30", 2) == Decimal("12.30")
    assert str(to_decimal("12.3", 2)) == "12.30"  # the SQLite driver drops trailing zeros
    assert to_decimal(0.1, 2) == Decimal("0.10")  # a driver that reports doubles: repr is exact
    assert to_decimal("12345678901.005", 2) == Decimal("12345678901.01")  # half-up
    assert to_decimal("  ") is None
    with pytest.raises(TypeError):
        to_decimal(True)


def test_values_checked_against_sage_columns():
    credit = TABLES["AR_Customer"].column("CreditLimit")  # N13.2
    assert value_problem(credit, Decimal("99999999999.99")) is None
    assert "at most 11 digits" in (value_problem(credit, Decimal("100000000000")) or "")
    assert "more than 2 decimals" in (value_problem(credit, Decimal("1.005")) or "")
    assert decimal_param("7.5", credit) == Decimal("7.50")
    item = TABLES["CI_Item"].column("ItemCode")  # S30
    assert "31 characters" in (value_problem(item, "X" * 31) or "")
    assert "code page" in (value_problem(item, "WIDGET-✓") or "")


def test_dates_from_every_form_the_drivers_give():
    assert to_date(date(2024, 3, 1)) == to_date("2024-03-01") == to_date("20240301") == date(2024, 3, 1)
    assert to_date(datetime(2024, 3, 1, 5)) == date(2024, 3, 1)
    assert to_date("") is None
    assert to_date(None) is None


def test_local_time_to_utc_across_daylight_saving():
    assert local_to_utc(datetime(2024, 7, 1, 12), NY) == datetime(2024, 7, 1, 16, tzinfo=UTC)
    assert local_to_utc(datetime(2024, 1, 1, 12), NY) == datetime(2024, 1, 1, 17, tzinfo=UTC)
    # the repeated hour when DST ends: the first occurrence (EDT)
    assert local_to_utc(datetime(2024, 11, 3, 1, 30), NY) == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)


def test_poll_position_round_trip_and_size_cap():
    from connectors.sage100.polling import PollState

    state = PollState(
        stamp=17736177501100, key=("01", "ABC"), seen={("01", "ABC"): ("00ff00ff00ff00ff", 17736177501100)}
    )
    back = PollState.from_position(state.to_position(max_seen=10))
    assert (back.stamp, back.key, back.seen) == (state.stamp, state.key, state.seen)
    big = PollState(stamp=5, seen={(str(i),): ("0" * 16, 5) for i in range(11)})
    position = big.to_position(max_seen=10)
    assert position["seen"] == {}
    assert position["seen_dropped"] == 11
    assert PollState.from_position({"v": 99}).stamp == 0  # an unknown format starts over
