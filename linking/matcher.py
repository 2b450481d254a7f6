"""Which records of the two sides are the same: candidate pairs scored, one partner per record,
and the line between linking automatically and asking an operator.

What it owns: `Matcher.match(salesforce, sage)` -> `Match`es (a pair, its probability, its
comparison vector and whether it is certain enough to link without review) and `Thresholds`.

How it works: blocking (linking/comparisons.py) gives the candidate pairs; the Fellegi-Sunter
model (linking/model.py) is fitted on them and on random pairs, and scores each. Every record
gets at most one partner: pairs are taken best first, skipping any whose record is taken. A pair
is linked automatically when its probability reaches `Thresholds.auto` and no other pair of
either record (reaching `Thresholds.review`) comes within `margin_bits` of its evidence: a close
second means a person should look. A pair between the two thresholds, or contested, goes to
review; below `review` it is dropped.

Limits: the model is refitted on every run (a second or two for thousands of records); a record
has one suggestion at a time, so after a rejection the next run may suggest its runner-up.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Generic

from linking.comparisons import Kind, R
from linking.model import FellegiSunter, Vector

__all__ = ["Match", "Matcher", "Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """Match probabilities: at least `auto` links without review, at least `review` asks; a rival
    pair of either record within `margin_bits` of evidence makes a pair contested (reviewed)."""

    auto: float = 0.99
    review: float = 0.5
    margin_bits: float = 10.0  # a rival this much less likely (log2) does not contest a pair


@dataclass(frozen=True)
class Match(Generic[R]):
    salesforce: R
    sage: R
    probability: float
    vector: Vector
    automatic: bool


class Matcher(Generic[R]):
    """See the module doc. `seed` fixes the random pairs, so a run is repeatable."""

    def __init__(self, kind: Kind[R], thresholds: Thresholds | None = None, seed: int = 13) -> None:
        self.kind: Kind[R] = kind
        self.thresholds = thresholds or Thresholds()
        self.model = FellegiSunter(kind.levels)
        self.seed = seed

    def candidates(self, salesforce: Sequence[R], sage: Sequence[R]) -> list[tuple[int, int]]:
        """Index pairs (salesforce, sage) that share a blocking key."""
        index: dict[str, list[int]] = defaultdict(list)
        for j, record in enumerate(sage):
            for key in self.kind.keys(record):
                index[key].append(j)
        pairs: set[tuple[int, int]] = set()
        for i, record in enumerate(salesforce):
            for key in self.kind.keys(record):
                pairs.update((i, j) for j in index.get(key, ()))
        return sorted(pairs)

    def match(
        self, salesforce: Sequence[R], sage: Sequence[R], excluded: Set[tuple[str, str]] = frozenset()
    ) -> list[Match[R]]:
        """The suggested pairs, best first (see the module doc); `excluded` (Salesforce ID, Sage
        ID) pairs are never suggested (an operator rejected them), though they train the model."""
        pairs = self.candidates(salesforce, sage)
        if not pairs:
            return []
        vectors = [self.kind.vector(salesforce[i], sage[j]) for i, j in pairs]
        rng = random.Random(self.seed)  # noqa: S311 - sampling, not security
        samples = min(20_000, len(salesforce) * len(sage))
        randoms = [self.kind.vector(rng.choice(salesforce), rng.choice(sage)) for _ in range(samples)]
        self.model.fit(vectors, randoms)
        scored = sorted(
            (
                (self.model.probability(v), i, j, v)
                for (i, j), v in zip(pairs, vectors, strict=True)
                if (salesforce[i].id, sage[j].id) not in excluded
            ),
            key=lambda s: (-s[0], s[1], s[2]),
        )
        return self._one_each(scored, salesforce, sage)

    def _one_each(
        self,
        scored: list[tuple[float, int, int, Vector]],
        salesforce: Sequence[R],
        sage: Sequence[R],
    ) -> list[Match[R]]:
        limits = self.thresholds
        best_rival: dict[tuple[str, int], list[float]] = defaultdict(list)  # evidence, best first
        for p, i, j, vector in scored:
            if p >= limits.review:
                evidence = self.model.evidence(vector)
                best_rival[("l", i)].append(evidence)
                best_rival[("r", j)].append(evidence)
        taken_left: set[int] = set()
        taken_right: set[int] = set()
        out: list[Match[R]] = []
        for p, i, j, vector in scored:
            if p < limits.review:
                break
            if i in taken_left or j in taken_right:
                continue
            taken_left.add(i)
            taken_right.add(j)
            evidence = self.model.evidence(vector)
            rivals = [e for e in best_rival[("l", i)][1:2] + best_rival[("r", j)][1:2]]
            contested = any(e >= evidence - limits.margin_bits for e in rivals)
            automatic = p >= limits.auto and not contested
            out.append(Match(salesforce[i], sage[j], p, vector, automatic))
        return out
