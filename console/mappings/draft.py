"""A user's draft of the mapping files, kept on the server until saved or discarded, and its
validation by exactly the processors' loader.

How it works: the first edit copies the live mapping files (`MANAGED`) into
`<state_dir>/drafts/<user>/files/`, and also into `.../base/` (what they were when the draft
began). Edits rewrite the draft's files (console.mappings.yaml_edit keeps comments and layout).
`validate` runs processors.mapping_files.load_mappings on the draft directory, a full copy of
the mapping files, with the same metadata files the processors read, and turns each problem
(`<file>:<line>: <entry>: <reason>`) into a `Problem` the editor shows next to its row.
Saving is refused when the live files moved on since the draft began (someone else saved).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from console.mappings import yaml_edit
from processors.mapping_files import FILES, load_mappings
from sagesf.errors import MappingError

__all__ = ["MANAGED", "MappingDraft", "Problem", "unified_diff", "validate"]

# every file the editor may change: the processors' mapping files and the Salesforce source's
MANAGED: tuple[str, ...] = (*(name for name, _ in FILES.values()), "salesforce_source.yaml")
_PROBLEM = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<entry>[^:]+): (?P<reason>.*)$", re.S)


@dataclass(frozen=True)
class Problem:
    """One validation problem: the file (its name), the line, the entry path and why."""

    file: str
    line: int
    entry: str
    reason: str

    def about(self, file: str, entry: str) -> bool:
        """Whether this problem is about `entry` of `file` (the entry or something inside it)."""
        return self.file == file and (self.entry == entry or self.entry.startswith(entry + "."))

    @classmethod
    def parse(cls, text: str) -> Problem:
        found = _PROBLEM.match(text)
        if found is None:
            return cls("", 0, "", text)
        return cls(Path(found["file"]).name, int(found["line"]), found["entry"], found["reason"])


def validate(directory: Path, salesforce: Path | None, sage: Path | None) -> list[Problem]:
    """Every problem load_mappings finds in `directory`'s mapping files; [] when they load."""
    try:
        load_mappings(directory, salesforce_metadata=salesforce, sage_metadata=sage)
    except MappingError as exc:
        return [Problem.parse(p) for p in exc.problems]
    return []


def unified_diff(before: Path, after: Path, names: tuple[str, ...] = MANAGED) -> str:
    """A unified diff of each file of `names` from directory `before` to directory `after`."""
    out: list[str] = []
    for name in names:
        old, new = _text(before / name), _text(after / name)
        if old != new:
            out += difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                f"a/mappings/{name}",
                f"b/mappings/{name}",
            )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


class MappingDraft:
    """`user`'s draft of the files in `live` (see the module doc)."""

    def __init__(self, live: Path, state_dir: Path, user: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", user)[:40]
        digest = hashlib.sha256(user.encode()).hexdigest()[:8]  # two names with one slug stay apart
        self.live = live
        self.home = state_dir / "drafts" / f"{slug}-{digest}"
        self.files = self.home / "files"
        self.base = self.home / "base"

    @property
    def exists(self) -> bool:
        return self.files.is_dir()

    @property
    def directory(self) -> Path:
        """Where the mapping files to show are: the draft's, or the live ones without a draft."""
        return self.files if self.exists else self.live

    def start(self) -> None:
        if self.exists:
            return
        for target in (self.base, self.files):
            target.mkdir(parents=True, exist_ok=True)
            for name in MANAGED:
                if (self.live / name).exists():
                    shutil.copy2(self.live / name, target / name)

    def discard(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    @contextmanager
    def edit(self, name: str) -> Iterator[CommentedMap]:
        """The draft's file `name` as YAML to change; written back when the block ends."""
        self.start()
        path = self.files / name
        doc = yaml_edit.load(_text(path))
        yield doc
        path.write_text(yaml_edit.dump(doc), encoding="utf-8")

    def read(self, name: str) -> CommentedMap:
        return yaml_edit.load(_text(self.directory / name))

    def diff(self) -> str:
        """The draft against the live files: what saving would change."""
        return unified_diff(self.live, self.files) if self.exists else ""

    def trial(self, scratch: Path) -> MappingDraft:
        """A throw-away draft under `scratch` starting from this one's files (or the live ones):
        an edit tried there, validated and shown, changes nothing of this draft."""
        return MappingDraft(self.directory, scratch, "trial")

    def moved_on(self) -> list[str]:
        """The live files that changed since the draft began (another save): saving would undo it."""
        return [n for n in MANAGED if self.exists and _text(self.live / n) != _text(self.base / n)]
