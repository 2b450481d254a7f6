"""`sagesf mappings check` and `pull`: the mapping files checked, and the systems' metadata they
are checked against read from the systems.

Registered in the `sagesf.commands` entry-point group (pyproject.toml: `mappings =
"processors.cli:app"`), so the core CLI never imports processors by name. The check is exactly
`processors.mapping_files.load_mappings`: every problem is printed as `<file>:<line>: <entry>:
<reason>` and the exit code is 1; a clean run prints what was checked (files, lookup entries,
status values, currencies) and exits 0. The metadata paths default to SAGESF_PROCESSORS__*
(processors/config.py): mappings/metadata/salesforce.yaml and sage100.yaml, which `pull` writes
(processors/metadata_pull.py): it prints what changed and exits 0, or 2 with one line when a
system cannot be reached, refuses the login or a setting is wrong (1: the mapping files are wrong).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from processors.config import ProcessorSettings
from processors.mapping_files import FILES, MappingError, load_mappings
from processors.metadata_pull import SYSTEMS, objects_named, pull
from sagesf.config import load_settings
from sagesf.errors import Retriable, StartupError
from sagesf.logs import redact
from sagesf.system_metadata import MetadataRequest, body_of, changes, render

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="The processors' mapping files (mappings/)."
)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)
PULL = "sagesf mappings pull"


@app.callback()
def _group() -> None:
    """Field maps, picklists, lookups, status maps, currency and address rules."""


@app.command("check")
def check(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="mapping files (default SAGESF_PROCESSORS__MAPPINGS_DIR)")
    ] = None,
    salesforce_metadata: Annotated[
        Path | None,
        typer.Option(
            "--salesforce-metadata",
            help="the org's objects and fields (mappings/metadata/salesforce.yaml format)",
        ),
    ] = None,
    sage_metadata: Annotated[
        Path | None,
        typer.Option("--sage-metadata", help="Sage 100 columns (mappings/metadata/sage100.yaml format)"),
    ] = None,
) -> None:
    """Check every mapping file against the canonical schemas and the systems' metadata."""
    settings = load_settings(ProcessorSettings)
    directory = directory or settings.mappings_dir
    try:
        mappings = load_mappings(
            directory,
            salesforce_metadata=salesforce_metadata or settings.salesforce_metadata,
            sage_metadata=sage_metadata or settings.sage_metadata,
        )
    except MappingError as exc:
        for problem in exc.problems:
            errors.print(problem, markup=False)
        errors.print(f"{len(exc.problems)} problem(s) in {directory}", markup=False)
        raise typer.Exit(1) from None
    files = ", ".join(name for name, _ in FILES.values())
    console.print(f"mappings OK: {files} in {directory}", markup=False)
    console.print(f"checked against: {', '.join(mappings.checked_against())}", markup=False)
    if mappings.salesforce is None or mappings.sage is None:
        console.print(
            "not checked against the systems' metadata missing above (--salesforce-metadata, --sage-metadata)"
        )
    console.print(
        f"{len(mappings.products.lookup)} product lookups, "
        f"{len(mappings.orders.order_status.sage_codes)} Sage status codes, "
        f"{len(mappings.pricing.rates)} currency rates to {mappings.pricing.home_currency}, "
        f"{len(mappings.addresses.countries)} countries",
        markup=False,
    )


@app.command("pull")
def pull_command(
    salesforce: Annotated[bool, typer.Option("--salesforce", help="describe the org")] = False,
    sage: Annotated[bool, typer.Option("--sage", help="read the Sage 100 ODBC catalog")] = False,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="write salesforce.yaml and sage100.yaml here (default: the files the checks read, "
            "SAGESF_PROCESSORS__SALESFORCE_METADATA and __SAGE_METADATA)",
        ),
    ] = None,
    mappings_dir: Annotated[
        Path | None,
        typer.Option(
            "--mappings",
            help="the mapping files naming the objects (default SAGESF_PROCESSORS__MAPPINGS_DIR)",
        ),
    ] = None,
    objects: Annotated[
        list[str] | None, typer.Option("--object", help="another Salesforce object to describe (repeat)")
    ] = None,
) -> None:
    """Read the systems' metadata (Salesforce describe, the Sage 100 ODBC catalog with every UDF_
    column) into the files the checks read; print what changed. Neither flag: both systems."""
    settings = load_settings(ProcessorSettings)
    chosen = [name for name, on in (("salesforce", salesforce), ("sage", sage)) if on] or list(SYSTEMS)
    targets = {
        "salesforce": settings.salesforce_metadata,
        "sage": settings.sage_metadata,
    }
    asked: tuple[str, ...] = ()
    if "salesforce" in chosen:
        try:
            named = objects_named(mappings_dir or settings.mappings_dir)
        except MappingError as exc:
            for problem in exc.problems:
                errors.print(problem, markup=False)
            errors.print("fix the mapping files first: their objects are what is described", markup=False)
            raise typer.Exit(1) from None
        asked = tuple(sorted(named | set(objects or ())))
    for system in chosen:
        default = Path("mappings/metadata") / SYSTEMS[system]
        path = directory / SYSTEMS[system] if directory else targets[system] or default
        _pull_one(system, MetadataRequest(asked if system == "salesforce" else ()), path)


def _pull_one(system: str, request: MetadataRequest, path: Path) -> None:
    try:
        pulled = pull(system, request)
    except (StartupError, LookupError) as exc:
        line = exc.line() if isinstance(exc, StartupError) else str(exc)
        errors.print(redact(f"error: {system}: {line}"), markup=False)
        raise typer.Exit(2) from None
    except Retriable as exc:
        errors.print(redact(f"error: {system}: cannot reach the system now: {exc}"), markup=False)
        raise typer.Exit(2) from None
    before = body_of(path)
    changed = changes(before, pulled.body)
    for name in pulled.missing:
        console.print(f"{system}: not found (or not visible to the user): {name}", markup=False)
    if before == pulled.body:
        console.print(f"{path}: unchanged ({pulled.source})", markup=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(pulled, PULL), encoding="utf-8")
    for line in changed:
        console.print(f"  {line}", markup=False)
    console.print(f"{path}: written from {pulled.source} ({len(changed)} change(s))", markup=False)
