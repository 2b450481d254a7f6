"""The Fellegi-Sunter model: how much each comparison's outcome says for or against two records
being the same, learnt from the records themselves.

What it owns: `FellegiSunter`, fitted on comparison vectors (one agreement level per comparison,
None when a value is missing on either side) and scoring a vector as a match probability.

How it works (as splink does it): u, the chance of each level among pairs that are NOT the same,
comes from random pairs of the two sides, since nearly every random pair is a non-match; m, the
chance among pairs that ARE the same, from the candidate pairs whose other comparisons all agree
exactly (a field's m is then not skewed by the blocking on that field, nor by near-namesakes);
the share of matches among the candidates by expectation-maximisation, m and u held fixed. A
pair's evidence is the sum of log2(m/u) over its comparisons (a missing value adds nothing); its
probability follows from that and the prior. Levels are smoothed with a small count, so a level
never seen gives no infinite weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FellegiSunter", "Vector"]

Vector = tuple[int | None, ...]  # one level per comparison; None: a value missing on either side

_SMOOTHING = 1.0


@dataclass
class FellegiSunter:
    """m and u per comparison and level, and the prior share of matches (see the module doc)."""

    levels: Sequence[int]  # number of levels of each comparison (level 0 is the best agreement)
    m: list[list[float]] = field(default_factory=list)
    u: list[list[float]] = field(default_factory=list)
    prior: float = 0.01

    def fit(self, candidates: Sequence[Vector], random_pairs: Sequence[Vector], iterations: int = 30) -> None:
        """u from `random_pairs`; m of each comparison from the candidates whose other comparisons
        all agree exactly (at least two of them with a value): pairs that are matches whatever
        this comparison says, so its m is not biased by the blocking; then the prior by EM."""
        self.u = [self._shares([v[c] for v in random_pairs], n) for c, n in enumerate(self.levels)]
        self.m = [
            self._shares([v[c] for v in candidates if _others_agree(v, c)], n)
            for c, n in enumerate(self.levels)
        ]
        self.prior = 0.1
        for _ in range(iterations):
            total = sum(self.probability(v) for v in candidates)
            self.prior = min(max(total / max(len(candidates), 1), 1e-6), 1 - 1e-6)

    @staticmethod
    def _shares(values: Sequence[int | None], n: int, weights: Sequence[float] | None = None) -> list[float]:
        counts = [_SMOOTHING / n] * n
        for i, value in enumerate(values):
            if value is not None:
                counts[value] += weights[i] if weights is not None else 1.0
        whole = sum(counts)
        return [c / whole for c in counts]

    def weight(self, comparison: int, level: int | None) -> float:
        """log2(m/u) of one comparison's level (0 for a missing value)."""
        if level is None:
            return 0.0
        return math.log2(self.m[comparison][level] / self.u[comparison][level])

    def evidence(self, vector: Vector) -> float:
        return sum(self.weight(c, level) for c, level in enumerate(vector))

    def probability(self, vector: Vector) -> float:
        """The chance that a pair with this vector is a match."""
        log_odds = math.log2(self.prior / (1 - self.prior)) + self.evidence(vector)
        if log_odds > 60:
            return 1.0
        odds: float = 2.0**log_odds
        return odds / (1 + odds)


def _others_agree(vector: Vector, comparison: int) -> bool:
    others = [level for c, level in enumerate(vector) if c != comparison and level is not None]
    return len(others) >= 2 and all(level == 0 for level in others)
