"""What the processors remember between records, and what one processing step produces.

Owns the shapes shared by the agents' logic (processors/orders.py, customer_directory.py,
status.py, inventory.py) and the faust wiring (processors/app.py):
- `Tables`: the changelog-backed tables, seen as plain mutable mappings of JSON values, so the
  logic runs the same over faust tables (in the worker) and dicts (in unit tests). Keys and what
  they hold are listed on the class.
- `Origin`: where a consumed record came from, with its original key and value bytes; kept in the
  order state so a held or rejected order can still be dead-lettered byte for byte later.
- `Step`: one step's outcome (a metrics label), the records to produce, the dead letters to write,
  and what to record once Kafka acknowledged them (`after`).
- `MappingsRef`: the mappings in use, swapped whole when the files are reloaded.
- `ResendSchedule`: when a command Sage has not answered is sent again, and when to give up.
- `epoch_ms()`: the clock of the times the tables keep (`at`, `requested_at`).

Limits: table values are JSON (faust's table serializer), so bytes travel as base64 text and
decimals as strings.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from processors.commands import Outbound
from processors.mapping_model import Mappings

__all__ = [
    "Decoder",
    "MappingsRef",
    "Origin",
    "ResendSchedule",
    "Step",
    "Tables",
    "epoch_ms",
    "from_b64",
    "to_b64",
]

# a topic's value bytes -> the record (the serde's decode), for records kept as bytes in a table
Decoder = Callable[[bytes], Any]


def epoch_ms() -> int:
    """Now, in epoch milliseconds: how the tables record when something happened."""
    return int(datetime.now(UTC).timestamp() * 1000)


def to_b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def from_b64(text: Any) -> bytes | None:
    return None if text is None else base64.b64decode(str(text))


@dataclass(frozen=True)
class Origin:
    """A consumed record: topic, partition, offset and its original bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def position(self) -> tuple[str, str, str]:
        """Topic, partition and offset as text: the same record always gives the same command ID."""
        return self.topic, str(self.partition), str(self.offset)

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": to_b64(self.key),
            "value": to_b64(self.value),
            "headers": [[k, to_b64(v)] for k, v in self.headers],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Origin:
        return cls(
            topic=str(data["topic"]),
            partition=int(data["partition"]),
            offset=int(data["offset"]),
            key=from_b64(data.get("key")),
            value=from_b64(data.get("value")),
            headers=tuple((str(k), from_b64(v) or b"") for k, v in data.get("headers") or ()),
        )


@dataclass
class Step:
    """What handling one record (or one timer tick) produced."""

    outcome: str
    outbound: list[Outbound] = field(default_factory=list)
    dead_letters: list[tuple[Origin, BaseException]] = field(default_factory=list)
    after: Callable[[], None] | None = None  # run once Kafka acknowledged `outbound`

    def add(self, other: Step) -> None:
        self.outbound.extend(other.outbound)
        self.dead_letters.extend(other.dead_letters)


@dataclass
class Tables:
    """The processors' state. Every value is JSON; every table is a changelog-backed faust table.

    customers      Salesforce Account ID -> {ar_division_no, customer_no}: the customer
                   cross-reference (customer.v1 records, Sage's answers to orders and customers)
    accounts       Account ID -> base64 of the latest Salesforce Customer record (customer.v1)
                   of an account Sage does not know yet: the customer its first order brings
    items          ItemCode -> {active, product_code, standard_unit_price, deleted} (item.v1)
    products       ProductCode -> ItemCode (item.v1 records whose product code differs)
    orders         order ID (Opportunity ID, else Order ID) -> the state of an order Sage has
                   not confirmed: state (held | commanded | failed | history: won before
                   go-live, never ordered, kept for good), records to write back to,
                   the account, command_id, reason, the original record (`Origin`), `at`
                   (epoch ms it was last commanded or failed), `resends` (re-sends so far) and
                   `notes` (what the mapping rules changed, for the sync message); removed
                   when Sage confirms, failed ones after the retention
    held           Account ID -> {carrier: the order ID whose CreateSalesOrder brings the new
                   customer, customer: the `accounts` record it was built from (null: the
                   order's data), notes: what the rules changed in it, orders: [order IDs]
                   waiting for Sage's answer to the carrier}, while Sage has no customer for
                   the account
    order_numbers  Sage SalesOrderNo -> {records: [Salesforce record IDs], lines: {LineKey:
                   OpportunityLineItem / OrderItem ID}, at}: the records and lines a status
                   change updates (kept for the retention)
    inventory      "<ItemCode>/<WarehouseCode>" -> the latest InventoryLevel quantities (text)
    inventory_sent ItemCode -> the last stock fields sent to Salesforce (JSON text)
    sage_customers "<ARDivisionNo>-<CustomerNo>" -> {sage: the Account fields its last Sage state
                   maps to (null until one was seen), written: the Account fields of the last
                   UpsertCustomers the customer sync sent to it (at most 5)}: what tells a Sage
                   user's edit from an echo of our own write (processors/customers.py)
    link_state     "<kind>:<Salesforce ID>:<Sage ID>" -> the pair's state on link.state.v1
                   (sagesf/link_state.py): which records wait for review (processors/link_review.py)
    """

    customers: MutableMapping[str, Any]
    accounts: MutableMapping[str, Any]
    items: MutableMapping[str, Any]
    products: MutableMapping[str, Any]
    orders: MutableMapping[str, Any]
    held: MutableMapping[str, Any]
    order_numbers: MutableMapping[str, Any]
    inventory: MutableMapping[str, Any]
    inventory_sent: MutableMapping[str, Any]
    sage_customers: MutableMapping[str, Any] = field(default_factory=dict)
    link_state: MutableMapping[str, Any] = field(default_factory=dict)

    @classmethod
    def in_memory(cls) -> Tables:
        """Plain dicts, for tests and tools."""
        return cls(*({} for _ in range(9)))


@dataclass(frozen=True)
class ResendSchedule:
    """When a command Sage has not answered is sent again, and when to stop.

    The first re-send comes `after_ms` after the first send, each next one after twice the
    previous wait (5, 10, 20, 40, 80 minutes with the defaults); after `limit` re-sends and one
    more doubled wait (160 minutes), the work is given up: about 5 hours in all. limit 0: never
    sent again, given up after `after_ms`.
    """

    after_ms: int
    limit: int

    def due(self, sent_at: int, resends: int, now: int) -> bool:
        """True when the wait after the last send (`resends` re-sends so far) is over."""
        wait: int = self.after_ms * 2 ** min(resends, self.limit)
        return now - sent_at >= wait

    def exhausted(self, resends: int) -> bool:
        return resends >= self.limit


class MappingsRef:
    """The mappings in use; `current` is replaced as a whole on reload, never edited in place."""

    def __init__(self, mappings: Mappings) -> None:
        self.current = mappings
