"""What record linking decided, as link.state.v1 holds it: shared by the linker (linking/) that
writes it and the processors that read it, so neither imports the other.

What it owns: `PairState` (one suggested or decided pair: its kind, both sides' IDs, state, how it
was decided, the score), its Kafka key and JSON value, and `LinkBook`: the pairs by key, and the
questions asked of them: which records wait for review, which partner a record is linked to.

The states of a pair: SUGGESTED (waits for review), LINKED (automatically, because a record
named the other already, or by an operator), REJECTED (an operator said they differ; never
suggested again), UNLINKED (an operator undid a link), SUPERSEDED (a suggestion made moot
because one of its records was linked to something else; it may be suggested again).
A record waits for review while it is in a SUGGESTED pair and in no LINKED one.

Keys are `<kind>:<Salesforce ID>:<Sage ID>` (kind customer or item); Salesforce IDs hold no
colon, so the Sage ID is the rest, whatever it holds. Values are JSON, as on positions.v1: the
processors need no registry to read them. The topic is compacted and never gets tombstones: a
pair's latest state is its whole story.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CUSTOMER",
    "ITEM",
    "LINKED",
    "REJECTED",
    "SUGGESTED",
    "SUPERSEDED",
    "UNLINKED",
    "LinkBook",
    "PairState",
    "pair_key",
]

CUSTOMER, ITEM = "customer", "item"
SUGGESTED, LINKED, REJECTED, UNLINKED, SUPERSEDED = (
    "suggested",
    "linked",
    "rejected",
    "unlinked",
    "superseded",
)
STATES = frozenset({SUGGESTED, LINKED, REJECTED, UNLINKED, SUPERSEDED})


@dataclass(frozen=True)
class PairState:
    """One pair of records and what is known of it (see the module doc)."""

    kind: str  # customer | item
    salesforce_id: str  # Account ID | Product2 ID
    sage_id: str  # ARDivisionNo-CustomerNo | ItemCode
    state: str
    how: str  # automatic | existing | operator | superseded
    probability: float | None = None
    comparison: dict[str, int | None] = field(default_factory=dict)  # comparison -> agreement level
    salesforce_name: str = ""
    sage_name: str = ""
    salesforce_key: str | None = None  # the key the Salesforce record was published under
    reason: str | None = None
    at: str = ""  # ISO time of the last change

    @property
    def key(self) -> str:
        return pair_key(self.kind, self.salesforce_id, self.sage_id)

    def moved_to(self, state: str, how: str, reason: str | None = None) -> PairState:
        return replace(self, state=state, how=how, reason=reason, at=datetime.now(UTC).isoformat())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> PairState:
        """The state a link.state.v1 value holds; ValueError when it is not one."""
        raw = json.loads(data) if isinstance(data, bytes | str) else data
        if (
            not isinstance(raw, dict)
            or raw.get("state") not in STATES
            or raw.get("kind") not in (CUSTOMER, ITEM)
        ):
            raise ValueError("not a link state: needs kind (customer, item) and a known state")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


def pair_key(kind: str, salesforce_id: str, sage_id: str) -> str:
    return f"{kind}:{salesforce_id}:{sage_id}"


def record_key(kind: str, side: str, record_id: str) -> str:
    """How LinkBook names one record: `<kind>/<side>/<id>` (side salesforce or sage)."""
    return f"{kind}/{side}/{record_id}"


class LinkBook:
    """The pairs by key (`table`: any mutable mapping of key -> JSON state, a faust table in the
    processors) and, kept beside it in memory, which records are in suggested and linked pairs.

    `put` records a pair's new state; `changed` follows a key another writer changed (a table
    listener). The index is built on first use."""

    def __init__(self, table: MutableMapping[str, Any] | None = None) -> None:
        self.table: MutableMapping[str, Any] = table if table is not None else {}
        self._index: dict[str, dict[str, set[str]]] | None = None  # record -> state -> pair keys

    def get(self, key: str) -> PairState | None:
        raw = self.table.get(key)
        return PairState.from_json(raw) if raw is not None else None

    def pairs(self) -> Iterable[PairState]:
        for key in list(self.table.keys()):
            found = self.get(str(key))
            if found is not None:
                yield found

    def put(self, pair: PairState) -> None:
        self.table[pair.key] = json.loads(pair.to_json())
        self.changed(pair.key)

    def changed(self, key: Any) -> None:
        if self._index is not None:
            self._drop(str(key))
            self._add(str(key))

    # --- questions -------------------------------------------------------------------------

    def waits_for_review(self, kind: str, side: str, record_id: str) -> bool:
        """True while the record is in a suggested pair and in no linked one."""
        states = self._indexed().get(record_key(kind, side, record_id), {})
        return bool(states.get(SUGGESTED)) and not states.get(LINKED)

    def linked(self, kind: str, side: str, record_id: str) -> PairState | None:
        """The linked pair the record is in, if any."""
        keys = self._indexed().get(record_key(kind, side, record_id), {}).get(LINKED) or set()
        for key in sorted(keys):
            return self.get(key)
        return None

    def of_record(self, kind: str, side: str, record_id: str) -> list[PairState]:
        keys = set().union(*self._indexed().get(record_key(kind, side, record_id), {}).values())
        return [pair for key in sorted(keys) if (pair := self.get(key)) is not None]

    # --- the index -------------------------------------------------------------------------

    def _indexed(self) -> dict[str, dict[str, set[str]]]:
        if self._index is None:
            self._index = {}
            for key in list(self.table.keys()):
                self._add(str(key))
        return self._index

    def _records(self, pair: PairState) -> tuple[str, str]:
        return (
            record_key(pair.kind, "salesforce", pair.salesforce_id),
            record_key(pair.kind, "sage", pair.sage_id),
        )

    def _add(self, key: str) -> None:
        assert self._index is not None
        pair = self.get(key)
        if pair is None:
            return
        for record in self._records(pair):
            self._index.setdefault(record, {}).setdefault(pair.state, set()).add(key)

    def _drop(self, key: str) -> None:
        assert self._index is not None
        kind, _, rest = key.partition(":")
        salesforce_id, _, sage_id = rest.partition(":")
        for record in (record_key(kind, "salesforce", salesforce_id), record_key(kind, "sage", sage_id)):
            for keys in self._index.get(record, {}).values():
                keys.discard(key)
