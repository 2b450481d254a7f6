"""The Sage sink's rule for commands older than the customer row (connectors/sage100/stale.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from connectors.sage100.reads import CustomerRow
from connectors.sage100.stale import NewerRowCheck

CHICAGO = ZoneInfo("America/Chicago")
CHECK = NewerRowCheck(CHICAGO, "SGSF", timedelta(seconds=2))


def row(day: date, hours: str, user: str | None) -> CustomerRow:
    return CustomerRow("01", "ABF", {}, None, updated_on=day, updated_hours=hours, updated_by=user)


# 2024-05-01 14.5000 in Chicago (CDT, UTC-5) is 19:30:00 UTC
EDITED = row(date(2024, 5, 1), "14.5000", "0001")
AT_EDIT = datetime(2024, 5, 1, 19, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event", "newer"),
    [
        (AT_EDIT - timedelta(minutes=5), True),
        (AT_EDIT - timedelta(seconds=2, milliseconds=1), True),
        (AT_EDIT - timedelta(seconds=2), False),  # within the tolerance: the command wins
        (AT_EDIT, False),  # equal stamps are not newer
        (AT_EDIT + timedelta(seconds=1), False),
    ],
)
def test_a_sage_users_change_is_newer_only_when_later_than_the_command_by_more_than_the_tolerance(
    event: datetime, newer: bool
) -> None:
    stale = CHECK.newer(EDITED, event, "UPSERT_CUSTOMER")
    assert (stale is not None) is newer
    if stale is not None:
        assert stale.target_time == AT_EDIT
        assert stale.source_event_time == event
        assert "01-ABF" in stale.reason
        assert "user 0001" in stale.reason


def test_the_integrations_own_write_and_commands_without_a_time_are_not_compared() -> None:
    old = AT_EDIT - timedelta(hours=1)
    assert CHECK.newer(row(date(2024, 5, 1), "14.5000", "sgsf "), old, "UPSERT_CUSTOMER") is None
    assert CHECK.newer(EDITED, None, "UPSERT_CUSTOMER") is None
    assert CHECK.newer(CustomerRow("01", "ABF", {}, None), old, "UPSERT_CUSTOMER") is None


def test_a_row_without_a_user_key_is_compared_and_a_bad_time_reads_as_the_start_of_its_day() -> None:
    stale = CHECK.newer(row(date(2024, 5, 1), "not hours", None), datetime(2024, 5, 1, tzinfo=UTC), "K")
    assert stale is not None
    assert stale.target_time == datetime(2024, 5, 1, 5, 0, tzinfo=UTC)  # midnight in Chicago
    assert "a Sage user" in stale.reason
