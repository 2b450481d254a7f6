"""What a preflight reports: one `Check` per thing a component needs of Sage 100 or Salesforce.

A component that can check its system before it runs gives a `preflight` hook (sagesf.runner
`Component.preflight`): it returns a `Check` for every object, field, platform event, channel,
permission, table or column it needs, found or not, and for what is missing how to add it.
`sagesf preflight <system>` (sagesf/cli/preflight.py) runs the hooks of that system's components,
merges their checks with `merge` and exits non-zero when one failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = ["Check", "Outcome", "merge"]


class Outcome(StrEnum):
    OK = "ok"
    MISSING = "missing"  # not there: `fix` says how to add it
    DIFFERENT = "different"  # there, but not as needed (type, length, a value, a permission)
    UNKNOWN = "unknown"  # could not be checked (the user may not read the setup): check by hand


# the order in which a merged check keeps the worse of two outcomes
_SEVERITY = {Outcome.OK: 0, Outcome.UNKNOWN: 1, Outcome.DIFFERENT: 2, Outcome.MISSING: 3}


@dataclass(frozen=True)
class Check:
    """One thing needed: `kind` (field, table, ...), `name` (`Opportunity.Sage_Order_No__c`), the
    outcome, what was found (`detail`), how to add or fix it (`fix`) and who needs it."""

    kind: str
    name: str
    outcome: Outcome
    detail: str = ""
    fix: str = ""
    needed_by: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.outcome in (Outcome.MISSING, Outcome.DIFFERENT)

    def message(self) -> str:
        """`Opportunity.Sage_Order_No__c is missing: deploy ... or add a Text(7) field`."""
        said = {
            Outcome.OK: "is there",
            Outcome.MISSING: "is missing",
            Outcome.DIFFERENT: f"is not as needed ({self.detail})",
            Outcome.UNKNOWN: f"could not be checked ({self.detail})",
        }[self.outcome]
        return f"{self.name} {said}" + (
            f": {self.fix}" if self.fix and self.outcome is not Outcome.OK else ""
        )


def merge(checks: Iterable[Check]) -> list[Check]:
    """One check per (kind, name), in first-seen order: the worse outcome (with its detail and fix)
    and everyone who needs it."""
    merged: dict[tuple[str, str], Check] = {}
    for check in checks:
        key = (check.kind, check.name)
        seen = merged.get(key)
        if seen is None:
            merged[key] = check
            continue
        worse = check if _SEVERITY[check.outcome] > _SEVERITY[seen.outcome] else seen
        needed_by = tuple(dict.fromkeys(seen.needed_by + check.needed_by))
        merged[key] = replace(worse, needed_by=needed_by)
    return list(merged.values())
