"""Saved versions of the mapping files: each save (or restore) writes the live files and keeps a
full copy of them as a numbered version, with who, when and the diff; any version can be
restored, which is itself a new version.

How it works: `<state_dir>/history/<NNNN>/` holds `version.json` and `files/` (every managed
file as it was after that change). Before the first save the files as found become version 0,
so the shipped mapping can always be restored. Each live file is replaced atomically (a
temporary file renamed over it), so a processor reloading (it watches the files' mtimes) never
reads half a file.

Limits: edits made to the files outside the console are not versions of their own; the next
save's diff shows them as part of that save's starting point (version N's files are the truth).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from console.mappings.draft import MANAGED, unified_diff

__all__ = ["MappingHistory", "Version"]


@dataclass(frozen=True)
class Version:
    number: int
    at: str  # ISO 8601, UTC
    user: str
    action: str  # original | save | restore
    diff: str
    restored_from: int | None = None


class MappingHistory:
    def __init__(self, live: Path, state_dir: Path) -> None:
        self.live = live
        self.root = state_dir / "history"

    def versions(self) -> list[Version]:
        """Every version, newest first."""
        found = [self.version(int(p.name)) for p in self.root.glob("[0-9]*") if p.name.isdigit()]
        return sorted((v for v in found if v is not None), key=lambda v: v.number, reverse=True)

    def version(self, number: int) -> Version | None:
        meta = self.root / f"{number:04d}" / "version.json"
        return Version(**json.loads(meta.read_text(encoding="utf-8"))) if meta.exists() else None

    def files(self, number: int) -> Path:
        return self.root / f"{number:04d}" / "files"

    def commit(
        self, source: Path, user: str, action: str, restored_from: int | None = None
    ) -> Version | None:
        """Make the live files those of directory `source` and keep them as a new version; None
        (nothing written) when they are the same already."""
        diff = unified_diff(self.live, source)
        if not diff:
            return None
        versions = self.versions()
        if not versions:
            self._keep(self._version(0, "-", "original", ""))
        for name in MANAGED:
            if (source / name).exists():
                _replace(self.live / name, (source / name).read_text(encoding="utf-8"))
        number = (versions[0].number if versions else 0) + 1
        return self._keep(self._version(number, user, action, diff, restored_from))

    def restore(self, number: int, user: str) -> Version | None:
        """Make the live files those of version `number` again (a new version); KeyError if none."""
        if self.version(number) is None:
            raise KeyError(number)
        return self.commit(self.files(number), user, "restore", restored_from=number)

    def _version(
        self, number: int, user: str, action: str, diff: str, restored_from: int | None = None
    ) -> Version:
        at = datetime.now(UTC).isoformat(timespec="seconds")
        return Version(number, at, user, action, diff, restored_from)

    def _keep(self, version: Version) -> Version:
        home = self.root / f"{version.number:04d}"
        (home / "files").mkdir(parents=True, exist_ok=True)
        for name in MANAGED:
            if (self.live / name).exists():
                shutil.copy2(self.live / name, home / "files" / name)
        (home / "version.json").write_text(json.dumps(asdict(version), indent=1), encoding="utf-8")
        return version


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
