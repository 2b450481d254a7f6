"""UserRecordAccess on the emulator: who may read a record under the object's org-wide default."""

# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql

from sandbox.salesforce.harness import RunningEmulator

ACCESS = (
    "SELECT RecordId, HasReadAccess, HasEditAccess FROM UserRecordAccess WHERE UserId = {} AND RecordId IN {}"
)
# the refused shapes below are literal test queries, not values formatted into SOQL
USER, RECORD = "UserId = '005000000000001AAA'", "RecordId = '001000000000001AAA'"
MANY = ", ".join(f"'001{n:012d}'" for n in range(201))  # 15-character IDs


@pytest.fixture
def private_accounts(salesforce_emulator: RunningEmulator) -> Iterator[None]:
    salesforce_emulator.admin("POST", "/admin/sharing", {"object": "Account", "sharingModel": "Private"})
    try:
        yield
    finally:
        salesforce_emulator.admin(
            "POST", "/admin/sharing", {"object": "Account", "sharingModel": "ReadWrite"}
        )


def access(sf: Any, user_id: str, record_ids: list[str]) -> dict[str, tuple[bool, bool]]:
    rows = sf.query(format_soql(ACCESS, user_id, record_ids))["records"]
    return {r["RecordId"]: (r["HasReadAccess"], r["HasEditAccess"]) for r in rows}


def test_a_private_account_is_readable_by_its_owner_and_view_all_data_only(
    salesforce_emulator: RunningEmulator, private_accounts: None
) -> None:
    sf: Any = salesforce_emulator.connect()
    seller: Any = salesforce_emulator.connect_other()
    integration = salesforce_emulator.user_ids[salesforce_emulator.username]
    other = salesforce_emulator.user_ids[salesforce_emulator.other_username]
    theirs = seller.Account.create({"Name": "Seller's own"})["id"]
    ours = sf.Account.create({"Name": "Integration's own"})["id"]
    assert access(sf, other, [theirs, ours]) == {theirs: (True, True), ours: (False, False)}
    assert access(sf, integration, [theirs, ours]) == {theirs: (True, True), ours: (True, True)}


def test_a_public_account_is_readable_by_everyone(salesforce_emulator: RunningEmulator) -> None:
    sf: Any = salesforce_emulator.connect()
    other = salesforce_emulator.user_ids[salesforce_emulator.other_username]
    ours = sf.Account.create({"Name": "Integration's public"})["id"]
    assert access(sf, other, [ours]) == {ours: (True, True)}


@pytest.mark.parametrize(
    "soql",
    [
        f"SELECT RecordId, HasReadAccess FROM UserRecordAccess WHERE {RECORD}",
        f"SELECT RecordId, HasReadAccess FROM UserRecordAccess WHERE {USER}",
        f"SELECT RecordId FROM UserRecordAccess WHERE UserId IN ('005000000000001AAA') AND {RECORD}",
        f"SELECT RecordId FROM UserRecordAccess WHERE {USER} OR {RECORD}",
        f"SELECT Name FROM UserRecordAccess WHERE {USER} AND {RECORD}",
        f"SELECT RecordId FROM UserRecordAccess WHERE {USER} AND RecordId IN ({MANY})",
    ],
    ids=["no user", "no record", "user in a list", "or", "unknown column", "201 records"],
)
def test_other_shapes_are_refused(salesforce_emulator: RunningEmulator, soql: str) -> None:
    sf: Any = salesforce_emulator.connect()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query(soql)
    content: Any = refused.value.content
    assert content[0]["errorCode"] == "MALFORMED_QUERY"
