"""`sagesf mappings check`: validate the mapping files the way the processors do at start-up.

Registered in the `sagesf.commands` entry-point group (pyproject.toml: `mappings =
"processors.cli:app"`), so the core CLI never imports processors by name. The check is exactly
`processors.mapping_files.load_mappings`: every problem is printed as `<file>:<line>: <entry>:
<reason>` and the exit code is 1; a clean run prints what was checked (files, lookup entries,
status values, currencies) and exits 0. The metadata paths default to SAGESF_PROCESSORS__*
(processors/config.py); for the sandbox pass `--salesforce-metadata
sandbox/salesforce/metadata.yaml --sage-metadata mappings/metadata/sage100.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from processors.config import ProcessorSettings
from processors.mapping_files import FILES, MappingError, load_mappings
from sagesf.config import load_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="The processors' mapping files (mappings/)."
)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


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
            "--salesforce-metadata", help="the org's objects and fields (sandbox metadata.yaml format)"
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
