"""Suggesting links and deciding them: the logic behind `sagesf link suggest|review|accept|reject|
unlink`, apart from the command line so the web console can call the same functions.

What it owns: `suggest()` (both sides' records and the link state in, the changes out),
`review_queue()`, `accept()`, `reject()`, `unlink()`, each returning a `Decision`: the pairs'
new states and the records to write (linking/effects.py), or a `Refused` error saying why not.

How a run decides, per kind (customers, items):
1. Links that exist already: a record naming the other side (Account ExternalID__c, Sage
   UDF_SALESFORCE_ID, Product2 Sage_Item_Code__c) whose partner exists becomes a linked pair
   (`how` existing); its missing half is written like any link.
2. Every record without a link of its own is matched (linking/matcher.py), so a second run
   sees what the first saw; pairs an operator rejected are never suggested again. A match of a
   record in a linked pair is left alone; of the others, a certain pair is linked (`how`
   automatic), any other goes to review (suggested).
3. Suggestions of an earlier run that this run no longer makes are superseded.
Every decision is idempotent: a pair already in the state asked for writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from linking.comparisons import CUSTOMERS, ITEMS, Kind
from linking.effects import LinkFields, Outbound, linked, state, unlinked
from linking.matcher import Match, Matcher, Thresholds
from linking.records import SAGE, SALESFORCE, Article, Party
from sagesf.link_state import (
    CUSTOMER,
    ITEM,
    LINKED,
    REJECTED,
    SUGGESTED,
    SUPERSEDED,
    UNLINKED,
    LinkBook,
    PairState,
)

__all__ = ["Decision", "Refused", "accept", "find_pair", "reject", "review_queue", "suggest", "unlink"]


class Refused(ValueError):
    """A decision that cannot be made as asked (the message says why and what to do)."""


@dataclass
class Decision:
    """The pairs whose state changes and everything to write for them, in order."""

    changed: list[PairState] = field(default_factory=list)
    outbound: list[Outbound] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, pair: PairState, effects: Iterable[Outbound] = ()) -> None:
        """`pair`'s new state; its effects go before every state record, so a crash between them
        leaves the pair undecided and a new run writes both again."""
        self.changed.append(pair)
        self.outbound[:0] = list(effects)
        self.outbound.append(state(pair))

    def count(self, state_name: str, how: str | None = None) -> int:
        return sum(1 for p in self.changed if p.state == state_name and (how is None or p.how == how))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _pair(kind: str, sf: Party | Article, sage: Party | Article, state_name: str, how: str) -> PairState:
    return PairState(
        kind=kind,
        salesforce_id=sf.id,
        sage_id=sage.id,
        state=state_name,
        how=how,
        salesforce_name=sf.name,
        sage_name=sage.name,
        salesforce_key=sf.topic_key,
        at=_now(),
    )


# --- suggest -------------------------------------------------------------------------------------


def suggest(
    book: LinkBook,
    parties: Sequence[Party],
    articles: Sequence[Article],
    thresholds: Thresholds | None = None,
    fields: LinkFields | None = None,
) -> Decision:
    """One linking run over every record (see the module doc)."""
    decision = Decision()
    fields = fields or LinkFields()
    for kind_name, kind, records in ((CUSTOMER, CUSTOMERS, parties), (ITEM, ITEMS, articles)):
        _suggest_kind(decision, book, kind_name, kind, list(records), thresholds, fields)
    return decision


def _suggest_kind(
    decision: Decision,
    book: LinkBook,
    kind_name: str,
    kind: Kind[Any],
    records: list[Any],
    thresholds: Thresholds | None,
    fields: LinkFields,
) -> None:
    by_id = {(r.side, r.id): r for r in records}
    taken: set[tuple[str, str]] = set()
    for sf, sage in _existing(records, by_id):
        taken.update({(SALESFORCE, sf.id), (SAGE, sage.id)})
        known = book.get(_pair(kind_name, sf, sage, LINKED, "existing").key)
        if known is None or known.state in (SUGGESTED, SUPERSEDED):
            _link(decision, book, _pair(kind_name, sf, sage, LINKED, "existing"), fields)
    for pair in book.pairs():
        if pair.kind == kind_name and pair.state == LINKED:
            taken.update({(SALESFORCE, pair.salesforce_id), (SAGE, pair.sage_id)})
    # every record without a link of its own is matched, linked or not, so a second run sees
    # what the first saw and decides the same; decisions then leave the linked ones alone
    pool = [r for r in records if not r.linked_to]
    rejected = {
        (p.salesforce_id, p.sage_id) for p in book.pairs() if p.kind == kind_name and p.state == REJECTED
    }
    matches = Matcher(kind, thresholds).match(
        [r for r in pool if r.side == SALESFORCE], [r for r in pool if r.side == SAGE], excluded=rejected
    )
    suggested: set[str] = set()
    for match in matches:
        if (SALESFORCE, match.salesforce.id) in taken or (SAGE, match.sage.id) in taken:
            continue
        pair = _scored(kind_name, kind, match)
        known = book.get(pair.key)
        if match.automatic:
            if known is None or known.state in (SUGGESTED, SUPERSEDED):
                _link(decision, book, pair, fields)
        else:
            suggested.add(pair.key)
            if known is None or known.state == SUPERSEDED:
                decision.add(pair)
    for pair in list(book.pairs()):
        fresh = pair.key not in suggested and pair.key not in {p.key for p in decision.changed}
        if pair.kind == kind_name and pair.state == SUGGESTED and fresh:
            decision.add(pair.moved_to(SUPERSEDED, "superseded", "no longer suggested by the latest run"))


def _existing(records: list[Any], by_id: dict[tuple[str, str], Any]) -> Iterable[tuple[Any, Any]]:
    """(Salesforce record, Sage record) pairs that a record of either side names already."""
    seen: set[tuple[str, str]] = set()
    for record in records:
        if not record.linked_to:
            continue
        other_side = SAGE if record.side == SALESFORCE else SALESFORCE
        partner = by_id.get((other_side, record.linked_to))
        if partner is None:
            continue
        sf, sage = (record, partner) if record.side == SALESFORCE else (partner, record)
        if (sf.id, sage.id) not in seen:
            seen.add((sf.id, sage.id))
            yield sf, sage


def _scored(kind_name: str, kind: Kind[Any], match: Match[Any]) -> PairState:
    pair = _pair(
        kind_name, match.salesforce, match.sage, LINKED if match.automatic else SUGGESTED, "automatic"
    )
    comparison = dict(zip(kind.comparisons, match.vector, strict=True))
    return replace(pair, probability=round(match.probability, 6), comparison=comparison)


def _link(decision: Decision, book: LinkBook, pair: PairState, fields: LinkFields) -> None:
    """`pair` linked: its effects, and its records' other suggestions superseded."""
    decision.add(pair, linked(pair, fields))
    for side, record in (("salesforce", pair.salesforce_id), ("sage", pair.sage_id)):
        for other in book.of_record(pair.kind, side, record):
            if other.key != pair.key and other.state == SUGGESTED:
                decision.add(
                    other.moved_to(SUPERSEDED, "superseded", f"{pair.salesforce_id} linked to {pair.sage_id}")
                )


# --- review ------------------------------------------------------------------------------------


def review_queue(book: LinkBook, kind: str | None = None) -> list[PairState]:
    """The pairs waiting for review, most likely first."""
    waiting = [p for p in book.pairs() if p.state == SUGGESTED and (kind is None or p.kind == kind)]
    return sorted(waiting, key=lambda p: (-(p.probability or 0.0), p.key))


def find_pair(book: LinkBook, ref: str) -> PairState:
    """The pair `ref` names: its key, or the ID of a record in exactly one pair that is
    suggested or linked (Account ID, Product2 ID, ARDivisionNo-CustomerNo, ItemCode)."""
    exact = book.get(ref)
    if exact is not None:
        return exact
    found = [
        p for p in book.pairs() if ref in (p.salesforce_id, p.sage_id) and p.state in (SUGGESTED, LINKED)
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise Refused(f"no suggested or linked pair names {ref!r} (see `sagesf link review`)")
    keys = ", ".join(p.key for p in found)
    raise Refused(f"{ref!r} is in {len(found)} pairs ({keys}); name one by its key")


def accept(book: LinkBook, pair: PairState, by: str, fields: LinkFields | None = None) -> Decision:
    """Link `pair` as an operator decided; nothing when it is linked already."""
    decision = Decision()
    if pair.state == LINKED:
        decision.notes.append(f"{pair.key} is linked already; nothing to do")
        return decision
    for side, record in (("salesforce", pair.salesforce_id), ("sage", pair.sage_id)):
        other = book.linked(pair.kind, side, record)
        if other is not None and other.key != pair.key:
            raise Refused(
                f"{record} is linked to {other.sage_id if side == 'salesforce' else other.salesforce_id} "
                f"({other.key}); unlink that first (`sagesf link unlink {other.key}`)"
            )
    _link(decision, book, pair.moved_to(LINKED, "operator", f"accepted by {by}"), fields or LinkFields())
    return decision


def reject(book: LinkBook, pair: PairState, by: str) -> Decision:
    """Mark `pair` as two different records: never suggested again; nothing when rejected already."""
    decision = Decision()
    if pair.state == REJECTED:
        decision.notes.append(f"{pair.key} is rejected already; nothing to do")
        return decision
    if pair.state == LINKED:
        raise Refused(f"{pair.key} is linked; unlink it first (`sagesf link unlink {pair.key}`)")
    decision.add(pair.moved_to(REJECTED, "operator", f"rejected by {by}"))
    return decision


def unlink(book: LinkBook, pair: PairState, by: str, fields: LinkFields | None = None) -> Decision:
    """Undo a link: the Salesforce field cleared, the pair unlinked; nothing when not linked."""
    decision = Decision()
    if pair.state != LINKED:
        decision.notes.append(f"{pair.key} is not linked ({pair.state}); nothing to do")
        return decision
    done = pair.moved_to(UNLINKED, "operator", f"unlinked by {by}")
    effects, note = unlinked(done, fields or LinkFields())
    decision.add(done, effects)
    if note:
        decision.notes.append(note)
    return decision
