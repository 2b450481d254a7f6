"""The console's audit log: one JSON line per change made through the console, and per failed
login (who, when in UTC, action, target, and the diff or detail), appended to one file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["AuditEntry", "AuditLog"]


@dataclass(frozen=True)
class AuditEntry:
    at: str  # ISO 8601, UTC
    user: str
    action: str  # e.g. "dead-letter.replay", "mapping.save", "login.failed"
    target: str
    diff: str | None = None
    detail: dict[str, Any] | None = None


class AuditLog:
    """Appends entries to `path` (created on first use); `entries()` reads them newest first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(
        self,
        user: str,
        action: str,
        target: str,
        diff: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            datetime.now(UTC).isoformat(timespec="seconds"), user, action, target, diff, detail
        )
        line = json.dumps(entry.__dict__, sort_keys=True, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
        return entry

    def entries(self, limit: int = 500) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""
        return list(self._read())[-limit:][::-1]

    def _read(self) -> Iterator[AuditEntry]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield AuditEntry(**json.loads(line))
