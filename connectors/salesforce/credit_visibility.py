"""Credit requests only about Accounts their requester may read (`withhold_unreadable_accounts`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from connectors.salesforce.record_reader import RecordReader, is_record_id
from connectors.salesforce.source_metrics import CREDIT_REQUESTS_NOT_VISIBLE
from sagesf.publisher import CanonicalRecord

log = logging.getLogger(__name__)

__all__ = ["withhold_unreadable_accounts"]

CREDIT_REQUEST = "CreditCheckRequest"
NO_CUSTOMER = {"salesforce_account_id": None, "ar_division_no": None, "customer_no": None, "name": None}


def withhold_unreadable_accounts(records: Sequence[CanonicalRecord], reader: RecordReader) -> None:
    """Empty the customer of every credit request whose requester may not read its Account.

    Anyone may fire Credit_Check_Request__e naming any Account ID; the Sage responder answers
    about the customer linked to that Account but cannot ask Salesforce who may read it, so the
    check lives here, on the way in: one UserRecordAccess query per requester and batch. A request
    without the Account gets exactly the answer of an unknown customer (CUSTOMER_NOT_FOUND, same
    message, no figures). A failed query raises (Retriable, like every read): never "visible".
    """
    by_requester: dict[str, list[CanonicalRecord]] = defaultdict(list)
    for record in records:
        account = _account(record)
        if record.schema == CREDIT_REQUEST and account is not None:
            by_requester[str((record.value or {}).get("requester_id") or "")].append(record)
    for requester, asked in by_requester.items():
        accounts = [a for r in asked if (a := _account(r)) is not None and is_record_id(a)]
        readable = reader.readable(requester, accounts) if is_record_id(requester) and accounts else set()
        for record in asked:
            if _account(record) not in readable:
                _withhold(record, requester)


def _account(record: CanonicalRecord) -> str | None:
    customer = (record.value or {}).get("customer") or {}
    account = customer.get("salesforce_account_id")
    return str(account) if account else None


def _withhold(record: CanonicalRecord, requester: str) -> None:
    assert record.value is not None
    log.info(
        "credit request %s: requester %s may not read Account %s; answered as an unknown customer",
        record.key,
        requester or "(none)",
        _account(record),
    )
    record.value["customer"] = dict(NO_CUSTOMER)
    CREDIT_REQUESTS_NOT_VISIBLE.inc()
