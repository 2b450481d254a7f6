"""What a sink answers when it wrote nothing because the target holds a newer change.

Owns `Stale`, the Python side of schemas/StaleCommand.avsc, which SageResult and SalesforceResult
carry. Each sink decides what is newer (connectors/sage100/stale.py, connectors/salesforce/
stale_guard.py); the record says the same thing whichever sink answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Stale"]


@dataclass(frozen=True)
class Stale:
    """Why nothing was written: what was compared (`compared_with`, the target's field), the
    command's source event time and the target's newer time, and a reason people read."""

    reason: str
    source_event_time: datetime
    target_time: datetime
    compared_with: str

    def record(self) -> dict[str, Any]:
        """The StaleCommand record."""
        return {
            "reason": self.reason,
            "source_event_time": self.source_event_time,
            "target_time": self.target_time,
            "compared_with": self.compared_with,
        }
