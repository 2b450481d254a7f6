"""The source's credit-request visibility decision: one query per requester, never "visible" on failure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from connectors.salesforce.credit_visibility import withhold_unreadable_accounts
from connectors.salesforce.record_reader import RecordReader
from sagesf.errors import Retriable
from sagesf.publisher import CanonicalRecord

ALICE, BOB = "005000000000001AAA", "005000000000002AAA"
MINE, THEIRS = "001000000000001AAA", "001000000000002AAA"


class Access:
    """RecordReader.readable as a table, recording each call."""

    def __init__(self, readable: dict[str, set[str]], failure: Exception | None = None) -> None:
        self.table, self.failure = readable, failure
        self.calls: list[tuple[str, list[str]]] = []

    def readable(self, user_id: str, ids: Sequence[str]) -> set[str]:
        self.calls.append((user_id, list(ids)))
        if self.failure is not None:
            raise self.failure
        return self.table.get(user_id, set()) & set(ids)


def request(requester: str | None, account: str) -> CanonicalRecord:
    value: dict[str, Any] = {
        "requester_id": requester,
        "customer": {
            "salesforce_account_id": account,
            "ar_division_no": "01",
            "customer_no": "A1",
            "name": None,
        },
    }
    return CanonicalRecord("credit.requests.v1", "CreditCheckRequest", "k", value)


def customer(record: CanonicalRecord) -> dict[str, Any]:
    assert record.value is not None
    return cast(dict[str, Any], record.value["customer"])


def test_one_query_per_requester_and_only_unreadable_accounts_lose_their_customer() -> None:
    batch = [request(ALICE, MINE), request(ALICE, THEIRS), request(BOB, THEIRS)]
    access = Access({ALICE: {MINE}, BOB: {THEIRS}})
    withhold_unreadable_accounts(batch, cast(RecordReader, access))
    assert access.calls == [(ALICE, [MINE, THEIRS]), (BOB, [THEIRS])]
    assert [customer(r)["salesforce_account_id"] for r in batch] == [MINE, None, THEIRS]
    assert set(customer(batch[1]).values()) == {None}


def test_a_request_without_a_valid_requester_is_withheld_without_asking() -> None:
    batch = [request(None, MINE), request("' OR Id != '", MINE)]
    access = Access({})
    withhold_unreadable_accounts(batch, cast(RecordReader, access))
    assert access.calls == []
    assert [customer(r)["salesforce_account_id"] for r in batch] == [None, None]


def test_a_failed_access_query_is_retried_never_taken_as_visible() -> None:
    batch = [request(ALICE, MINE)]
    with pytest.raises(Retriable):
        withhold_unreadable_accounts(batch, cast(RecordReader, Access({}, Retriable("HTTP 503"))))
    assert customer(batch[0])["salesforce_account_id"] == MINE
