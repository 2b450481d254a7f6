"""What a Salesforce user reads in Sage_Sync_Message__c: a short reason to act on, and which values
Sage 100 holds differently from what was typed.

What it owns:
- `Changes`: the values mapping rules changed on an order's or customer's way to Sage (text cut
  to a column, folded to Sage's code page, a price rounded or replaced, a ProductCode matched
  loosely), a few words each; `message()` is what goes back with Synced.
- `for_user(text, fallback)`: `text` when a sales user can read it, else `fallback`. Driver
  messages (`[unixODBC][SQLite]...`, SQLSTATE, ODBC function names), Python tracebacks and
  exception reprs are for operators, who read them whole in the dead letter.
- `sage_refusal(error, what)`: the short reason of a REJECTED SageResult.

Limits: operator text is recognised by the patterns below; a driver message in a form they do not
know passes. The field's length (255 in the sandbox org) cuts a long list of changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Changes", "for_user", "sage_refusal", "unreadable"]

_OPERATOR_TEXT = re.compile(
    r"\[[^\]]*(?:ODBC|SQL|Driver|Microsoft|ProvideX)[^\]]*\]"  # [unixODBC][SQLite], [Microsoft][ODBC ...]
    r"|SQLSTATE|\b(?:HY|IM)\d{3}\b"  # SQLSTATE and its driver-manager codes
    r"|\bSQL[A-Z][A-Za-z]+\b"  # ODBC functions: SQLExecDirectW, SQLDriverConnect
    r"|Traceback \(most recent call last\)|File \"[^\"]*\", line \d+"
    r"|\b(?:pyodbc|pywintypes|com_error|sqlite3)\b"
    r"|\b[A-Z]\w*(?:Error|Exception)\("  # exception reprs: OperationalError('HY000', ...)
    r"|-21474\d{5}|Exception occurred"  # COM (BOI) failures
)


def unreadable(text: str) -> bool:
    """True when `text` is operator text: several lines, or driver or Python error text."""
    return "\n" in text.strip() or _OPERATOR_TEXT.search(text) is not None


def for_user(text: str, fallback: str) -> str:
    """`text` when a sales user can act on it, else `fallback`."""
    return fallback if unreadable(text) else text


def sage_refusal(error: Mapping[str, Any] | None, what: str) -> str:
    """Why Sage 100 refused `what` (the order, the customer), from a SageResult's error fields:
    its reason when readable; else the field it names, and where operators find the rest."""
    error = error or {}
    reason = str(error.get("reason") or "").strip()
    column = str(error.get("field") or "")
    at = f" ({column})" if column and not unreadable(column) else ""
    fallback = f"Sage 100 could not save the {what}{at}; operations have the details (dead letter)"
    if not reason:
        return fallback
    said = reason if reason.lower().startswith(("sage refused", "sage 100 refused")) else None
    return for_user(said or f"Sage 100 refused the {what}: {reason}", fallback)


@dataclass
class Changes:
    """The values rules changed on their way to Sage, each said once, in the order they happened."""

    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def cut(self, where: str, length: int) -> None:
        self.note(f"{where} cut to {length}")

    def folded(self, where: str, value: str) -> None:
        self.note(f"{where} '{value}'")

    def set(self, where: str, value: Any, why: str = "") -> None:
        """A value replaced or rounded: `where` now holds `value` (and why, when not evident)."""
        self.note(f"{where} {value}" + (f" ({why})" if why else ""))

    def matched(self, where: str, typed: str, code: str) -> None:
        self.note(f"{where} '{typed}' as {code}")

    def message(self) -> str | None:
        """The text for Sage_Sync_Message__c; None when nothing changed."""
        return "As Sage 100 holds it: " + "; ".join(self.notes) if self.notes else None
