"""Which Salesforce commands the stale guard checks, and when a record is newer (stale_guard.py).

The integration test (test_salesforce_sink.py) shows it end to end on the emulator; these pin the
edges: the age threshold, the replay header, inserts and unguarded objects, equal times, the
tolerance, and the integration user's own changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from connectors.salesforce.budget import ApiBudget
from connectors.salesforce.client import SalesforceConnection
from connectors.salesforce.commands import Operation, SalesforceCommand, Write
from connectors.salesforce.stale_guard import StaleGuard

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
US, SELLER = "005000000000001AAA", "005000000000002AAA"
ACCOUNT = "001000000000001AAA"


def guard(versioned: bool = True) -> StaleGuard:
    connection = cast(SalesforceConnection, SimpleNamespace(user_id=US))
    g = StaleGuard(
        connection,
        ApiBudget(0.5, 300),
        objects=["Account"],
        version_field="Sage_Synced_At__c",
        check_after=timedelta(minutes=5),
        tolerance=timedelta(seconds=2),
        clock=lambda: NOW,
    )
    if versioned:
        g.versioned.add("account")
    return g


def update(when: datetime | None, sobject: str = "Account", operation: Operation = Operation.UPDATE) -> Any:
    return SalesforceCommand("c1", None, operation, sobject, ACCOUNT, None, None, {"Phone": "1"}, when)


@pytest.mark.parametrize(
    ("command", "replayed", "checked"),
    [
        (update(NOW - timedelta(minutes=6)), False, True),  # older than check_after
        (update(NOW - timedelta(minutes=4)), False, False),  # live traffic: not compared
        (update(NOW - timedelta(seconds=1)), True, True),  # replayed from a dead letter
        (update(None), True, False),  # no source time: nothing to compare
        (update(NOW - timedelta(hours=1), "Product2"), False, False),  # not a guarded object
        (update(NOW - timedelta(hours=1), operation=Operation.INSERT), True, False),  # creates
    ],
)
def test_only_old_or_replayed_updates_of_guarded_objects_are_checked(
    command: SalesforceCommand, replayed: bool, checked: bool
) -> None:
    assert guard()._checked(command, replayed, NOW) is checked


def record(modified: datetime, by: str, version: str | None = None) -> dict[str, Any]:
    stamp = modified.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    return {"Id": ACCOUNT, "LastModifiedDate": stamp, "LastModifiedById": by, "Sage_Synced_At__c": version}


EVENT = NOW - timedelta(minutes=10)


@pytest.mark.parametrize(
    ("found", "newer_field"),
    [
        (record(EVENT + timedelta(seconds=3), SELLER), "Account.LastModifiedDate"),
        (record(EVENT + timedelta(seconds=2), SELLER), None),  # within the tolerance
        (record(EVENT - timedelta(minutes=1), SELLER), None),
        (record(NOW, US[:15], "2024-05-01T11:50:00.000Z"), None),  # equal versions: a redelivery
        (record(NOW, US, "2024-05-01T11:50:00.001Z"), "Account.Sage_Synced_At__c"),
        (record(NOW, US, None), None),  # our own write, no version: when we wrote, not when it happened
    ],
)
def test_a_record_is_newer_by_its_version_or_by_another_users_later_change(
    found: dict[str, Any], newer_field: str | None
) -> None:
    stale = guard()._newer(update(EVENT), found)
    assert (stale.compared_with if stale else None) == newer_field
    if stale is not None:
        assert stale.source_event_time == EVENT
        assert stale.target_time > EVENT


def test_without_the_version_field_only_other_users_changes_count() -> None:
    assert guard(versioned=False)._newer(update(EVENT), record(NOW, US, "2024-05-01T11:59:00.000Z")) is None


def test_writes_of_versioned_objects_carry_their_latest_source_time() -> None:
    account = Write(Operation.UPDATE, "Account", "Id", ACCOUNT, {"Phone": "1"}, [0], EVENT)
    product = Write(Operation.UPDATE, "Product2", "Id", "01t000000000001AAA", {"Name": "x"}, [1], EVENT)
    untimed = Write(Operation.UPDATE, "Account", "Id", ACCOUNT, {"Phone": "2"}, [2], None)
    guard().stamp([account, product, untimed])
    assert account.fields == {"Phone": "1", "Sage_Synced_At__c": "2024-05-01T11:50:00.000Z"}
    assert "Sage_Synced_At__c" not in product.fields
    assert "Sage_Synced_At__c" not in untimed.fields
