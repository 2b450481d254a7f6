"""How well `sagesf link suggest` links a company that already has data, and how fast.

`python bench/linking.py [--customers 2000] [--seed 13] [--auto 0.999]`

1. `sagesf sandbox seed existing --customers N` into a throwaway Salesforce emulator and Sage
   database (timed): about 3/4 of the Sage customers are also Accounts, written differently.
2. The customer.v1 and item.v1 records a load publishes for them (sandbox/seed_existing.py
   `canonical_records`, with the emulator's IDs), turned into the linker's records.
3. One linking run (linking/decisions.py `suggest`, the code behind the command; timed).
4. Its automatic links (scored, and named already by ExternalID__c or UDF_SALESFORCE_ID) compared
   with the ground truth file the seed wrote: precision, recall, the precision of the scored
   links alone (the named ones are right by construction), the review queue (and how many of the
   queued pairs are true), per kind.

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
from pathlib import Path

if not __package__:  # run as a file, bench/ comes first on the path and this file would be `linking`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from linking import decisions
from linking.matcher import Thresholds
from linking.records import article, party
from sagesf.link_state import LINKED, SUGGESTED, LinkBook
from sandbox.sage100.database import create_database
from sandbox.salesforce.harness import start_emulator
from sandbox.seed_existing import canonical_records, seed_existing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--auto", type=float, default=0.999, help="automatic threshold (match probability)")
    parser.add_argument("--review", type=float, default=0.5, help="review threshold")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-linking-"))
    emulator = start_emulator(work / "salesforce")
    try:
        started = time.monotonic()
        seeded = seed_existing(
            emulator.connect_other(),
            create_database(work / "sage100.db"),
            customers=args.customers,
            seed=args.seed,
            truth_path=work / "ground-truth.json",
        )
        seed_seconds = time.monotonic() - started
    finally:
        emulator.stop()
    customers, items = canonical_records(seeded.company, seeded.account_ids, seeded.product_ids)

    started = time.monotonic()
    parties = [p for key, value in customers if (p := party(value, key)) is not None]
    articles = [a for key, value in items if (a := article(value, key)) is not None]
    decision = decisions.suggest(LinkBook(), parties, articles, Thresholds(args.auto, args.review))
    link_seconds = time.monotonic() - started

    truth = json.loads(seeded.truth_path.read_text(encoding="utf-8"))
    true_pairs = {
        "customer": {(p["account_id"], p["sage_key"]) for p in truth["customer_pairs"]},
        "item": {(p["product_id"], p["item_code"]) for p in truth["item_pairs"]},
    }
    company = seeded.company
    print(
        f"seed existing --customers {args.customers} (seed {args.seed}): {len(company.accounts)} Accounts, "
        f"{len(company.sage_customers)} Sage customers, {len(company.customer_pairs)} true pairs; "
        f"{len(company.products)} Product2, {len(company.items)} CI_Item, "
        f"{len(company.item_pairs)} true pairs; seeded in {seed_seconds:.1f} s"
    )
    print(
        f"linking run: {link_seconds:.2f} s; automatic threshold {args.auto}, review threshold {args.review}"
    )
    header = (
        ("auto links", 10),
        ("precision", 10),
        ("recall", 8),
        ("scored", 7),
        ("scored precision", 17),
        ("review queue", 13),
        ("queue true", 11),
    )
    print(f"{'kind':10} " + " ".join(f"{name:>{width}}" for name, width in header))
    missed = False
    for kind, truth_set in true_pairs.items():
        mine = [p for p in decision.changed if p.kind == kind]
        linked = {(p.salesforce_id, p.sage_id) for p in mine if p.state == LINKED}
        scored = {(p.salesforce_id, p.sage_id) for p in mine if p.state == LINKED and p.how == "automatic"}
        queued = {(p.salesforce_id, p.sage_id) for p in mine if p.state == SUGGESTED}
        precision, recall = _share(linked & truth_set, linked), _share(linked & truth_set, truth_set)
        print(
            f"{kind:10} {len(linked):>10} {precision:>10.4f} {recall:>8.4f} {len(scored):>7} "
            f"{_share(scored & truth_set, scored):>17.4f} {len(queued):>13} {len(queued & truth_set):>11}"
        )
        missed = missed or precision < 0.99 or recall < 0.95
    print("aim (customers and items): precision >= 0.99, recall >= 0.95: " + ("MISSED" if missed else "met"))
    return 1 if missed else 0


def _share(part: set[tuple[str, str]], whole: set[tuple[str, str]]) -> float:
    return len(part) / len(whole) if whole else 1.0


if __name__ == "__main__":
    sys.exit(main())
