"""How well `sagesf link suggest` links a company that already has data, and how fast.

`python bench/linking.py [--customers 2000] [--seed 13] [--auto 0.999] [--companies N]`

1. `sagesf sandbox seed existing --customers N` into a throwaway Salesforce emulator and Sage
   database (timed): about 3/4 of the Sage customers are also Accounts, written differently.
2. The customer.v1 and item.v1 records a load publishes for them (sandbox/seed_existing.py
   `canonical_records`, with the emulator's IDs), turned into the linker's records.
3. One linking run (linking/decisions.py `suggest`, the code behind the command; timed).
4. Its automatic links (scored, and named already by ExternalID__c or UDF_SALESFORCE_ID) compared
   with the ground truth file the seed wrote: precision, recall, the precision of the scored
   links alone (the named ones are right by construction), the review queue (and how many of the
   queued pairs are true), per kind.

`--companies N` measures instead N generated companies (seeds 1..N, no emulator: the records are
made with made-up IDs) and prints, per seed and over all, the same figures and the likeliest
wrong pair the linker linked or queued: how far below the automatic threshold wrong pairs stay.

The Kafka reads and writes around the run are not timed here (tests/integration/
test_linking_kafka.py runs them). Aim: precision >= 0.99 and recall >= 0.95 at the automatic
threshold, for customers and for items; exit 1 when a figure misses it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a file, bench/ comes first on the path and this file would be `linking`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from linking import decisions
from linking.decisions import Decision
from linking.matcher import Thresholds
from linking.records import article, party
from sagesf.link_state import LINKED, SUGGESTED, LinkBook
from sandbox.existing_company import ExistingCompany, generate
from sandbox.sage100.database import create_database
from sandbox.salesforce.harness import start_emulator
from sandbox.salesforce.ids import make_id
from sandbox.seed_existing import canonical_records, seed_existing

KINDS = ("customer", "item")
Pairs = set[tuple[str, str]]


@dataclass(frozen=True)
class Figures:
    """One kind's figures of one linking run against the truth."""

    linked: int
    wrong: int  # links the truth does not have
    precision: float
    recall: float
    scored: int
    scored_precision: float
    queued: int
    queued_true: int
    likeliest_wrong: float  # the highest probability of a wrong pair linked or queued (0: none)

    @property
    def meets_aim(self) -> bool:
        return self.precision >= 0.99 and self.recall >= 0.95


def _share(part: Pairs, whole: Pairs) -> float:
    return len(part) / len(whole) if whole else 1.0


def figures(decision: Decision, kind: str, truth: Pairs) -> Figures:
    mine = [p for p in decision.changed if p.kind == kind]
    linked = {(p.salesforce_id, p.sage_id) for p in mine if p.state == LINKED}
    scored = {(p.salesforce_id, p.sage_id) for p in mine if p.state == LINKED and p.how == "automatic"}
    queued = {(p.salesforce_id, p.sage_id) for p in mine if p.state == SUGGESTED}
    wrong = [
        p.probability or 0.0
        for p in mine
        if p.state in (LINKED, SUGGESTED) and (p.salesforce_id, p.sage_id) not in truth
    ]
    return Figures(
        len(linked),
        len(linked - truth),
        _share(linked & truth, linked),
        _share(linked & truth, truth),
        len(scored),
        _share(scored & truth, scored),
        len(queued),
        len(queued & truth),
        max(wrong, default=0.0),
    )


def link(
    company: ExistingCompany, account_ids: Sequence[str], product_ids: Sequence[str], thresholds: Thresholds
) -> tuple[Decision, float]:
    """One linking run over the records a load publishes for `company`, and its seconds."""
    customers, items = canonical_records(company, account_ids, product_ids)
    started = time.monotonic()
    parties = [p for key, value in customers if (p := party(value, key)) is not None]
    articles = [a for key, value in items if (a := article(value, key)) is not None]
    decision = decisions.suggest(LinkBook(), parties, articles, thresholds)
    return decision, time.monotonic() - started


def truth_of(
    company: ExistingCompany, account_ids: Sequence[str], product_ids: Sequence[str]
) -> dict[str, Pairs]:
    """The true pairs by kind, as the seed's ground-truth file states them."""
    sage = company.sage_customers
    return {
        "customer": {
            (account_ids[a], f"{sage[s]['ARDivisionNo']}-{sage[s]['CustomerNo']}")
            for a, s in company.customer_pairs
        },
        "item": {(product_ids[p], company.items[i]["ItemCode"]) for p, i in company.item_pairs},
    }


def _seeded(
    customers: int, seed: int
) -> tuple[ExistingCompany, list[str], list[str], dict[str, Pairs], float]:
    """`seed existing` into a throwaway emulator and Sage database; the truth read from its file."""
    work = Path(tempfile.mkdtemp(prefix="bench-linking-"))
    emulator = start_emulator(work / "salesforce")
    try:
        started = time.monotonic()
        seeded = seed_existing(
            emulator.connect_other(),
            create_database(work / "sage100.db"),
            customers=customers,
            seed=seed,
            truth_path=work / "ground-truth.json",
        )
        seconds = time.monotonic() - started
    finally:
        emulator.stop()
    truth = json.loads(seeded.truth_path.read_text(encoding="utf-8"))
    pairs = {
        "customer": {(p["account_id"], p["sage_key"]) for p in truth["customer_pairs"]},
        "item": {(p["product_id"], p["item_code"]) for p in truth["item_pairs"]},
    }
    return seeded.company, seeded.account_ids, seeded.product_ids, pairs, seconds


HEADER = (
    ("auto links", 10),
    ("precision", 10),
    ("recall", 8),
    ("scored", 7),
    ("scored precision", 17),
    ("review queue", 13),
    ("queue true", 11),
    ("likeliest wrong", 16),
)


def _row(label: str, f: Figures) -> str:
    return (
        f"{label:10} {f.linked:>10} {f.precision:>10.4f} {f.recall:>8.4f} {f.scored:>7} "
        f"{f.scored_precision:>17.4f} {f.queued:>13} {f.queued_true:>11} {f.likeliest_wrong:>16.4f}"
    )


def _header(first: str) -> str:
    return f"{first:10} " + " ".join(f"{name:>{width}}" for name, width in HEADER)


def one_company(args: argparse.Namespace) -> bool:
    company, account_ids, product_ids, truth, seed_seconds = _seeded(args.customers, args.seed)
    decision, seconds = link(company, account_ids, product_ids, Thresholds(args.auto, args.review))
    print(
        f"seed existing --customers {args.customers} (seed {args.seed}): {len(company.accounts)} Accounts, "
        f"{len(company.sage_customers)} Sage customers, {len(company.customer_pairs)} true pairs; "
        f"{len(company.products)} Product2, {len(company.items)} CI_Item, "
        f"{len(company.item_pairs)} true pairs; seeded in {seed_seconds:.1f} s"
    )
    print(f"linking run: {seconds:.2f} s; automatic threshold {args.auto}, review threshold {args.review}")
    print(_header("kind"))
    found = [figures(decision, kind, truth[kind]) for kind in KINDS]
    for kind, f in zip(KINDS, found, strict=True):
        print(_row(kind, f))
    return all(f.meets_aim for f in found)


def many_companies(args: argparse.Namespace) -> bool:
    print(
        f"{args.companies} generated companies of {args.customers} customers (seeds 1..{args.companies}); "
        f"automatic threshold {args.auto}, review threshold {args.review}"
    )
    print(_header("seed/kind"))
    by_kind: dict[str, list[Figures]] = {kind: [] for kind in KINDS}
    seconds: list[float] = []
    for seed in range(1, args.companies + 1):
        company = generate(args.customers, seed)
        account_ids = [make_id("001", i + 1) for i in range(len(company.accounts))]
        product_ids = [make_id("01t", i + 1) for i in range(len(company.products))]
        decision, took = link(company, account_ids, product_ids, Thresholds(args.auto, args.review))
        seconds.append(took)
        truth = truth_of(company, account_ids, product_ids)
        for kind in KINDS:
            by_kind[kind].append(f := figures(decision, kind, truth[kind]))
            print(_row(f"{seed}/{kind}", f))
    for kind, runs in by_kind.items():
        n = len(runs)
        print(
            f"{kind}: precision min {min(f.precision for f in runs):.4f}; recall min "
            f"{min(f.recall for f in runs):.4f}, mean {sum(f.recall for f in runs) / n:.4f}; review queue "
            f"mean {sum(f.queued for f in runs) / n:.1f}; wrong links {sum(f.wrong for f in runs)}; "
            f"likeliest wrong pair {max(f.likeliest_wrong for f in runs):.4f}"
        )
    print(f"linking runs: {min(seconds):.2f} to {max(seconds):.2f} s")
    return all(f.meets_aim for runs in by_kind.values() for f in runs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--auto", type=float, default=0.999, help="automatic threshold (match probability)")
    parser.add_argument("--review", type=float, default=0.5, help="review threshold")
    parser.add_argument("--companies", type=int, default=0, help="measure this many generated companies")
    args: Any = parser.parse_args(argv)
    met = many_companies(args) if args.companies else one_company(args)
    print("aim (customers and items): precision >= 0.99, recall >= 0.95: " + ("met" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
