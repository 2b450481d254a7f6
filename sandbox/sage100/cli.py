"""`sagesf sandbox sage100 ...`: create, seed, change and inspect the sandbox Sage 100 database.

The database lives in `.sandbox/sage100/sage100.db` unless `--path` says otherwise. `init`
prints the `SAGESF_SAGE100__CONNECTION_STRING` that points the connector at it.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from connectors.sage100.odbc import SageRejected, SageUnavailable
from sandbox.paths import state_dir
from sandbox.sage100.database import create_database, open_database, seed
from sandbox.sage100.simulator import SageSimulator

app = typer.Typer(no_args_is_help=True, help="The sandbox Sage 100 company (SQLite over unixODBC).")
console = Console()

PathOption = typer.Option(None, "--path", help="database file (default .sandbox/sage100/sage100.db)")


def default_path() -> Path:
    return state_dir() / "sage100" / "sage100.db"


@app.command("init")
def init(
    path: Path | None = PathOption,
    force: bool = typer.Option(False, "--force", help="replace an existing database"),
    with_seed: bool = typer.Option(True, "--seed/--no-seed", help="fill it with the demo company"),
) -> None:
    """Create the database with every Sage table (and seed the demo company)."""
    target = path or default_path()
    try:
        db = create_database(target, replace=force)
    except FileExistsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"created {db.path}")
    if with_seed:
        summary = seed(db)
        console.print(f"seeded: {summary}")
    console.print(f'export SAGESF_SAGE100__CONNECTION_STRING="{db.connection_string}"')


@app.command("seed")
def seed_cmd(path: Path | None = PathOption, rng_seed: int = typer.Option(100, "--rng-seed")) -> None:
    """Fill an empty database with the demo company."""
    try:
        summary = seed(open_database(path or default_path()), rng_seed=rng_seed)
    except SageRejected as exc:
        console.print(f"[red]the database is not empty: {exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"seeded: {summary}")


@app.command("simulate")
def simulate(
    path: Path | None = PathOption,
    steps: int = typer.Option(20, "--steps", help="changes to make (0: until Ctrl-C)"),
    interval: float = typer.Option(1.0, "--interval", help="seconds between changes"),
    zone: str = typer.Option("America/New_York", "--zone", help="the Sage server's time zone"),
) -> None:
    """Make Sage-side changes as Sage users would: stock moves, order status, customer edits."""
    db = open_database(path or default_path())
    with SageSimulator(db, zone=zone) as sim:
        try:
            done = sim.run(steps, interval, on_change=lambda c: console.print(str(c)))
        except KeyboardInterrupt:
            return
        except SageUnavailable as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    console.print(f"{done} changes made")


@app.command("status")
def status(path: Path | None = PathOption) -> None:
    """Row counts per table and the connection string; exit 1 when there is no database."""
    try:
        db = open_database(path or default_path())
    except FileNotFoundError as exc:
        console.print(str(exc))
        raise typer.Exit(1) from None
    table = Table("table", "rows")
    for name in db.tables:
        table.add_row(name, str(db.count(name)))
    console.print(table)
    console.print(f"connection string: {db.connection_string}")
