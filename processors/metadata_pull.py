"""`sagesf mappings pull`: the systems' metadata read from the systems into mappings/metadata/.

Owns which objects to ask Salesforce for and where each system's file goes. The objects are the
ones the mapping checks look up: the checks run over the mapping files against a view of the org
that only notes each object asked for (`objects_named`), so a new kind of check needs no list
kept here. The reading belongs to the components (processors import no connector): the one
installed component of each system that gives a `metadata` hook (salesforce-sink, sage-sink) is
assembled from its settings as `sagesf run` would and asked (sagesf.runner `Component.metadata`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.mapping_checks import Path_, check_mappings
from processors.mapping_files import FILES, load_mappings
from processors.metadata import SalesforceMetadata, SalesforceObject
from sagesf.runner import Component, assembled, components
from sagesf.system_metadata import MetadataRequest, PulledMetadata

__all__ = ["SYSTEMS", "hook_of", "objects_named", "pull"]

# system -> the file its metadata is written to (under --dir)
SYSTEMS = {"salesforce": "salesforce.yaml", "sage": "sage100.yaml"}


@dataclass(frozen=True)
class _Noting(SalesforceMetadata):
    """An org with every object empty, noting the names the checks ask for."""

    asked: set[str] = field(default_factory=set)

    def object(self, name: str) -> SalesforceObject | None:
        self.asked.add(name)
        return SalesforceObject(name)


def objects_named(directory: Path) -> set[str]:
    """The Salesforce objects the mapping files in `directory` name (MappingError when the files
    themselves are wrong: fix them first)."""
    mappings = load_mappings(directory)
    noting = _Noting("(noting)", {})
    check_mappings({key: getattr(mappings, key) for key in FILES}, noting, None, _ignored)
    return noting.asked


def _ignored(file: str, path: Path_, reason: str) -> None:
    """Every field is unknown to the noting view: those problems are not the point here."""


def hook_of(system: str) -> Component:
    """The installed component that reads `system`'s metadata; LookupError naming what is known."""
    offering = {name: c for name, c in components().items() if c.metadata is not None}
    chosen = [c for name, c in offering.items() if name == system or name.startswith(system + "-")]
    if len(chosen) != 1:
        found = ", ".join(c.name for c in chosen) or "none"
        raise LookupError(
            f"{len(chosen)} installed components read {system}'s metadata ({found}; "
            f"offering: {', '.join(offering) or 'none'})"
        )
    return chosen[0]


def pull(system: str, request: MetadataRequest) -> PulledMetadata:
    """`system`'s metadata read by its component (StartupError, Retriable: see the CLI)."""
    hook = hook_of(system)
    read: Any = hook.metadata
    with assembled(hook) as process:
        pulled: PulledMetadata = read(process, request)
        return pulled
