"""Links are authority: which Sage 100 customer each Salesforce Account is linked to, both ways, and
the rule that refuses a claim contradicting a link.

What it owns: `CustomerLinks` (the customer cross-reference seen from both sides), `LinkConflict`
(a refused claim, with the reason and the Accounts concerned) and `LinkRefused` (the `Permanent`
error that carries one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from sagesf.errors import Permanent

log = logging.getLogger(__name__)

__all__ = ["CustomerLinks", "LinkConflict", "LinkRefused"]

CustomerKey = tuple[str, str]  # ARDivisionNo, CustomerNo


def _shown(customer: CustomerKey) -> str:
    return "-".join(customer)


@dataclass(frozen=True)
class LinkConflict:
    """A claim that `account` is Sage customer `customer`, contradicted by an existing link: the
    customer is linked to another Account (`owner`), or the account to another customer (`linked`);
    or by an operator who unlinked the two (`unlinked`, `sagesf link unlink`), whose decision a
    field left behind (Sage's UDF is cleared in Sage) must not undo."""

    account: str
    customer: CustomerKey
    source: str  # where the claim came from, for the reason (Account ExternalID__c, ...)
    owner: str | None = None
    linked: CustomerKey | None = None
    unlinked: bool = False

    @property
    def reason(self) -> str:
        claim = f"Account {self.account} as Sage customer {_shown(self.customer)} ({self.source})"
        if self.unlinked:
            return (
                f"{claim} refused: an operator unlinked them (`sagesf link unlink`). Nothing was "
                f"changed; clear the field in Sage 100 or Salesforce, or link them again "
                f"(`sagesf link accept`)."
            )
        if self.owner is not None:
            why = f"{_shown(self.customer)} is linked to Account {self.owner}"
        else:
            why = f"Account {self.account} is linked to Sage customer {_shown(self.linked or ('?', '?'))}"
        return f"{claim} refused: {why}. Nothing was changed; correct the link that is wrong."

    @property
    def accounts(self) -> tuple[str, ...]:
        """The Accounts concerned: the one the claim is for, and the customer's other Account."""
        return (self.account,) if self.owner is None else (self.account, self.owner)


class LinkRefused(Permanent):
    """A record or answer claims a link that contradicts an existing one (see `LinkConflict`)."""

    def __init__(self, conflict: LinkConflict) -> None:
        super().__init__(conflict.reason, field="customer", value=_shown(conflict.customer))
        self.conflict = conflict


class CustomerLinks:
    """The cross-reference both ways: `table` (the processors' `customers` table, Account ID ->
    {ar_division_no, customer_no}) and an index of it in memory (customer -> Account).

    The rule (`conflict`): once an Account and a Sage customer are linked, a claim pairing either
    with something else is refused, whoever makes it: an Account's ExternalID__c, a Sage
    customer's UDF_SALESFORCE_ID, or Sage's answer to a command. `link` records a claim that
    agrees with every link, and only such a claim, so the cross-reference never changes by a
    refused attempt.

    How the index stays true: it is built from the table on first use, then `link` keeps it and
    `changed` (the table's listener, processors/app.py) follows what other workers write.

    Limits: a link is changed only by an operator (remove the wrong UDF_SALESFORCE_ID or
    ExternalID__c and the table entry); the processors know the links they have seen on
    customer.v1 and in Sage's answers, so the Sage sink checks the UDF as well. The index costs
    about 100 bytes per customer.
    """

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self._owners: dict[CustomerKey, str] | None = None
        self._linked: dict[str, CustomerKey] = {}

    def of_account(self, account: str) -> Mapping[str, Any] | None:
        """The table entry of `account` ({ar_division_no, customer_no}), if linked."""
        found: Mapping[str, Any] | None = self.table.get(account)
        return found

    def owner(self, customer: CustomerKey) -> str | None:
        """The Account Sage customer `customer` is linked to, if any."""
        return self._index().get(customer)

    def conflict(self, account: str, customer: CustomerKey, source: str) -> LinkConflict | None:
        """Why `account` may not be `customer` (see the class doc), or None when nothing contradicts it."""
        owner = self.owner(customer)
        linked = self.of_account(account)
        current = (str(linked["ar_division_no"]), str(linked["customer_no"])) if linked else None
        if owner is not None and owner != account:
            return LinkConflict(account, customer, source, owner=owner)
        if current is not None and current != customer:
            return LinkConflict(account, customer, source, linked=current)
        return None

    def link(self, account: str, customer: CustomerKey, source: str) -> LinkConflict | None:
        """Record that `account` is `customer`, unless that contradicts a link (then the conflict)."""
        conflict = self.conflict(account, customer, source)
        if conflict is not None:
            log.warning("%s", conflict.reason)
            return conflict
        wanted = {"ar_division_no": customer[0], "customer_no": customer[1]}
        if self.table.get(account) != wanted:
            self.table[account] = wanted
            self.changed(account)
        return None

    def changed(self, account: Any) -> None:
        """The table's entry of `account` changed (here or on another worker): follow it."""
        if self._owners is not None:
            self._index_one(str(account))

    def _index(self) -> dict[CustomerKey, str]:
        if self._owners is None:
            self._owners = {}
            for account in list(self.table.keys()):
                self._index_one(str(account))
        return self._owners

    def _index_one(self, account: str) -> None:
        owners = self._owners
        assert owners is not None
        old = self._linked.pop(account, None)
        if old is not None and owners.get(old) == account:
            del owners[old]
        entry = self.table.get(account)
        if entry:
            key = (str(entry["ar_division_no"]), str(entry["customer_no"]))
            self._linked[account] = key
            owners.setdefault(key, account)
