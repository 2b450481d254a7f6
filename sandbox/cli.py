"""`sagesf sandbox ...`: start, stop and inspect the local sandbox."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from sandbox import stack

app = typer.Typer(no_args_is_help=True, help="The local sandbox: Kafka, registry, emulators.")
kafka_app = typer.Typer(no_args_is_help=True, help="The sandbox's real Apache Kafka broker (KRaft).")
app.add_typer(kafka_app, name="kafka")
console = Console()


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (fetching the jars once) and print its bootstrap address."""
    address = stack.kafka_service().start()
    console.print(f"kafka running at [bold]{address}[/bold]")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker; its data stays in .sandbox/kafka for the next start."""
    ok = stack.kafka_service().stop()
    console.print("kafka stopped" if ok else "[red]kafka did not stop[/red]")
    if not ok:
        raise typer.Exit(1)


@kafka_app.command("status")
def kafka_status() -> None:
    """Print the bootstrap address, or exit 1 when the broker is not running."""
    address = stack.kafka_service().address()
    if address is None:
        console.print("kafka not running")
        raise typer.Exit(1)
    console.print(f"kafka running at {address}")


@app.command("up")
def up() -> None:
    """Start every sandbox service in order and write .sandbox/sagesf.env."""
    for service in stack.services():
        address = service.start()
        console.print(f"[green]up[/green]   {service.name:<10} {address}")


@app.command("down")
def down() -> None:
    """Stop every sandbox service, last started first."""
    failed = False
    for service in reversed(stack.services()):
        ok = service.stop()
        failed |= not ok
        console.print(f"{'[green]down[/green]' if ok else '[red]stuck[/red]'} {service.name}")
    if failed:
        raise typer.Exit(1)


@app.command("status")
def status() -> None:
    """One line per service: running or not, and where."""
    table = Table("service", "state", "address")
    for service in stack.services():
        address = service.address()
        table.add_row(service.name, "running" if address else "stopped", address or "-")
    console.print(table)
