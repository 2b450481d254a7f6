"""What record linking decided, as the processors use it (link.state.v1, sagesf/link_state.py).

What it owns: `LinkReview`, the handler of the links agent and the answers the other stages ask:
- `on_link_state`: a pair's new state. A customer pair linked by the linker goes into the
  customer cross-reference at once (so a Sage customer whose UDF_SALESFORCE_ID Sage has not
  written yet updates its Account instead of upserting a second one), refused like any claim when
  it contradicts a link the processors know (processors/customer_links.py); an unlinked pair
  leaves the cross-reference. An item pair gives the item its Product2 (stock then reaches that
  Product2, processors/inventory.py).
- `waits(kind, side, id)`: whether a record waits for review, so no stage creates anything for
  it on the other side (processors/customers.py, processors/customer_directory.py).

The pairs live in the `link-state` table (pair key -> state JSON) with an index in memory
(sagesf.link_state.LinkBook), which follows what other workers write through the table's listener.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from processors.customer_directory import CustomerDirectory
from processors.state import Origin, Step, Tables
from sagesf.errors import Permanent
from sagesf.link_state import CUSTOMER, LINKED, UNLINKED, PairState

log = logging.getLogger(__name__)

__all__ = ["LinkReview"]


class LinkReview:
    """See the module doc."""

    def __init__(self, tables: Tables, directory: CustomerDirectory) -> None:
        self.tables = tables
        self.directory = directory
        self.book = directory.review

    def on_link_state(self, key: str | None, value: Mapping[str, Any], origin: Origin) -> Step:
        try:
            pair = PairState.from_json(dict(value))
        except (TypeError, ValueError) as exc:
            raise Permanent(f"not a link state: {exc}", field="value") from None
        self.book.put(pair)
        if pair.kind == CUSTOMER:
            return self._customer(pair, origin)
        self._item(pair)
        return Step(f"item_{pair.state}")

    def _customer(self, pair: PairState, origin: Origin) -> Step:
        division, _, number = pair.sage_id.partition("-")
        if pair.state == LINKED:
            conflict = self.directory.learn(pair.salesforce_id, division, number, "sagesf link")
            if conflict is not None:
                return self.directory.refuse(conflict, origin, origin.position())
            return Step("customer_linked")
        if pair.state == UNLINKED:
            self.directory.forget(pair.salesforce_id, (division, number))
        return Step(f"customer_{pair.state}")

    def _item(self, pair: PairState) -> None:
        entry = dict(self.tables.items.get(pair.sage_id) or {})
        if pair.state == LINKED and entry.get("salesforce_product_id") != pair.salesforce_id:
            self.tables.items[pair.sage_id] = {**entry, "salesforce_product_id": pair.salesforce_id}
        elif pair.state == UNLINKED and entry.get("salesforce_product_id") == pair.salesforce_id:
            self.tables.items[pair.sage_id] = {**entry, "salesforce_product_id": None}

    def waits(self, kind: str, side: str, record_id: str) -> bool:
        return self.book.waits_for_review(kind, side, record_id)
