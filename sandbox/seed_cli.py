"""`sagesf sandbox seed existing`: fill the emulator and the Sage database with a company that has
data on both sides already (sandbox/seed_existing.py), with progress bars and a summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sandbox.sage100.cli import default_path
from sandbox.sage100.database import SandboxDatabase
from sandbox.salesforce import sandbox_credentials
from sandbox.seed_existing import SeedRefused, default_truth_path, seed_existing

app = typer.Typer(no_args_is_help=True, help="Fill the sandbox with data as a real company has it.")
console = Console()


@app.command("existing")
def existing(
    customers: Annotated[
        int, typer.Option("--customers", min=1, help="Sage customers (3/4 also Accounts)")
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="the same seed makes the same company")] = 13,
    truth: Annotated[Path | None, typer.Option("--truth", help="ground truth file")] = None,
    sage_path: Annotated[Path | None, typer.Option("--sage-path", help="Sage database file")] = None,
    replace_sage: Annotated[bool, typer.Option("--replace-sage", help="recreate the Sage database")] = False,
) -> None:
    """Accounts, products, won opportunities in Salesforce; customers, items, orders in Sage; the
    same companies typed differently on each side, and the truth about them in a file."""
    from sandbox.salesforce.client import connect
    from sandbox.salesforce.config import SALES_USERNAME

    try:
        credentials = sandbox_credentials(username=SALES_USERNAME)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    sf = connect(
        credentials.url,
        username=credentials.username,
        password=credentials.password,
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
    )
    db = SandboxDatabase(sage_path or default_path())
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bars:

        def progress(what: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(what, total=total)
            return lambda n: bars.advance(task, n)

        try:
            result = seed_existing(
                sf,
                db,
                customers=customers,
                seed=seed,
                truth_path=truth or default_truth_path(),
                replace_sage=replace_sage,
                progress=progress,
            )
        except SeedRefused as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    company = result.company
    if not result.written:
        console.print(f"seeded already (seed {seed}, {customers} customers): nothing written")
    table = Table("what", "Salesforce", "Sage 100", "same records")
    table.add_row(
        "customers",
        str(len(company.accounts)),
        str(len(company.sage_customers)),
        str(len(company.customer_pairs)),
    )
    table.add_row("items", str(len(company.products)), str(len(company.items)), str(len(company.item_pairs)))
    table.add_row("won orders before go-live", str(len(company.orders)), str(len(company.orders)), "")
    console.print(table)
    console.print(f"ground truth: {result.truth_path} ({time.monotonic() - started:.1f} s)")
